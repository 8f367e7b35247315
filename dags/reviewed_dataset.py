"""
### Reviewed dataset

Every day at 03:30 UTC (or by hand), count the answers people gave in `hashtagger review` that the latest
version of the reviewed dataset (param `name`) does not hold yet. When at least `min_new_answers` have come
in, prepare a new version: the base dataset's version (param `base`) plus the reviewed images with their
reviewed labels, "none of these" ones as outliers, a slice held out as a test set of the users' own images
(`hashtagger data prepare NAME --from-reviews --base BASE`). Its Asset (`hashtagger://datasets/reviewed`)
then gets an event whose extra names the dataset and version, and `train_models`, scheduled on it, trains on
that version; promotion then also refuses a model worse than the champion on the reviewed slice.

Fewer new answers: the run succeeds, the prepare task is skipped, and no event is emitted. Reviews are read
from the results database of `postgres_default`; pictures through the source of the run that tagged them,
so the workers must reach those folders or buckets (a picture gone since is skipped, listed in reviews.json).
"""

from __future__ import annotations

import datetime as dt
import logging

from airflow.sdk import Param, dag, get_current_context, task

from tasks import connections, pipeline, retries
from tasks.assets import DATASETS, REVIEWED

log = logging.getLogger(__name__)
DEFAULTS = pipeline.RetrainTrigger()


@dag(
    dag_id="reviewed_dataset",
    description="Prepare a dataset version from people's reviews once enough are new; its Asset starts train_models",
    schedule="30 3 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2),
                  "execution_timeout": dt.timedelta(hours=1)},
    params={
        "name": Param(DEFAULTS.name, type="string", minLength=1,
                      description="the dataset prepared from reviews (a name of its own, not the base's)"),
        "base": Param(DEFAULTS.base, enum=sorted(DATASETS),
                      description="the prepared dataset it extends (its latest version)"),
        "min_new_answers": Param(DEFAULTS.min_new_answers, type="integer", minimum=1,
                                 description="answers not in the latest version before a new one is prepared "
                                             "(tasks/review/config.py RetrainTrigger says why 200)"),
    },
    tags=["hashtagger", "data", "review"],
    doc_md=__doc__,
)
def reviewed_dataset():
    @task.short_circuit
    def enough_new_answers() -> bool:
        """Whether enough answers came in since the latest version (False skips the prepare task)."""
        params = get_current_context()["params"]
        new = pipeline.new_reviews(params["name"], connections.results_db_url())
        log.info("%d answers not in the latest version of %s; threshold %d", new, params["name"],
                 params["min_new_answers"])
        return new >= params["min_new_answers"]

    @task(outlets=[REVIEWED])
    def prepare() -> dict:
        context = get_current_context()
        params = context["params"]
        db_url = connections.results_db_url()
        new = pipeline.new_reviews(params["name"], db_url)
        with retries.fail_fast():  # an unprepared base or no usable review: no retries
            manifest, _ = pipeline.prepare_reviewed_dataset(params["name"], params["base"], db_url=db_url)
        context["outlet_events"][REVIEWED].extra = {"dataset": manifest.name, "version": manifest.version,
                                                    "new_answers": new}
        return {**manifest.summary(), "reviewed": manifest.reviewed}

    enough_new_answers() >> prepare()


reviewed_dataset()
