"""The artifact store on moto's S3 server (127.0.0.1): a model registered from one HASHTAGGER_HOME is
served by a process with another, empty one; prepared dataset versions travel the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from fixtures import tiny_model
from tasks.registry import artifact
from tasks.registry import promote
from tasks.registry import registry
from tasks.registry import artifact_store
from tasks.store import db

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


@pytest.fixture
def s3_endpoint(monkeypatch, tmp_path):
    """moto's S3 server in a thread, with credentials for it and nothing from this machine's AWS set-up."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"), "AWS_EC2_METADATA_DISABLED": "true",
              "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    yield endpoint
    server.stop()


@pytest.fixture
def artifacts(s3_endpoint, monkeypatch):
    """An s3:// artifact location in a fresh bucket, set as HASHTAGGER_ARTIFACTS."""
    bucket = f"artifacts-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    location = f"s3://{bucket}/hashtagger"
    monkeypatch.setenv("HASHTAGGER_ARTIFACTS", location)
    return location


def trained(folder: Path, model_id: str) -> dict:
    tiny_model.build(folder, model_id)
    metadata = {"model_id": model_id, "architecture": "tiny-test", "recipe": {"name": "fast", "min_epochs": 8},
                "train_config": {"epochs": 10, "train_limit": None}, "epochs_done": 10, "dataset": "cifar10",
                "dataset_version": "1f3f9a0d6a3913bc", "class_names": tiny_model.CLASS_NAMES,
                "created_at": "2026-11-28T10:00:00+00:00",
                "metrics": {"test_top1": 0.99, "dataset_version": "1f3f9a0d6a3913bc"}}
    artifact.write_metadata(folder, metadata)
    return artifact.read_metadata(folder)


SERVE = """
import json, sys
from tasks import pipeline
model = pipeline.champion_path("cifar10", sys.argv[2])
summary = pipeline.tag_shard(sys.argv[1], model, 0, 1, "served-elsewhere", sys.argv[2])
print(json.dumps({"model": model, "tagged": summary["tagged"], "version": summary["model_id"]}))
"""


def test_a_model_registered_from_one_home_is_served_from_another_empty_one(artifacts, hashtagger_home, pg_url,
                                                                          tmp_path):
    engine = db.ensure_schema(db.engine(pg_url))
    row = registry.register(engine, trained(hashtagger_home / "models" / "tiny-s3", "tiny-s3"))
    assert row.artifact_uri == f"{artifacts}/models/tiny-s3/"
    assert promote.auto_promote(engine, "tiny-s3").promoted
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(
        Bucket=artifacts[5:].split("/")[0])["Contents"]]
    assert sorted(Path(key).name for key in keys) == ["metadata.json", "model.onnx"]

    other_home = tmp_path / "other-home"  # empty: another worker on another host
    env = {**os.environ, "HASHTAGGER_HOME": str(other_home), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SERVE, str(SAMPLES), pg_url], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"model": f"{artifacts}/models/tiny-s3/", "tagged": 8, "version": "tiny-s3"}
    cached = other_home / artifact_store.CACHE_DIR / "tiny-s3"
    assert (cached / "model.onnx").read_bytes() == (hashtagger_home / "models" / "tiny-s3" / "model.onnx").read_bytes()
    engine.dispose()


def test_a_copy_cached_before_the_onnx_export_is_refreshed_when_the_export_is_uploaded(artifacts, hashtagger_home):
    folder = tiny_model.build(hashtagger_home / "models" / "late-onnx", "late-onnx")
    onnx = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").unlink()
    uri = artifact_store.publish(folder, "late-onnx")
    cached = artifact_store.resolve(uri)  # an evaluation on this worker, before promotion
    assert not (cached / "model.onnx").exists()
    (folder / "model.onnx").write_bytes(onnx)
    artifact_store.upload_folder(folder, uri)  # promotion exported and uploaded it
    assert artifact_store.resolve(uri) == cached and (cached / "model.onnx").read_bytes() == onnx


def test_an_unreachable_artifact_says_where_it_looked(artifacts):
    with pytest.raises(artifact_store.StoreError, match="nothing there"):
        artifact_store.resolve(f"{artifacts}/models/never-uploaded/")


def test_a_prepared_dataset_version_travels_through_the_store(artifacts, hashtagger_home, tmp_path):
    from tasks.config import Settings

    version = hashtagger_home / "datasets" / "cifar10" / "0123456789abcdef"
    (version / "test").mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"name": "cifar10", "version": "0123456789abcdef"}))
    (version / "test" / "images.npy").write_bytes(os.urandom(4096))
    uri = artifact_store.push_dataset("cifar10", "0123456789abcdef")
    assert uri == f"{artifacts}/datasets/cifar10/0123456789abcdef/"
    elsewhere = Settings(home=tmp_path / "training-host")
    latest, pulled = artifact_store.pull_dataset("cifar10", None, elsewhere)  # the store's latest version
    assert (latest, pulled) == ("0123456789abcdef", elsewhere.datasets_dir / "cifar10" / "0123456789abcdef")
    assert (pulled / "test" / "images.npy").read_bytes() == (version / "test" / "images.npy").read_bytes()


def test_without_a_store_datasets_and_models_stay_on_this_disk(hashtagger_home, monkeypatch):
    monkeypatch.delenv("HASHTAGGER_ARTIFACTS", raising=False)
    assert artifact_store.push_dataset("cifar10", "0123456789abcdef") is None
    assert artifact_store.pull_dataset("cifar10", None) == (None, None)
    assert artifact_store.publish(hashtagger_home / "models" / "m1", "m1") == "home:models/m1"
    with pytest.raises(artifact_store.StoreError, match="s3://bucket/prefix"):
        artifact_store.StoreConfig.from_env({"HASHTAGGER_ARTIFACTS": "/mnt/models"})


def test_the_train_command_accepts_a_dataset_that_only_the_store_holds(artifacts, hashtagger_home, tmp_path,
                                                                       monkeypatch):
    """`hashtagger train` checks its dataset before importing TensorFlow with training's own lookup (the
    store, then this disk): a version the cifar_dataset DAG prepared on another host is not refused."""
    from tasks import errors
    from tasks.cli import train as train_command
    from tasks.config import Settings

    version = hashtagger_home / "datasets" / "cifar10" / "0123456789abcdef"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"name": "cifar10", "version": "0123456789abcdef"}))
    artifact_store.push_dataset("cifar10", "0123456789abcdef")
    monkeypatch.setenv("HASHTAGGER_HOME", str(tmp_path / "training-host"))  # nothing prepared on this disk
    train_command.check_dataset("cifar10", Settings.from_env())
    assert (tmp_path / "training-host" / "datasets" / "cifar10" / "0123456789abcdef" / "manifest.json").exists()
    with pytest.raises(errors.UserError, match="no prepared cifar100 dataset in s3://"):
        train_command.check_dataset("cifar100", Settings.from_env())
