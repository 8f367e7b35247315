"""DAG integrity: every DAG file imports without errors, fast, without TensorFlow, and declares what the
house style asks (schedule, UTC start, catchup off, tags, retries, docs); plus the small pure helpers
of tasks/pipeline/ that the DAGs rely on.

Airflow is inspected in a subprocess with its own AIRFLOW_HOME, so this process never imports it (its
configuration is fixed at first import) and nothing is written to ~/airflow.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
EXPECTED = {"cifar_dataset", "train_models", "nightly_tagging", "hashtag_refresh", "reviewed_dataset"}
HEAVY_MODULES = ("tensorflow", "keras", "jax", "torch", "onnxruntime", "numpy", "PIL", "boto3")

INSPECT = r"""
import importlib.util, json, os, sys, time
import airflow.sdk

# Airflow's own one-off costs in a parsing process are not the DAG files' costs: the lazy SDK imports
# and the providers' asset-URI normalisers (the amazon one loads boto3), paid once per process.
airflow.sdk.Asset(name="warm-up", uri="s3://bucket/key"), airflow.sdk.dag, airflow.sdk.task, airflow.sdk.Param

files = {}
for path in sorted(os.listdir(sys.argv[1])):
    if not path.endswith(".py"):
        continue
    loaded, started = set(sys.modules), time.perf_counter()
    spec = importlib.util.spec_from_file_location(f"dagfile_{path[:-3]}", os.path.join(sys.argv[1], path))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    files[path] = {"seconds": time.perf_counter() - started,
                   "heavy": [name for name in sys.argv[2].split(",") if name in set(sys.modules) - loaded]}

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "file": os.path.basename(dag.fileloc), "tags": sorted(dag.tags), "doc_md": dag.doc_md or "",
        "catchup": dag.catchup, "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "utc": dag.start_date is not None and dag.start_date.utcoffset().total_seconds() == 0,
        "timetable": type(dag.timetable).__name__,
        # AssetOrTimeSchedule wraps its cron in .timetable; its assets are the condition's
        "cron": getattr(getattr(dag.timetable, "timetable", dag.timetable), "expression", None),
        "timezone": str(getattr(getattr(dag.timetable, "timetable", dag.timetable), "timezone", None) or ""),
        "scheduled_on": sorted(asset.uri for asset in getattr(getattr(dag.timetable, "asset_condition", None),
                                                               "objects", ())),
        "params": sorted(dag.params.keys()), "description": dag.description or "",
        "param_descriptions": {name: dag.params.get_param(name).description or "" for name in dag.params},
        "tasks": {task.task_id: {"retries": task.retries, "queue": task.queue, "pool": task.pool,
                                 "mapped": bool(getattr(task, "is_mapped", False)),
                                 "outlets": [getattr(o, "name", str(o)) for o in task.outlets]}
                  for task in dag.tasks},
    }
errors = {path: str(error) for path, error in bag.import_errors.items()}
print("DAG_INSPECTION " + json.dumps({"files": files, "import_errors": errors, "dags": dags}))
"""


@pytest.fixture(scope="module")
def inspection(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "HASHTAGGER_TRAIN_", "HASHTAGGER_SOURCE"))}  # the defaults
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}")
    done = subprocess.run([sys.executable, "-c", INSPECT, str(DAGS), ",".join(HEAVY_MODULES)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAG_INSPECTION ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("DAG_INSPECTION "))


def test_every_dag_file_imports_without_errors(inspection):
    assert inspection["import_errors"] == {}
    assert set(inspection["dags"]) == EXPECTED


def test_dag_files_import_without_heavy_libraries(inspection):
    for name, measured in inspection["files"].items():
        print(f"{name}: {measured['seconds'] * 1000:.0f} ms")
        assert measured["heavy"] == [], f"{name} imports {measured['heavy']} at parse time"
    # how fast: benchmarks/startup_time.py (a timing is a measurement, not a test)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_declares_what_the_house_style_asks(inspection, dag_id):
    dag = inspection["dags"][dag_id]
    assert dag["file"] == f"{dag_id}.py"
    assert "hashtagger" in dag["tags"] and len(dag["tags"]) >= 2
    assert dag["doc_md"].strip().startswith("###")
    assert dag["catchup"] is False
    assert dag["utc"], dag["start_date"]
    assert all(task["retries"] >= 2 for task in dag["tasks"].values()), dag["tasks"]


def test_every_dag_and_param_is_described(inspection):
    """The DAG list shows a description, the trigger form a description of every param."""
    for dag_id, dag in inspection["dags"].items():
        assert dag["description"], f"{dag_id} has no description"
        undescribed = [name for name, text in dag["param_descriptions"].items() if not text]
        assert not undescribed, f"{dag_id}: params without a description: {undescribed}"


def test_schedules(inspection):
    dags = inspection["dags"]
    assert (dags["nightly_tagging"]["cron"], dags["nightly_tagging"]["timezone"]) == ("0 2 * * *", "UTC")
    assert (dags["hashtag_refresh"]["cron"], dags["hashtag_refresh"]["timezone"]) == ("0 * * * *", "UTC")
    assert dags["train_models"]["timetable"] == "AssetTriggeredTimetable"
    # a new dataset version, or enough new reviews (reviewed_dataset prepares a version from them)
    assert dags["train_models"]["scheduled_on"] == ["hashtagger://datasets/cifar10", "hashtagger://datasets/cifar100",
                                                    "hashtagger://datasets/reviewed"]
    assert (dags["reviewed_dataset"]["cron"], dags["reviewed_dataset"]["timezone"]) == ("30 3 * * *", "UTC")
    # a new champion re-tags at once, besides the nightly slot
    assert dags["nightly_tagging"]["timetable"] == "AssetOrTimeSchedule"
    assert dags["nightly_tagging"]["scheduled_on"] == ["hashtagger://models/cifar10/champion",
                                                       "hashtagger://models/cifar100/champion"]
    assert dags["cifar_dataset"]["timetable"] == "NullTimetable"  # started by hand, with its params


def test_params(inspection):
    dags = inspection["dags"]
    assert {"dataset", "source"} <= set(dags["cifar_dataset"]["params"])
    assert {"architectures", "recipe", "epochs", "dataset", "reviewed_dataset"} <= set(dags["train_models"]["params"])
    assert {"name", "base", "min_new_answers"} <= set(dags["reviewed_dataset"]["params"])
    assert "source" in dags["nightly_tagging"]["params"]


def test_training_is_mapped_on_the_gpu_queue_in_a_pool(inspection):
    tasks = inspection["dags"]["train_models"]["tasks"]
    assert tasks["train"]["mapped"] and tasks["evaluate"]["mapped"]
    assert tasks["train"]["queue"] == "gpu" and tasks["train"]["pool"] == "training"
    assert tasks["promote"]["outlets"] == ["hashtagger_promoted_champions"]
    assert inspection["dags"]["cifar_dataset"]["tasks"]["prepare"]["outlets"] == ["hashtagger_prepared_datasets"]


def test_tagging_is_mapped_over_shards(inspection):
    tasks = inspection["dags"]["nightly_tagging"]["tasks"]
    assert tasks["tag_shard"]["mapped"]
    assert tasks["tag_shard"]["queue"] == "default"
    assert tasks["record_summary"]["outlets"] == ["image_tags"]


# ------------------------------------------------------------------------------------------ tasks/pipeline/

def test_a_run_started_by_champion_events_tags_with_their_datasets():
    """nightly_tagging's dataset when a new champion started it: each event's extra as
    train_models' promote task writes it (tasks/assets.py), the newest last."""
    from types import SimpleNamespace as Event  # the two attributes Airflow's events have that this reads

    from tasks import pipeline

    at = dt.datetime(2026, 12, 6, 3, tzinfo=dt.timezone.utc)
    context = {"triggering_asset_events": {
        "cifar100_champion": [Event(extra={"dataset": "cifar100", "model_id": "b"}, timestamp=at)],
        "cifar10_champion": [Event(extra={"dataset": "cifar10", "model_id": "a"}, timestamp=at - dt.timedelta(1)),
                             Event(extra={}, timestamp=at)]}}
    assert pipeline.triggering_datasets(context) == ["cifar10", "cifar100"]
    assert pipeline.triggering_datasets({"triggering_asset_events": {}}) == []  # the cron or a person
    assert pipeline.triggering_datasets({}) == []


def test_run_key_comes_from_the_logical_date_or_the_run_id():
    from tasks import pipeline

    logical = dt.datetime(2026, 11, 27, 2, tzinfo=dt.timezone.utc)
    assert pipeline.run_key(logical, "scheduled__2026-11-27T02:00:00+00:00") == "nightly-20261127T020000Z"
    assert (pipeline.run_key(None, "manual__2026-11-27T06:03:01.8+00:00")
            == "nightly-manual__2026-11-27T06-03-01.8-00-00")
    assert pipeline.shard_run_id("nightly-20261127T020000Z", 1, 4) == "nightly-20261127T020000Z-shard1of4"


def test_training_plan_has_one_spec_per_architecture_and_rejects_bad_names():
    from tasks import pipeline
    from tasks.train import train

    plan = pipeline.training_plan(["vgg16", "shallow", "vgg16"], "cifar10", "fast", 2, "abc123")
    assert [spec["architecture"] for spec in plan] == ["vgg16", "shallow"]
    assert train.TrainConfig.from_dict(plan[0]).dataset_version == "abc123"  # specs are TrainConfig fields
    with pytest.raises(ValueError, match="resnet50"):
        pipeline.training_plan(["resnet50"], "cifar10", "fast", 1)
    with pytest.raises(ValueError, match="recipe"):
        pipeline.training_plan(["vgg16"], "cifar10", "slow", 1)


def test_a_training_spec_through_xcom_json_is_the_same_run():
    """A spec that went through XCom (JSON: tuples become lists) trains, and resumes, as the same run."""
    import json

    from tasks import pipeline
    from tasks.train import checkpoint, train

    spec = pipeline.training_spec(architecture="airbench", recipe="airbench", epochs=18,
                                  recipe_overrides=(("learning_rate", 1.305),),
                                  model_overrides=(("widths", [128, 384, 384]),))
    carried = train.TrainConfig.from_dict(json.loads(json.dumps(spec)))
    assert carried == train.TrainConfig.from_dict(spec)
    assert carried.model_overrides == (("widths", [128, 384, 384]),)
    assert checkpoint.settings_key(carried, "v1") == checkpoint.settings_key(train.TrainConfig.from_dict(spec), "v1")
    with pytest.raises(ValueError, match=r"unknown training settings \['epoch'\]"):
        pipeline.training_spec(architecture="vgg16", epoch=3)
