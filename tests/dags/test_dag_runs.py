"""Each DAG end to end with `dag.test()`: tiny real CIFAR JPEGs, results in a fresh PostgreSQL database,
the bucket on moto's S3 server, Airflow's metadata in another fresh PostgreSQL database.

Airflow reads its configuration once, when it is first imported, so every `dag.test()` runs in a
subprocess with its own environment (AIRFLOW_HOME, the metadata database, AIRFLOW_CONN_* connections);
this process never imports Airflow. The tests share one Airflow installation and HASHTAGGER_HOME, as
the DAGs do in production, but none needs another to have run: each prepares what it uses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
LOGICAL_DATE = "2026-11-27T02:00:00+00:00"
TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 2  # 80 + 20 images: one epoch in seconds
BUCKET, PREFIX = "photos", "incoming/"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Runs one DAG with dag.test() in a fresh interpreter and prints its outcome as one JSON line.
DRIVER = r"""
import datetime as dt, json, os, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.session import create_session
import sqlalchemy as sa

dag_id, conf, logical, keep_retries = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag(dag_id)
for task in dag.tasks:
    if not keep_retries:
        task.retries = 0  # a failure shows at once instead of after the retry delays
run = dag.test(run_conf=conf, logical_date=None if logical == "none" else dt.datetime.fromisoformat(logical))
with create_session() as session:
    instances = run.get_task_instances(session=session)
    states = [[ti.task_id, ti.map_index, str(ti.state)] for ti in instances]
    tries = {f"{ti.task_id}[{ti.map_index}]": ti.try_number for ti in instances}
    rows = session.execute(sa.text(
        "SELECT task_id, map_index, value FROM xcom WHERE dag_id = :d AND run_id = :r AND key = 'return_value'"),
        {"d": dag_id, "r": run.run_id}).all()
    events = session.execute(sa.text(
        "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE e.source_dag_id = :d AND e.source_run_id = :r"), {"d": dag_id, "r": run.run_id}).all()
def plain(value):
    return json.loads(value) if isinstance(value, str) else value
print("DAG_TEST_RESULT " + json.dumps({
    "state": str(run.state), "run_id": run.run_id, "tasks": states, "tries": tries,
    "xcom": [[task_id, map_index, plain(value)] for task_id, map_index, value in rows],
    "events": [[name, plain(extra)] for name, extra in events]}, default=str))
"""


def _database(admin_url: str, name: str, create: bool) -> str:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"' if create
                                   else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tiny_cifar(archive: Path, root: Path) -> Path:
    """train/<class>/ and test/<class>/ with a few real CIFAR-10 JPEGs each."""
    wanted = {**{f"cifar10-jpeg/train/{c}/{i:04d}.jpg": f"train/{c}/{i:04d}.jpg"
                 for c in CLASSES for i in range(TRAIN_PER_CLASS)},
              **{f"cifar10-jpeg/test/{c}/{i:04d}.jpg": f"test/{c}/{i:04d}.jpg"
                 for c in CLASSES for i in range(TEST_PER_CLASS)}}
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.name in wanted:
                target = root / wanted[member.name]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    assert len(list(root.rglob("*.jpg"))) == len(wanted)
    return root



@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory, shared_data):
    return _tiny_cifar(shared_data / "cifar10-jpeg.tar.gz", tmp_path_factory.mktemp("tiny-cifar10"))


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3_client(s3_server):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, s3_server, pg_server_url):
    """Environment of a small Airflow installation: migrated metadata database, connections, home."""
    suffix = uuid.uuid4().hex[:10]
    names = {"meta": f"hashtagger_airflow_{suffix}", "results": f"hashtagger_results_{suffix}"}
    urls = {key: _database(pg_server_url, name, create=True) for key, name in names.items()}
    base = tmp_path_factory.mktemp("airflow")
    results = sa.engine.make_url(urls["results"])
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "AWS_")) and key not in ("HASHTAGGER_DB_URL", "X_BEARER_TOKEN")}
    env.update({
        "AIRFLOW_HOME": str(base / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["meta"],
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps({
            "conn_type": "postgres", "host": results.host, "port": results.port, "login": results.username,
            "password": results.password or "", "schema": results.database}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"}}),
        "HASHTAGGER_HOME": str(base / "hashtagger-home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    started = time.monotonic()
    migrate = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    print(f"airflow db migrate: {time.monotonic() - started:.1f} s")
    yield {"env": env, "results_url": urls["results"], "home": Path(env["HASHTAGGER_HOME"])}
    from tasks.store import db

    db.engine.cache_clear()
    for name in names.values():
        _database(pg_server_url, name, create=False)


def dag_test(airflow_env, dag_id: str, conf: dict | None = None, logical_date: str | None = LOGICAL_DATE,
             expect: str = "success", keep_retries: bool = False) -> dict:
    """Run one DAG with dag.test() in a subprocess; its final state, task states, return values, events.

    keep_retries: run with the DAG's own retries (by default they are set to 0 so failures show at once).
    """
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-c", DRIVER, dag_id, json.dumps(conf or {}), logical_date or "none",
         "1" if keep_retries else "0"],
        env=airflow_env["env"], cwd=REPO, capture_output=True, text=True, timeout=900)
    lines = [line for line in process.stdout.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    log_file = Path(airflow_env["env"]["AIRFLOW_HOME"]) / f"dag-test-{dag_id}-{time.time_ns()}.log"
    log_file.write_text(process.stdout + process.stderr)
    errors = [line for line in (process.stdout + process.stderr).splitlines()
              if "Error" in line or "Traceback" in line or "[error" in line][-30:]
    log = "\n".join(errors) + f"\n(whole log: {log_file})"
    assert process.returncode == 0 and lines, f"dag.test({dag_id}) crashed:\n{log}"
    outcome = json.loads(lines[-1].removeprefix("DAG_TEST_RESULT "))
    outcome["seconds"] = round(time.monotonic() - started, 1)
    outcome["log"] = process.stdout + process.stderr
    print(f"dag.test({dag_id}): {outcome['state']} in {outcome['seconds']} s")
    assert outcome["state"] == expect, f"{dag_id}: {outcome['tasks']}\n{log}"
    return outcome


def returned(outcome: dict, task_id: str) -> list:
    """Return values of a task, in map-index order (one item for an unmapped task)."""
    return [value for task, _, value in sorted(outcome["xcom"], key=lambda row: row[1]) if task == task_id]


def query(url: str, sql: str, **params) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- the runs

def test_cifar_dataset_prepares_a_version_and_emits_its_asset(airflow_env, tiny_tree):
    outcome = dag_test(airflow_env, "cifar_dataset", {"dataset": "cifar10", "source": str(tiny_tree)})
    prepared = returned(outcome, "prepare")[0]
    assert prepared["dataset"] == "cifar10"
    assert prepared["counts"]["test"] == 10 * TEST_PER_CLASS
    latest = airflow_env["home"] / "datasets" / "cifar10" / "LATEST"
    assert latest.read_text().strip() == prepared["version"]
    assert outcome["events"] == [["cifar10_dataset", {"dataset": "cifar10", "version": prepared["version"]}]]


def bundled_id(dataset: str = "cifar10") -> str:
    return json.loads((REPO / "models" / "bundled" / dataset / "metadata.json").read_text())["model_id"]


def test_train_models_trains_each_architecture_and_refuses_one_epoch_runs(airflow_env, tiny_cifar_tree,
                                                                          monkeypatch):
    from tasks import pipeline

    monkeypatch.setenv("HASHTAGGER_HOME", str(airflow_env["home"]))
    # its own small dataset, made the latest cifar10 version: trained on by a run started by hand
    prepared = pipeline.prepare_dataset("cifar10", str(tiny_cifar_tree), validation_size=20)
    conf = {"architectures": ["shallow", "vgg16"], "epochs": 1, "recipe": "fast", "dataset": "cifar10"}
    outcome = dag_test(airflow_env, "train_models", conf)
    trained = returned(outcome, "train")
    evaluated = returned(outcome, "evaluate")
    assert sorted(model["architecture"] for model in trained) == ["shallow", "vgg16"]
    assert [task for task, index, state in outcome["tasks"] if task == "train" and state == "success"] == ["train"] * 2
    assert all(model["test_images"] == prepared.counts["test"] for model in evaluated)
    assert {model["dataset_version"] for model in evaluated} == {prepared.version}
    assert all((Path(model["reports_dir"]) / "report.md").exists() for model in evaluated)
    best = min(evaluated, key=lambda model: (-model["test_top1"], model["model_id"]))  # ties: the first id
    (promotion,) = returned(outcome, "promote")[0]
    # 1 epoch is below the recipe's min_epochs: smoke runs, never promoted; the bundled model serves
    assert promotion["best"] == best["model_id"] and promotion["promoted"] is None
    assert all("smoke run" in decision["reason"] for decision in promotion["decisions"])
    assert promotion["champion"]["model_id"] == bundled_id()
    assert outcome["events"] == []
    assert pipeline.champion_path("cifar10", airflow_env["results_url"]) == "bundled:cifar10"


def test_nightly_tagging_tags_the_bucket_with_the_champion_once(airflow_env, tiny_tree, s3_client):
    images = sorted((tiny_tree / "test").rglob("*.jpg"))
    for path in images:
        s3_client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{path.parent.name}/{path.name}", Body=path.read_bytes())
    s3_client.put_object(Bucket=BUCKET, Key=f"{PREFIX}broken.jpg", Body=b"\xff\xd8 not a jpeg")
    conf = {"source": f"s3://{BUCKET}/{PREFIX}", "shards": 2, "min_shard_images": 1}  # two shards for a few images

    first = dag_test(airflow_env, "nightly_tagging", conf)
    shards = returned(first, "tag_shard")
    assert [shard["run_id"] for shard in shards] == ["nightly-20261127T020000Z-shard0of2",
                                                     "nightly-20261127T020000Z-shard1of2"]
    assert sum(shard["tagged"] for shard in shards) == len(images)
    assert sum(shard["failed"] for shard in shards) == 1
    (summary,) = returned(first, "record_summary")
    assert (summary["tagged"], summary["failed"], summary["shard_runs"]) == (len(images), 1, 2)
    # one bad file does not fail the night (the DAG run succeeded) but every record says so
    assert summary["status"] == "succeeded_with_failures"
    assert [(name, extra["status"], extra["failed"]) for name, extra in first["events"]] == [
        ("image_tags", "succeeded_with_failures", 1)]
    assert [line for line in first["log"].splitlines() if "[warning" in line.lower()
            and "run nightly-20261127T020000Z: succeeded_with_failures; " in line], "a WARNING in the task log"
    model_path = returned(first, "find_new_images")[0][0]["model_path"]
    url = airflow_env["results_url"]
    tagged = query(url, "SELECT DISTINCT image_uri, model_version FROM image_tags")
    assert len(tagged) == len(images)
    assert {version for _, version in tagged} == set(summary["model_ids"])
    assert model_path == "bundled:cifar10"  # the 1-epoch models trained above were refused
    assert summary["model_ids"] == [bundled_id()]
    assert query(url, "SELECT image_uri FROM failed_images") == [(f"s3://{BUCKET}/{PREFIX}broken.jpg",)]
    rows_before = query(url, "SELECT count(*) FROM image_hashtags")[0][0]

    again = dag_test(airflow_env, "nightly_tagging", conf)  # the same logical date: nothing new to do
    assert returned(again, "find_new_images") == [[]]
    assert [state for task, _, state in again["tasks"] if task == "tag_shard"] == ["skipped"]
    assert query(url, "SELECT count(*) FROM image_hashtags")[0][0] == rows_before
    assert query(url, "SELECT count(*) FROM tagging_runs")[0][0] == 2

    extra = sorted((tiny_tree / "train" / "cat").glob("*.jpg"))[:3]
    for path in extra:
        s3_client.put_object(Bucket=BUCKET, Key=f"{PREFIX}new/{path.name}", Body=path.read_bytes())
    manual = dag_test(airflow_env, "nightly_tagging", conf, logical_date=None)  # as the REST API triggers
    assert sum(shard["tagged"] for shard in returned(manual, "tag_shard")) == len(extra)
    assert all(shard["run_id"].startswith("nightly-manual") for shard in returned(manual, "tag_shard"))
    assert len(query(url, "SELECT DISTINCT image_uri FROM image_tags")) == len(images) + len(extra)


def test_hashtag_refresh_without_x_credentials_succeeds_and_says_so(airflow_env):
    outcome = dag_test(airflow_env, "hashtag_refresh")
    (result,) = returned(outcome, "refresh")
    assert result["x"] == "no credentials" and result["labels"] == 10 and result["requests"] == {}


def test_a_smoke_run_leaves_the_bundled_model_serving_and_a_new_champion_retags(airflow_env, tiny_tree, tmp_path,
                                                                                monkeypatch, pg_server_url):
    """On a fresh results database: train_models with a 1-epoch train_limit run promotes nothing, the
    bundled model tags samples/ as `hashtagger tag` does; after a promotion by hand, the next
    nightly_tagging re-tags the folder with the new champion and image_tags shows only its rows."""
    from fixtures import tiny_model
    from tasks import pipeline
    from tasks.registry import artifact, promote, registry
    from tasks.store import db

    results_url = _database(pg_server_url, f"hashtagger_results_{uuid.uuid4().hex[:10]}", create=True)
    results = sa.engine.make_url(results_url)
    env = dict(airflow_env["env"], AIRFLOW_CONN_POSTGRES_DEFAULT=json.dumps({
        "conn_type": "postgres", "host": results.host, "port": results.port, "login": results.username,
        "password": results.password or "", "schema": results.database}))
    fresh = dict(airflow_env, env=env, results_url=results_url)
    monkeypatch.setenv("HASHTAGGER_HOME", str(airflow_env["home"]))
    pipeline.prepare_dataset("cifar10", str(tiny_tree))  # what cifar_dataset does, without its DAG run

    trained = dag_test(fresh, "train_models", {"architectures": ["shallow"], "epochs": 1, "train_limit": 40,
                                               "recipe": "fast", "dataset": "cifar10"})
    (promotion,) = returned(trained, "promote")[0]
    assert promotion["promoted"] is None and "train_limit" in promotion["decisions"][0]["reason"]
    assert trained["events"] == []
    assert query(results_url, "SELECT model_id FROM models WHERE status = 'champion' AND dataset = 'cifar10'") == [
        (bundled_id(),)]
    refusals = query(results_url, "SELECT detail FROM model_events WHERE event = 'rejected'")
    assert len(refusals) == 1 and "smoke run" in json.loads(refusals[0][0])["reason"]

    photos = tmp_path / "photos"
    photos.mkdir()
    for sample in sorted((REPO / "samples").glob("*.jpg")):
        (photos / sample.name).write_bytes(sample.read_bytes())
    conf = {"source": str(photos), "shards": 2}
    dag_test(fresh, "nightly_tagging", conf)
    labels = query(results_url, "SELECT image_uri, label, model_version FROM image_labels")
    assert sorted((Path(uri).stem, label, model) for uri, label, model in labels) == [
        (path.stem, path.stem, bundled_id()) for path in sorted(photos.iterdir())]

    folder = tiny_model.build(airflow_env["home"] / "models" / "tiny-champion", "tiny-champion")
    artifact.write_metadata(folder, {**json.loads((folder / "metadata.json").read_text()),
                                     "dataset_version": "by-hand", "metrics": {"test_top1": 0.5}})
    engine = db.engine(results_url)
    registry.register(engine, artifact.read_metadata(folder))
    assert promote.promote_manually(engine, "tiny-champion", "test: a champion by hand").promoted
    engine.dispose()
    again = dag_test(fresh, "nightly_tagging", conf, logical_date=None)
    assert sum(shard["tagged"] for shard in returned(again, "tag_shard")) == len(labels)
    assert returned(again, "find_new_images")[0][0]["model_path"] == "home:models/tiny-champion"
    current = query(results_url, "SELECT DISTINCT image_uri, model_version FROM image_tags")
    assert len(current) == len(labels) and {model for _, model in current} == {"tiny-champion"}
    history = query(results_url, "SELECT DISTINCT model_version FROM image_tags_all ORDER BY model_version")
    assert sorted(model for (model,) in history) == sorted([bundled_id(), "tiny-champion"])
    db.engine.cache_clear()
    _database(pg_server_url, results.database, create=False)


# ------------------------------------------------------------- a first run as the README describes it

# The smoke params documented in dags/train_models.py and the README (a first try, CI).
SMOKE_PARAMS = {"architectures": ["vgg16"], "epochs": 1, "train_limit": 500}


def test_train_models_with_the_documented_smoke_params_right_after_cifar_dataset(airflow_env, tiny_tree):
    assert json.dumps(SMOKE_PARAMS) in (REPO / "dags" / "train_models.py").read_text()
    assert json.dumps(SMOKE_PARAMS) in (REPO / "README.md").read_text()
    dag_test(airflow_env, "cifar_dataset", {"dataset": "cifar10", "source": str(tiny_tree)})
    outcome = dag_test(airflow_env, "train_models", SMOKE_PARAMS)
    (trained,) = returned(outcome, "train")
    assert trained["architecture"] == "vgg16" and Path(trained["path"]).is_dir()
    (evaluated,) = returned(outcome, "evaluate")
    assert evaluated["test_images"] == 10 * TEST_PER_CLASS
    print(f"cifar_dataset -> train_models smoke run: {outcome['seconds']} s")


def test_nightly_tagging_of_a_folder_writes_the_runs_page(airflow_env, tiny_tree, tmp_path):
    folder = tmp_path / "incoming"
    for path in sorted((tiny_tree / "test" / "cat").glob("*.jpg")):
        (folder / path.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image, not a failure")
    outcome = dag_test(airflow_env, "nightly_tagging", {"source": str(folder), "shards": 1},
                       logical_date="2026-11-28T02:00:00+00:00")
    (summary,) = returned(outcome, "record_summary")
    assert (summary["tagged"], summary["failed"]) == (TEST_PER_CLASS, 0)
    (page,) = returned(outcome, "write_report")
    index = Path(page["report"].removeprefix("file://"))
    assert index == airflow_env["home"] / "reports" / summary["run_key"] / "index.html"
    assert index.read_text().count('<img src="data:image/jpeg;base64,') == TEST_PER_CLASS


def test_a_missing_source_fails_the_nightly_run_in_one_try(airflow_env, tmp_path):
    outcome = dag_test(airflow_env, "nightly_tagging", {"source": str(tmp_path / "no-such-folder"), "shards": 1},
                       logical_date="2026-11-29T02:00:00+00:00", expect="failed", keep_retries=True)
    states = {task: state for task, _, state in outcome["tasks"]}
    assert states["find_new_images"] == "failed", states
    assert outcome["tries"]["find_new_images[-1]"] == 1, outcome["tries"]


def test_reviewed_dataset_prepares_a_version_once_enough_answers_came_in(airflow_env, tiny_cifar_tree, model_dir,
                                                                         monkeypatch, tmp_path):
    """Below the threshold nothing happens; at it a version is prepared from the reviews and its Asset,
    which train_models is scheduled on, gets an event naming it; the same answers do not count twice."""
    import datetime as dt
    import shutil

    from tasks import pipeline
    from tasks.store import db, reviews_sql

    monkeypatch.setenv("HASHTAGGER_HOME", str(airflow_env["home"]))
    pipeline.prepare_dataset("cifar10", str(tiny_cifar_tree), validation_size=20)
    photos = tmp_path / "reviewed-photos"
    photos.mkdir()
    for image in sorted((tiny_cifar_tree / "test").glob("*/*.jpg"))[::10]:  # one per class
        shutil.copy(image, photos / f"{image.parent.name}-{image.name}")
    env = {**airflow_env["env"], "HASHTAGGER_DB_URL": airflow_env["results_url"]}
    for args in (["db", "migrate"], ["tag", "--model", str(model_dir), str(photos), "--quiet"]):
        done = subprocess.run([str(Path(sys.executable).parent / "hashtagger"), *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    engine = db.engine(airflow_env["results_url"])
    for row in query(airflow_env["results_url"], "SELECT image_uri, content_hash, model_version FROM image_results"):
        if not row.image_uri.startswith(str(photos)):
            continue  # the module's database also holds what earlier DAG runs tagged
        reviews_sql.record_answer(engine, uuid.uuid4().hex, row.image_uri, row.content_hash, row.model_version,
                                  Path(row.image_uri).name.split("-")[0], "ana", dt.datetime.now(dt.timezone.utc))

    waiting = dag_test(airflow_env, "reviewed_dataset", {"min_new_answers": 11})
    assert ["prepare", -1, "skipped"] in waiting["tasks"] and waiting["events"] == []
    prepared = dag_test(airflow_env, "reviewed_dataset", {"min_new_answers": 10})
    (summary,) = returned(prepared, "prepare")
    assert summary["dataset"] == "cifar10-reviewed" and summary["reviewed"]["skipped"] == 0
    assert prepared["events"] == [["reviewed_dataset", {"dataset": "cifar10-reviewed", "version": summary["version"],
                                                        "new_answers": 10}]]
    again = dag_test(airflow_env, "reviewed_dataset", {"min_new_answers": 1})  # nothing new since
    assert ["prepare", -1, "skipped"] in again["tasks"] and again["events"] == []
