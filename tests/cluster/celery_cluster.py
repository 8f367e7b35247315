#!/usr/bin/env python
"""A real distributed run on one machine: an Airflow 3 Celery cluster tags a bucket, then goes away.

Starts, each as its own process group: an S3 server (moto), the api-server, the scheduler, the
dag-processor, one Celery worker on the `default` queue and one on `gpu`. Metadata and Celery results
live in a fresh PostgreSQL database, the broker is Redis (a dedicated database number), results go to
another fresh PostgreSQL database. It then triggers `nightly_tagging` through the REST API (/api/v2,
with a JWT from POST /auth/token), waits for the run to succeed within a bound, checks the rows in
`image_tags` and `failed_images`, and stops every process it started by PID: SIGTERM to each
component, SIGKILL to what is left of its process group, and a final sweep for any process carrying
this run's marker in its environment. Exit status 0 only if the run succeeded, the rows are right
and nothing was left behind.

    .venv/bin/python tests/cluster/celery_cluster.py [--timeout 360] [--keep]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), Redis on 127.0.0.1:6379, the bundled model
(models/bundled/cifar10) and the shared CIFAR-10 JPEGs (synthetic images are used when those are absent).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("HASHTAGGER_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("HASHTAGGER_CLUSTER_REDIS_DB", "11"))  # dedicated to this script: flushed
MARKER = "HASHTAGGER_CLUSTER_RUN"  # every started process inherits it; the final sweep looks for it
BUCKET, PREFIX = "photos", "incoming/"
IMAGES_PER_CLASS = 3
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DAG_ID = "nightly_tagging"
SHARDS = 2
TRAIN_PER_CLASS = {"train": 20, "test": 5}  # --train: 200 + 50 images, one epoch in seconds


class ClusterFailure(RuntimeError):
    """The cluster did not do what it should; the message says what."""


def say(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # own session and process group: the group is killed as a whole if the leader leaves children
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        say(f"started {self.name} (pid {self.process.pid}): {' '.join(self.argv[1:])}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 30.0) -> list[int]:
        """SIGTERM, then SIGKILL to the group and to every process seen under it; returns survivors."""
        if self.process is None:
            return []
        pid = self.process.pid
        tree = process_tree(pid)  # before the signal: orphans are re-parented and lose their ancestry
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name} (pid {pid}) still running {grace_s:.0f} s after SIGTERM")
        try:
            os.killpg(pid, signal.SIGKILL)  # leftovers of the group: celery children, task processes
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(10)
        survivors = kill_if_same(tree)  # anything that left the group (setsid) but was seen under it
        say(f"stopped {self.name} (pid {pid}, exit {self.process.returncode})")
        return survivors

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], fields[19]


def process_tree(root: int) -> dict[int, str]:
    """{pid: start time} of `root` and all its descendants now alive."""
    parents, starts = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], starts[int(entry.name)] = stat[0], stat[2]
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in starts and pid not in tree:
            tree[pid] = starts[pid]
            frontier.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def kill_if_same(tree: dict[int, str], wait_s: float = 3.0) -> list[int]:
    """SIGKILL the processes of a snapshot still running after `wait_s` (same pid and start time, so
    never a reused pid); returns them."""

    def alive() -> list[int]:
        return [pid for pid, started in tree.items()
                if (stat := _stat(pid)) is not None and stat[2] == started and stat[1] != "Z"]

    deadline = time.monotonic() + wait_s
    while (survivors := alive()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


def marked_processes(marker_value: str) -> list[int]:
    """PIDs of live processes whose environment carries this run's marker (a process that rewrites its
    title with setproctitle may hide it: process_tree snapshots cover those)."""
    needle = f"{MARKER}={marker_value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        stat = _stat(int(entry.name))
        if needle in environ.split(b"\0") and stat is not None and stat[1] != "Z":
            found.append(int(entry.name))
    return found


# ---------------------------------------------------------------------------------------------- setup

def database(name: str, create: bool) -> str:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"' if create
                                       else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def flush_redis_db() -> None:
    import redis

    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=5).flushdb()


def sample_images() -> dict[str, bytes]:
    """Key -> JPEG bytes: real CIFAR-10 test images when the shared archive is here, else synthetic ones."""
    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    wanted = {f"cifar10-jpeg/test/{c}/{i:04d}.jpg": f"{c}/{i:04d}.jpg"
              for c in CLASSES for i in range(IMAGES_PER_CLASS)}
    images = {}
    if archive.exists():
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name in wanted:
                    images[wanted[member.name]] = tar.extractfile(member).read()
    else:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for key in wanted.values():
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
            images[key] = buffer.getvalue()
    images["broken.jpg"] = b"\xff\xd8\xff\xe0 this is not a JPEG"
    return images


def airflow_environment(work: Path, urls: dict[str, str], api_port: int, s3_port: int, marker: str,
                        password_file: Path) -> dict[str, str]:
    results = sa.engine.make_url(urls["results"])
    meta = sa.engine.make_url(urls["meta"])
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "AWS_")) and key not in ("HASHTAGGER_DB_URL", "X_BEARER_TOKEN")}
    env.update({
        MARKER: marker,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # components start `airflow` by name
        "AIRFLOW_HOME": str(work / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["meta"],
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta.set(drivername="postgresql").render_as_string(
            hide_password=False),
        # two cores: a few task slots in all
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # only the DAG under test is unpaused
        # no runs from schedules (unpausing a daily DAG would start today's run at once): only ours
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # every component must agree on these, or workers cannot talk to the api-server
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ci:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps({
            "conn_type": "postgres", "host": results.host, "port": results.port, "login": results.username,
            "password": results.password or "", "schema": results.database}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "cluster", "password": "cluster-secret",
            "extra": {"endpoint_url": f"http://127.0.0.1:{s3_port}", "region_name": "us-east-1"}}),
        "HASHTAGGER_HOME": str(work / "hashtagger-home"),
        "HASHTAGGER_ONNX_THREADS": "1",
    })
    return env


def components(work: Path, env: dict[str, str], api_port: int, s3_port: int) -> list[Component]:
    logs = work / "logs"
    airflow = str(BIN / "airflow")

    def worker_env(log_port: int) -> dict[str, str]:
        return dict(env, AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(log_port))  # two workers, one host

    return [
        Component("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env,
                  logs / "s3.log"),
        Component("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(api_port),
                                 "--workers", "1"], env, logs / "api-server.log"),
        Component("scheduler", [airflow, "scheduler"], env, logs / "scheduler.log"),
        Component("dag-processor", [airflow, "dag-processor"], env, logs / "dag-processor.log"),
        Component("worker-default", [airflow, "celery", "worker", "--queues", "default", "--concurrency", "2",
                                     "--celery-hostname", "default@%h"], worker_env(free_port()),
                  logs / "worker-default.log"),
        Component("worker-gpu", [airflow, "celery", "worker", "--queues", "gpu", "--concurrency", "1",
                                 "--celery-hostname", "gpu@%h"], worker_env(free_port()),
                  logs / "worker-gpu.log"),
    ]


# ---------------------------------------------------------------------------------------------- REST API

class Api:
    def __init__(self, base: str):
        self.base = base
        self.token: str | None = None

    def call(self, method: str, path: str, body: dict | None = None, expect=(200,)) -> tuple[int, dict]:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode(errors="replace")
        if status not in expect:
            raise ClusterFailure(f"{method} {path} answered {status}: {text[:500]}")
        return status, json.loads(text) if text else {}

    def login(self, username: str, password: str) -> None:
        _, answer = self.call("POST", "/auth/token", {"username": username, "password": password},
                              expect=(200, 201))
        self.token = answer["access_token"]


def wait_for(what: str, check, timeout_s: float, cluster: list[Component], pause_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        dead = [component.name for component in cluster if not component.alive()]
        if dead:
            raise ClusterFailure(f"{', '.join(dead)} exited while waiting for {what}")
        try:
            value = check()
        except Exception:  # not up yet: connection refused, 404, botocore's own errors
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterFailure(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(pause_s)


def run_dag(api: Api, cluster: list[Component], dag_id: str, conf: dict, timeout_s: float,
            outcome: dict) -> list[dict]:
    """Unpause `dag_id`, trigger it as the REST API does (no logical date), wait; its task instances."""
    api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    _, dag_run = api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    run_id = dag_run["dag_run_id"]
    say(f"triggered {dag_id} run {run_id}")
    triggered = time.monotonic()

    def finished():
        state = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")[1]["state"]
        return state if state in ("success", "failed") else None

    state = wait_for(f"{dag_id} run {run_id} to finish", finished, timeout_s, cluster, 3)
    outcome[f"{dag_id}_s"] = round(time.monotonic() - triggered, 1)
    _, listing = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    tasks = sorted(listing["task_instances"], key=lambda ti: (ti["task_id"], ti["map_index"]))
    for ti in tasks:
        say(f"  {ti['task_id']}[{ti['map_index']}] {ti['state']} on {ti.get('hostname')} "
            f"(queue {ti.get('queue')}, pool {ti.get('pool')}, try {ti.get('try_number')}, "
            f"{ti.get('duration') or 0:.1f} s)")
    if state != "success":
        raise ClusterFailure(f"{dag_id} run {run_id} ended {state}")
    say(f"{dag_id} run {run_id} succeeded in {outcome[f'{dag_id}_s']} s")
    return tasks


def train_a_champion(api: Api, cluster: list[Component], work: Path, timeout_s: float, outcome: dict) -> None:
    """cifar_dataset on a small tree, then train_models with two architectures on the `gpu` queue."""
    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not archive.exists():
        raise ClusterFailure(f"--train needs {archive}")
    tree = work / "tree"
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and int(parts[3][:4]) < TRAIN_PER_CLASS[parts[1]]:
                target = tree / parts[1] / parts[2] / parts[3]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    api.call("POST", "/api/v2/pools", {"name": "training", "slots": 1}, expect=(200, 201))
    run_dag(api, cluster, "cifar_dataset", {"dataset": "cifar10", "source": str(tree)}, timeout_s, outcome)
    tasks = run_dag(api, cluster, "train_models", {"architectures": ["shallow", "vgg16"], "epochs": 1,
                                                   "recipe": "fast", "dataset": "cifar10"}, timeout_s, outcome)
    trained = [ti for ti in tasks if ti["task_id"] == "train"]
    if len(trained) != 2 or any((ti["state"], ti["queue"], ti["pool"]) != ("success", "gpu", "training")
                                for ti in trained):
        raise ClusterFailure(f"expected two trainings on the gpu queue in the training pool: {trained}")
    if "Executing workload" not in (work / "logs" / "worker-gpu.log").read_text(errors="replace"):
        raise ClusterFailure("the gpu worker's log shows no training task")


# ---------------------------------------------------------------------------------------------- the run

def run(args) -> dict:
    marker = uuid.uuid4().hex
    work = Path(tempfile.mkdtemp(prefix="hashtagger-cluster-"))
    suffix = marker[:10]
    names = {"meta": f"hashtagger_cluster_meta_{suffix}", "results": f"hashtagger_cluster_results_{suffix}"}
    api_port, s3_port = free_port(), free_port()
    password = secrets.token_urlsafe(16)
    password_file = work / "passwords.json"
    cluster: list[Component] = []
    created: list[str] = []
    outcome = {"work": str(work), "ok": False}
    started = time.monotonic()
    try:
        model = REPO / "models" / "bundled" / "cifar10" / "metadata.json"
        if not model.exists():
            raise ClusterFailure(f"no bundled model at {model.parent}: nightly tagging has nothing to serve")
        for key, name in names.items():
            database(name, create=True)
            created.append(name)
        urls = {key: sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
                for key, name in names.items()}
        flush_redis_db()
        password_file.write_text(json.dumps({"ci": password}))
        env = airflow_environment(work, urls, api_port, s3_port, marker, password_file)

        say(f"work folder {work}; migrating the metadata database {names['meta']}")
        migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, cwd=REPO,
                                 capture_output=True, text=True, timeout=300)
        if migrate.returncode != 0:
            raise ClusterFailure(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}{migrate.stderr[-2000:]}")
        outcome["migrate_s"] = round(time.monotonic() - started, 1)

        cluster.extend(components(work, env, api_port, s3_port))
        for component in cluster:
            component.start()

        import boto3

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", aws_access_key_id="cluster",
                          aws_secret_access_key="cluster-secret", region_name="us-east-1")
        wait_for("the S3 server", lambda: s3.list_buckets() is not None, 60, cluster[:1], 0.5)
        s3.create_bucket(Bucket=BUCKET)
        images = sample_images()
        for key, data in images.items():
            s3.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=data)
        say(f"uploaded {len(images)} objects to s3://{BUCKET}/{PREFIX}")

        api = Api(f"http://127.0.0.1:{api_port}")
        wait_for("the api-server", lambda: api.call("GET", "/api/v2/monitor/health")[0] == 200, args.start_timeout,
                 cluster)
        api.login("ci", password)
        wait_for(f"the DAG {DAG_ID} to be parsed", lambda: api.call("GET", f"/api/v2/dags/{DAG_ID}")[1],
                 args.start_timeout, cluster)
        for name in ("worker-default", "worker-gpu"):
            component = next(c for c in cluster if c.name == name)
            wait_for(f"{name} to be ready", lambda: " ready." in component.log_path.read_text(errors="replace"),
                     args.start_timeout, cluster)
        outcome["startup_s"] = round(time.monotonic() - started, 1)
        say(f"cluster up after {outcome['startup_s']} s")

        if args.train:
            train_a_champion(api, cluster, work, args.timeout, outcome)
        # min_shard_images 1: every shard runs, for a few images
        conf = {"source": f"s3://{BUCKET}/{PREFIX}", "shards": SHARDS, "min_shard_images": 1}
        tasks = run_dag(api, cluster, DAG_ID, conf, args.timeout, outcome)
        shards = [task for task in tasks if task["task_id"] == "tag_shard"]
        if len(shards) != SHARDS or any(task["state"] != "success" for task in shards):
            raise ClusterFailure(f"expected {SHARDS} successful tag_shard tasks, got {shards}")
        outcome["rows"] = check_rows(urls["results"], len(images) - 1, champion_expected=args.train)
        outcome["ok"] = True
        say(f"rows: {outcome['rows']}")
    except Exception as error:  # report, and still stop everything below
        outcome["error"] = str(error) if isinstance(error, ClusterFailure) else traceback.format_exc()
        say(f"FAILED: {outcome['error']}")
        for component in cluster:
            say(f"--- last lines of {component.name} ({component.log_path})\n{component.tail()}")
    finally:
        survivors = [pid for component in reversed(cluster) for pid in component.stop()]
        leftovers = marked_processes(marker)
        for pid in leftovers:
            say(f"killing left-behind process {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        outcome["left_behind"] = marked_processes(marker)
        if leftovers or survivors or outcome["left_behind"]:
            outcome["ok"] = False
            outcome.setdefault("error", f"processes outlived their component: {survivors + leftovers}")
        try:
            flush_redis_db()
        finally:
            if not args.keep:
                for name in created:
                    database(name, create=False)
        if outcome["ok"] and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        outcome["total_s"] = round(time.monotonic() - started, 1)
    return outcome


def check_rows(results_url: str, good_images: int, champion_expected: bool = False) -> dict:
    engine = sa.create_engine(results_url)
    try:
        with engine.connect() as connection:
            tagged = connection.execute(sa.text(
                "SELECT count(DISTINCT image_uri), count(*), count(DISTINCT model_version) FROM image_tags")).one()
            failed = connection.execute(sa.text("SELECT image_uri FROM failed_images")).scalars().all()
            runs = connection.execute(sa.text(
                "SELECT run_id, status, tagged FROM tagging_runs ORDER BY run_id")).all()
            versions = connection.execute(sa.text("SELECT DISTINCT model_version FROM image_tags")).scalars().all()
            champion = connection.execute(sa.text(
                "SELECT model_id FROM models WHERE dataset = 'cifar10' AND status = 'champion'")).scalar() \
                if champion_expected else None
    finally:
        engine.dispose()
    rows = {"images": tagged[0], "hashtag_rows": tagged[1], "model_versions": versions, "failed": len(failed),
            "tagging_runs": [tuple(row) for row in runs]}
    if champion_expected and versions != [champion]:
        raise ClusterFailure(f"nightly tagging used {versions}, not the new champion {champion}")
    if tagged[0] != good_images or tagged[2] != 1 or tagged[1] < good_images:
        raise ClusterFailure(f"expected {good_images} tagged images by one model in image_tags, found {rows}")
    if failed != [f"s3://{BUCKET}/{PREFIX}broken.jpg"]:
        raise ClusterFailure(f"expected the broken image in failed_images, found {failed}")
    # broken.jpg falls in one shard: that run is succeeded_with_failures, every other one succeeded.
    statuses = sorted(status for _, status, _ in runs)
    if statuses != ["succeeded"] * (SHARDS - 1) + ["succeeded_with_failures"]:
        raise ClusterFailure(f"expected {SHARDS - 1} succeeded tagging runs and one succeeded_with_failures "
                             f"(the shard with broken.jpg), found {runs}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=360, help="seconds the DAG run may take")
    parser.add_argument("--start-timeout", type=float, default=240, help="seconds the cluster may take to start")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the work folder")
    parser.add_argument("--train", action="store_true",
                        help="first prepare a tiny dataset and train two models on the gpu queue; the "
                             "nightly run must then use the new champion")
    args = parser.parse_args(argv)
    outcome = run(args)
    print(json.dumps(outcome, indent=1, default=str))
    if outcome["ok"]:
        say(f"PASSED in {outcome['total_s']} s; no process left behind")
        return 0
    say(f"FAILED; logs in {outcome['work']}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
