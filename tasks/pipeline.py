"""What the Airflow DAGs call: one plain function per task, taking URLs, paths and ids, returning small dicts.

No Airflow in here: the DAG layer turns connections into plain arguments (a SQLAlchemy URL, S3 settings,
an X token), so every function runs and tests without Airflow. Each one wires stages together
(prepare, train, evaluate, registry and promote, hashtags refresh, tag) and returns what the next task
or a person needs to see: ids, paths, counts, never arrays or models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re

from tasks.config import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """How to reach the bucket, as boto3 reads it from the environment (AWS_ENDPOINT_URL and friends)."""

    endpoint_url: str | None = None  # None: AWS itself
    access_key_id: str | None = None  # None: boto3's own chain (instance role, AWS_PROFILE, ...)
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None

    def environment(self) -> dict[str, str]:
        names = {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": self.access_key_id,
                 "AWS_SECRET_ACCESS_KEY": self.secret_access_key, "AWS_SESSION_TOKEN": self.session_token,
                 "AWS_DEFAULT_REGION": self.region}
        return {name: value for name, value in names.items() if value}


@contextlib.contextmanager
def aws_environment(s3: S3Settings | None):
    """Run the body with `s3` in the standard AWS variables (tasks.tag.s3 builds its client from them)."""
    values = s3.environment() if s3 else {}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def settings(db_url: str | None = None) -> Settings:
    """Settings from the environment (HASHTAGGER_HOME), with the results database given by the caller."""
    return dataclasses.replace(Settings.from_env(), db_url=db_url) if db_url else Settings.from_env()


def _engine(db_url: str | None):
    from tasks.store import db

    return db.ensure_schema(db.engine(settings(db_url).database_url))


# ------------------------------------------------------------------------------------------ datasets

def prepare_dataset(dataset: str, source: str | None = None) -> dict:
    """Build (or find) the dataset version for `source`; returns its name, version and counts."""
    from tasks.data import prepare

    manifest = prepare.prepare(dataset, source, settings(), prepare.PrepareConfig(), progress=False)
    return {"dataset": manifest["name"], "version": manifest["version"], "source": manifest["source"],
            "counts": manifest["counts"], "stored_at": _push_dataset(manifest["name"], manifest["version"])}


def _push_dataset(name: str, version: str) -> str | None:
    """Upload the prepared version to the artifact store (HASHTAGGER_ARTIFACTS), for workers elsewhere."""
    from tasks.registry import store

    return store.push_dataset(name, version, settings())


# ------------------------------------------------------------------------------------------ training

def training_plan(architectures: list[str], dataset: str, recipe: str, epochs: int,
                  dataset_version: str | None = None, train_limit: int | None = None,
                  budget_minutes: float | None = None) -> list[dict]:
    """One TrainConfig (as a dict) per distinct architecture; unknown names fail before any training."""
    import models
    from tasks.train import recipes

    unknown = [name for name in architectures if name not in models.ARCHITECTURES]
    if unknown or not architectures:
        raise ValueError(f"unknown or no architectures {unknown or architectures}; "
                         f"choose from {', '.join(models.ARCHITECTURES)}")
    if recipe not in recipes.RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(recipes.RECIPES)}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    return [{"architecture": name, "dataset": dataset, "dataset_version": dataset_version, "recipe": recipe,
             "epochs": int(epochs), "train_limit": train_limit, "budget_minutes": budget_minutes}
            for name in dict.fromkeys(architectures)]


def train_model(spec: dict) -> dict:
    """Train one architecture as `spec` (TrainConfig fields) says; returns the saved model's summary."""
    from tasks.train import train

    # The evaluate task registers the model in the DAG's results database (the worker's default
    # database is not that one), so training does not.
    config = dataclasses.replace(train.TrainConfig(**spec), register=False)
    config = dataclasses.replace(config, dataset_version=_pull_dataset(config.dataset, config.dataset_version))
    return _publish(model_summary(train.train(config, settings())))


def _pull_dataset(name: str, version: str | None) -> str | None:
    """A dataset version prepared on another host comes from the artifact store, when one is set
    (version None: the store's latest); returns the version to train on (None: the local latest)."""
    from tasks.registry import store

    return store.pull_dataset(name, version, settings())[0]


def _publish(summary: dict) -> dict:
    """Upload the model folder to the artifact store when one is set; the summary gains its reference."""
    from tasks.registry import store

    return dict(summary, artifact_uri=store.publish(summary["path"], summary["model_id"], settings()))


def model_summary(metadata: dict) -> dict:
    metrics = metadata.get("metrics", {})
    return {"model_id": metadata["model_id"], "path": metadata["path"],
            "architecture": metadata["architecture"], "dataset": metadata["dataset"],
            "dataset_version": metadata["dataset_version"], "test_top1": metrics.get("test_top1"),
            "test_top5": metrics.get("test_top5"), "test_images": metrics.get("test_images")}


def evaluate_model(model_path: str, db_url: str | None = None) -> dict:
    """Register the saved model with its evaluation on its own dataset version (reports beside it).

    Training evaluates at its end, so a model from `train_model` is not evaluated twice; an artifact
    without reports (trained elsewhere) is evaluated here first.
    """
    from pathlib import Path

    from tasks.registry import artifact
    from tasks.evaluate import evaluate
    from tasks.registry import registry
    from tasks.registry import store

    reference = str(model_path)
    model_path = store.resolve(reference, settings())  # an s3:// model trained on another host
    metadata = artifact.read_metadata(model_path)
    reports_dir = Path(metadata["path"]) / artifact.REPORTS_DIR
    if not (reports_dir / "metrics.json").exists():
        evaluate.evaluate_artifact(model_path, tta=evaluate.recipe_tta(metadata), settings=settings())
        metadata = artifact.read_metadata(model_path)
    if reference.startswith(store.S3):
        metadata["artifact_uri"] = reference
    registry.register(_engine(db_url), metadata)
    return dict(model_summary(metadata), reports_dir=str(reports_dir))


# ------------------------------------------------------------------------------------------ promotion

def promote(candidates: list[dict], dataset: str, db_url: str | None = None) -> dict:
    """Offer the `dataset` models among `candidates` for promotion, best first; returns the outcome.

    The registry promotes a challenger only if it beats the champion's test top-1 on the same dataset
    version by its margin, one champion per dataset even under concurrent promotions; the promoted
    model is exported to ONNX for the lean tagging workers.
    """
    from tasks.registry import promote as promotion
    from tasks.registry import registry

    candidates = sorted((candidate for candidate in candidates if candidate["dataset"] == dataset),
                        key=lambda candidate: (-candidate["test_top1"], candidate["model_id"]))
    if not candidates:
        raise ValueError(f"no trained {dataset} model to promote")
    engine = _engine(db_url)
    decisions = [promotion.auto_promote(engine, candidate["model_id"]).as_dict() for candidate in candidates]
    for decision in decisions:
        # the promote task's log: why each model was (not) promoted, as model_events records it
        log.info("%s %s: %s", decision["model_id"], "PROMOTED" if decision["promoted"] else "REFUSED",
                 decision["reason"])
    champion = registry.champion(engine, dataset)
    return {"dataset": dataset, "best": candidates[0]["model_id"],
            "promoted": next((d["model_id"] for d in decisions if d["promoted"]), None),
            "champion": champion and {"model_id": champion["model_id"], "path": champion["artifact_uri"],
                                      "test_top1": champion["test_top1"]},
            "decisions": [{key: d[key] for key in ("model_id", "promoted", "reason")} for d in decisions]}


def champion_path(dataset: str = "cifar10", db_url: str | None = None) -> str:
    """The reference of the model tagging serves (bundled:, home:, s3:// or a path, resolved by each
    worker): the registry's champion of `dataset`, else the bundled model. Records nothing."""
    from tasks.tag import predictor

    return predictor.default_model_path(_engine(db_url), dataset, record_bundled=False)


# ------------------------------------------------------------------------------------------ hashtags

def refresh_hashtags(db_url: str | None, bearer_token: str | None, dataset: str = "cifar10") -> dict:
    """Refresh the X hashtag cache for the dataset's labels; never raises because of X."""
    from tasks.hashtags import refresh

    return refresh.refresh(_engine(db_url), dataset=dataset, bearer_token=bearer_token)


# ------------------------------------------------------------------------------------------ tagging

def run_key(logical_date: dt.datetime | None, dag_run_id: str) -> str:
    """The tagging run id stem of one DAG run: from its logical date, or its run id when it has none."""
    if logical_date is not None:
        return "nightly-" + logical_date.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return "nightly-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dag_run_id).strip("-")


def shard_run_id(key: str, shard: int, shards: int) -> str:
    return f"{key}-shard{shard}of{shards}"


def list_new_images(source: str, model_path: str, db_url: str | None = None,
                    s3: S3Settings | None = None) -> dict:
    """Count the images of `source` that the model has not tagged yet; writes nothing."""
    from tasks.store import db
    from tasks.tag import predictor
    from tasks.tag import tag
    from tasks.hashtags.engine import HashtagEngine

    with aws_environment(s3):  # an s3:// model comes from the same store settings as the images
        model = predictor.load(model_path, runtime="onnx")
        counted = tag.run(source, model, HashtagEngine([]), db.engine(settings(db_url).database_url),
                          tag.TagConfig(dry_run=True))
    return {"source": counted["source"], "model_path": str(model_path), "model_version": model.model_version,
            "seen": counted["seen"], "new": counted["tagged"]}


def tag_shard(source: str, model_path: str, shard: int, shards: int, run_id: str,
              db_url: str | None = None, s3: S3Settings | None = None, platform: str = "generic",
              limit: int | None = None) -> dict:
    """Tag the images of one shard of `source` that the model has not tagged, under `run_id` (a rerun
    repeats the same run), at most `limit` of them; serves ONNX only, so TensorFlow is never imported."""
    from tasks.tag import predictor
    from tasks.tag import tag
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig

    engine = _engine(db_url)
    _ensure_baseline(engine)
    hashtags = providers.engine_for(engine, RankConfig(platform=platform))
    with aws_environment(s3):
        model = predictor.load(model_path, runtime="onnx")
        summary = tag.run(source, model, hashtags, engine, tag.TagConfig(shard=(shard, shards), limit=limit),
                          run_id)
    keys = ("run_id", "source", "model_version", "status", "seen", "tagged", "skipped", "failed", "seconds")
    return {key: summary.get(key) for key in keys}


def _ensure_baseline(engine) -> None:
    """Tagging writes results: the first write records the bundled models as the baseline champions."""
    from tasks.registry import registry

    registry.ensure_baseline(engine)


def shard_limit(max_images: int | None, shards: int) -> int | None:
    """Each shard's share of a run's cap on images (None: no cap); shards split a source evenly."""
    return None if max_images is None else -(-int(max_images) // shards)


def summarize_run(key: str, shards: int, db_url: str | None = None) -> dict:
    """Totals over the shard runs of one DAG run, as recorded in tagging_runs."""
    import sqlalchemy as sa

    run_ids = [shard_run_id(key, shard, shards) for shard in range(shards)]
    query = sa.text("SELECT run_id, model_version, status, seen, tagged, skipped, failed FROM tagging_runs "
                    "WHERE run_id IN :run_ids ORDER BY run_id").bindparams(
        sa.bindparam("run_ids", expanding=True))
    with _engine(db_url).connect() as connection:
        rows = [dict(row) for row in connection.execute(query, {"run_ids": run_ids}).mappings()]
    totals = {name: sum(row[name] for row in rows) for name in ("seen", "tagged", "skipped", "failed")}
    statuses = {row["status"] for row in rows}
    versions = sorted({row["model_version"] for row in rows})
    return dict(totals, run_key=key, shard_runs=len(rows), model_versions=versions,
                status="succeeded" if statuses <= {"succeeded"} else ",".join(sorted(statuses)))
