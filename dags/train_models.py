"""
### Train models

Train one model per architecture (a mapped task each, on the queue `$HASHTAGGER_TRAIN_QUEUE`, default
`gpu`, in the pool `$HASHTAGGER_TRAIN_POOL`, default `training`: `docker/airflow-setup.sh` creates it,
one slot per GPU or training worker; without the pool the training tasks stay "scheduled"), evaluate
each saved model on its dataset version's test split, and promote the best one if it passes the
promotion gates: a full training run (no `train_limit`, at least the recipe's `min_epochs`), a test
top-1 above the dataset's floor, and a gain over the serving champion (at first the bundled model) by
the margin on the same dataset version. The promote task's log says why each model was refused; so
does `model_events`.

- The defaults are what a run started by `cifar_dataset` trains, sized for a CPU-only deployment:
  `vgg16` with the `fast` recipe for 5 epochs, about 4 minutes an epoch on 2 CPU cores (CIFAR-10,
  45,000 training images), so about 25 minutes with evaluation and promotion. On a GPU trigger it
  by hand with more, e.g. `{"architectures": ["vgg16", "resnet9"], "epochs": 30}`.
- A smoke run (CI, a first try): `{"architectures": ["vgg16"], "epochs": 1, "train_limit": 500}`,
  a minute or two on a CPU.

- Starts when `cifar_dataset` prepares a dataset version, or when `reviewed_dataset` prepares one from
  people's reviews (enough new answers in `hashtagger review`): trains on that version. Or by hand with the
  params `architectures`, `recipe`, `epochs` and `dataset` (trains on its latest version), or
  `reviewed_dataset` (trains on the latest version of that dataset prepared from reviews).
- A model trained on a reviewed dataset competes as its base's (e.g. cifar10): it is also refused when it
  is worse than the champion on the reviewed slice, once both were evaluated on it.
- Models are recorded in the results database of `postgres_default`; a new champion gets an event on
  its Asset `hashtagger://models/<dataset>/champion`, which starts `nightly_tagging` at once: the new
  champion tags the images it has not tagged yet (at most `max_images`), not only at the next 02:00.
- Artifacts go under `$HASHTAGGER_HOME/models/` and, when `$HASHTAGGER_ARTIFACTS` names an
  `s3://bucket/prefix`, to that object store too, from which every worker downloads the champion.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

from tasks import connections, pipeline, quiet, retries
from tasks.assets import CHAMPIONS, DATASETS, REVIEWED

PROMOTED = AssetAlias(name="hashtagger_promoted_champions")  # an event only when the champion changes
TRAIN_QUEUE = os.environ.get("HASHTAGGER_TRAIN_QUEUE", "gpu")
TRAIN_POOL = os.environ.get("HASHTAGGER_TRAIN_POOL", "training")


@dag(
    dag_id="train_models",
    description="Train each architecture on a new dataset version, evaluate, promote the best (defaults: CPU-sized)",
    schedule=DATASETS["cifar10"] | DATASETS["cifar100"] | REVIEWED,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5),
                  "execution_timeout": dt.timedelta(hours=2)},
    params={
        "architectures": Param(["vgg16"], type="array", minItems=1,
                               items={"type": "string", "enum": list(pipeline.architectures())},
                               description="one training task each; vgg16 is the fastest on a CPU, resnet9 "
                                           "the most accurate (about 30 min an epoch on 2 CPU cores)"),
        "recipe": Param("fast", enum=list(pipeline.recipe_names()),
                        description="seed: the report's; fast: one-cycle SGD with crop and flip; airbench: "
                                    "airbench's (for the airbench architecture)"),
        "epochs": Param(5, type="integer", minimum=1,
                        description="epochs per model; about 4 min each for vgg16 on 2 CPU cores"),
        "dataset": Param("cifar10", enum=sorted(DATASETS),
                         description="when started by hand: trains on its latest prepared version"),
        "reviewed_dataset": Param(None, type=["null", "string"],
                                  description="when started by hand: train on the latest version of this dataset "
                                              "prepared from reviews (e.g. cifar10-reviewed) instead of `dataset`"),
        "train_limit": Param(None, type=["null", "integer"], minimum=1,
                             description="train on the first N images only (smoke runs)"),
        "budget_minutes": Param(None, type=["null", "number"], exclusiveMinimum=0,
                                description="stop each training after this much wall-clock time"),
    },
    tags=["hashtagger", "training"],
    doc_md=__doc__,
)
def train_models():
    @task
    def migrate() -> list[str]:
        """Bring the results database to this version's schema (a no-op when it is current)."""
        return pipeline.migrate_database(connections.results_db_url())[1]

    @task
    def plan() -> list[dict]:
        """One training spec per architecture, on the dataset version that started the run, if any."""
        context = get_current_context()
        params = context["params"]
        versions = {event.extra["dataset"]: event.extra["version"]
                    for events in context["triggering_asset_events"].values()
                    for event in sorted(events, key=lambda event: event.timestamp) if "version" in event.extra}
        versions = versions or {params["reviewed_dataset"] or params["dataset"]: None}
        with retries.fail_fast():  # an unknown architecture or an unprepared dataset: no retries
            return [spec for dataset, version in sorted(versions.items())
                    for spec in pipeline.training_plan(params["architectures"], dataset, params["recipe"],
                                                       params["epochs"], version, params["train_limit"],
                                                       params["budget_minutes"])]

    @task(queue=TRAIN_QUEUE, pool=TRAIN_POOL, execution_timeout=dt.timedelta(hours=12))
    def train(spec: dict) -> dict:
        with retries.fail_fast():
            quiet.import_keras("training")  # without TensorFlow's import banners in the task log
            return pipeline.train_model(spec)

    @task(queue=TRAIN_QUEUE)
    def evaluate(model: dict) -> dict:
        with retries.fail_fast():
            quiet.import_keras("evaluation")
            # an s3:// reference when the model went through the artifact store (trained on another host)
            return pipeline.evaluate(model.get("artifact_uri") or model["path"], db_url=connections.results_db_url(),
                                     reuse=True).as_dict()  # XCom: the EvaluationResult's JSON

    @task(queue=TRAIN_QUEUE, outlets=[PROMOTED])
    def promote(evaluated: list[dict]) -> list[dict]:
        """Per dataset trained: the best model of the run becomes champion if it beats the current one."""
        context = get_current_context()
        evaluated = [pipeline.EvaluationResult.from_dict(model) for model in evaluated]
        db_url, results = connections.results_db_url(), []
        # by the dataset the registry files them under: a model trained on cifar10-reviewed competes in cifar10
        for dataset in sorted({model.registered_dataset for model in evaluated}):
            result = pipeline.promote_best(evaluated, dataset, db_url)
            if result["promoted"]:
                context["outlet_events"][PROMOTED].add(CHAMPIONS[dataset], extra={
                    "dataset": dataset, "model_id": result["promoted"],
                    "test_top1": result["champion"]["test_top1"]})
            results.append(result)
        return results

    specs = plan()
    migrate() >> specs
    promote(evaluate.expand(model=train.expand(spec=specs)))


train_models()
