"""
### CIFAR dataset

Prepare a version of CIFAR-10 or CIFAR-100 (param `dataset`) from `source`: the official archive's URL
(the default when `source` is empty; downloaded once and md5-checked), a `.tar.gz`, or a class-per-folder
image tree (`[train|test]/<class>/<image>`) that the workers can read. A version is named by a hash of
its content and written under `$HASHTAGGER_HOME/datasets/<dataset>/<version>/`; preparing the same data
again finds the same version.

On success the dataset's Asset (`hashtagger://datasets/<dataset>`) gets an event whose extra names the
version, which starts `train_models` on it with its default params (sized for a CPU-only deployment:
see `train_models`). A missing or malformed source fails at once, without retries.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

from tasks import retries
from tasks.assets import DATASETS

# The task emits an event for the one dataset it prepared (a static outlet would fire both).
PREPARED = AssetAlias(name="hashtagger_prepared_datasets")


@dag(
    dag_id="cifar_dataset",
    description="Prepare a CIFAR-10/100 dataset version; its Asset starts train_models on it",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2),
                  "execution_timeout": dt.timedelta(hours=1)},
    params={
        "dataset": Param("cifar10", enum=sorted(DATASETS), description="which dataset to prepare"),
        "source": Param(None, type=["null", "string"],
                        description="URL, .tar.gz or class-per-folder tree the workers can read; empty: the "
                                    "official archive (170 MB download)"),
    },
    tags=["hashtagger", "data"],
    doc_md=__doc__,
)
def cifar_dataset():
    @task(outlets=[PREPARED])
    def prepare() -> dict:
        from tasks import pipeline

        context = get_current_context()
        params = context["params"]
        with retries.fail_fast():  # a missing or malformed source: no retries (a download error retries)
            manifest = pipeline.prepare_dataset(params["dataset"], params["source"] or None)
        context["outlet_events"][PREPARED].add(
            DATASETS[manifest.name], extra={"dataset": manifest.name, "version": manifest.version})
        return manifest.summary()

    prepare()


cifar_dataset()
