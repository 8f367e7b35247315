"""The service layer: one plain function per use case, called by both front ends (tasks/cli/ and dags/).

Nothing calls the stages below (data, train, evaluate, registry, tag, hashtags, store) except through
here, so the CLI and the DAGs wire each use case the same way. No Airflow in here: the DAG layer turns
connections into plain arguments (a SQLAlchemy URL, S3 settings, an X token), so every function runs
and tests without Airflow. `db_url` None means the environment's results database (HASHTAGGER_DB_URL,
else the embedded SQLite under HASHTAGGER_HOME). Functions return small things: typed contracts,
ids, paths, counts; never arrays or models, except `serving_model`, which the tag use case takes.

Importing this module is cheap (the DAG files import it when Airflow parses them): every stage is
imported inside the function that needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
from pathlib import Path

from tasks.config import Settings
from tasks.hashtags.rank import PLATFORM_LIMITS  # noqa: F401  for the front ends' choices (a stdlib-only module)

log = logging.getLogger(__name__)

DATASETS = ("cifar10", "cifar100")  # the datasets with a bundled model


class RunActive(RuntimeError):
    """Another live run is tagging the same source (and shard): this one would only repeat its work."""


class RunFailed(RuntimeError):
    """A tagging run stopped early (source gone, database down); `summary` is what it wrote, all complete."""

    def __init__(self, message: str, summary):
        super().__init__(message)
        self.summary = summary  # tasks.tag.tag.RunSummary


def database_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the results database is not ready (not migrated, not answering)."""
    from tasks.store import db

    return db.MigrationError, db.DatabaseUnavailable


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input or an unready environment: show the message, no traceback
    (the one registry, tasks.errors.USER_FACING)."""
    from tasks import errors

    return errors.user_facing_classes()


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


# ------------------------------------------------------------------------------------------ database

def results_engine(db_url: str | None = None):
    """The results database, its schema checked: SchemaNotReady ("run `hashtagger db migrate`") when it
    is missing or behind, DatabaseUnavailable when the database does not answer. The embedded default
    SQLite is migrated on first use instead."""
    from tasks.store import db

    return db.require_schema(db.engine(settings(db_url).database_url))


def _plain_engine(db_url: str | None):
    """The results database as it is: for reads that work on an unmigrated database too."""
    from tasks.store import db

    return db.engine(settings(db_url).database_url)


def migrate_database(db_url: str | None = None) -> tuple[str, list[str], list[str]]:
    """Apply new migrations and record the bundled models as the baseline champions; returns (database,
    migration names applied now, model ids crowned now)."""
    from tasks.store import db

    engine = db.engine(settings(db_url).database_url)
    applied = db.migrate(engine)
    crowned = ensure_baseline(engine)
    return engine.url.render_as_string(hide_password=True), applied, crowned


def ensure_baseline(engine, dataset: str | None = None) -> list[str]:
    """Record the bundled model of `dataset` (None: of every dataset that has one) as the database's
    baseline champion where it has none (tasks.registry.registry.ensure_baseline); returns the model ids
    crowned now, [] when there was nothing to do.

    A write path (db migrate, tag writes, promotion): the champion lookup never writes.
    """
    from tasks.registry import registry

    return registry.ensure_baseline(engine, DATASETS if dataset is None else (dataset,))


# ------------------------------------------------------------------------------------------ datasets

def prepare_dataset(dataset: str, source: str | None = None, md5: str | None = None,
                    validation_size: int = 5000, seed: int = 0, progress: bool = False):
    """Build (or find) the dataset version for `source` (None: the official archive); its DatasetManifest."""
    from tasks.data import prepare

    config = prepare.PrepareConfig(validation_size=validation_size, seed=seed)
    manifest = prepare.prepare(dataset, source, settings(), config, md5=md5, progress=progress)
    stored_at = _push_dataset(manifest.name, manifest.version)
    if stored_at:
        log.info("dataset %s %s uploaded to %s", manifest.name, manifest.version, stored_at)
    return manifest


def _push_dataset(name: str, version: str) -> str | None:
    """Upload the prepared version to the artifact store (HASHTAGGER_ARTIFACTS), for workers elsewhere."""
    from tasks.registry import store

    return store.push_dataset(name, version, settings())


# ------------------------------------------------------------------------------------------ training

def architectures() -> tuple[str, ...]:
    """Names of the model architectures (models/)."""
    import models

    return models.ARCHITECTURES


def recipe_names() -> tuple[str, ...]:
    """Names of the training recipes (tasks/train/recipes.py)."""
    from tasks.train import recipes

    return tuple(recipes.RECIPES)


def training_plan(architectures: list[str], dataset: str, recipe: str, epochs: int,
                  dataset_version: str | None = None, train_limit: int | None = None,
                  budget_minutes: float | None = None) -> list[dict]:
    """One training spec (TrainConfig fields) per distinct architecture; bad names fail before any training."""
    known = globals()["architectures"]()
    unknown = [name for name in architectures if name not in known]
    if unknown or not architectures:
        raise ValueError(f"unknown or no architectures {unknown or architectures}; choose from {', '.join(known)}")
    if recipe not in recipe_names():
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(recipe_names())}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    return [{"architecture": name, "dataset": dataset, "dataset_version": dataset_version, "recipe": recipe,
             "epochs": int(epochs), "train_limit": train_limit, "budget_minutes": budget_minutes}
            for name in dict.fromkeys(architectures)]


def train(spec: dict, register: bool = False, db_url: str | None = None, callbacks: tuple = ()):
    """Train one model as `spec` (TrainConfig fields) says; its ModelMetadata.

    With `register`, it is recorded as a candidate in the results database; a database that cannot take
    it is logged, never fatal: the saved model stays, and `hashtagger models register PATH` records it later.
    A dataset version prepared on another host comes from the artifact store first (HASHTAGGER_ARTIFACTS).
    """
    from tasks.registry import artifact
    from tasks.train import train as training

    config = dataclasses.replace(training.TrainConfig(**spec), register=False)
    config = dataclasses.replace(config, dataset_version=_pull_dataset(config.dataset, config.dataset_version))
    metadata = artifact.ModelMetadata.from_dict(training.train(config, settings(), callbacks=tuple(callbacks)))
    if register:
        try:
            register_model(metadata.path, db_url)
        except Exception as error:  # noqa: BLE001  the model is saved; only its registry row is missing
            log.error("model %s saved but not registered (%s): run `hashtagger models register %s`",
                      metadata.model_id, error, metadata.path)
    return metadata


def train_model(spec: dict) -> dict:
    """Train one model (the DAG's task: the evaluate task registers it in the DAG's database); its summary,
    with `artifact_uri`, the model's reference in the artifact store (its folder when none is set)."""
    return _publish(model_summary(train(spec)))


def find_dataset(name: str, version: str | None = None, where: Settings | None = None) -> Path:
    """The folder of the dataset version `train` would use, found the way it finds it: pulled from the
    artifact store first when one is set (HASHTAGGER_ARTIFACTS), then looked up on this disk as
    tasks.data.dataset.load does (`where`: the settings naming this disk's datasets folder). DatasetNotFound
    (or StoreError) saying what to run otherwise."""
    from tasks.data import dataset

    return dataset.find(name, _pull_dataset(name, version), where or settings())


def _pull_dataset(name: str, version: str | None) -> str | None:
    """A dataset version prepared on another host comes from the artifact store, when one is set
    (version None: the store's latest); returns the version to train on (None: the local latest)."""
    from tasks.registry import store

    return store.pull_dataset(name, version, settings())[0]


def _publish(summary: dict) -> dict:
    """Upload the model folder to the artifact store when one is set; the summary gains its reference."""
    from tasks.registry import store

    return dict(summary, artifact_uri=store.publish(summary["path"], summary["model_id"], settings()))


def model_summary(metadata) -> dict:
    """What a DAG passes on about a model (ModelMetadata): ids, path, test accuracy; JSON-friendly."""
    metrics = metadata.metrics or {}
    return {"model_id": metadata.model_id, "path": metadata.path, "architecture": metadata.architecture,
            "dataset": metadata.dataset, "dataset_version": metadata.dataset_version,
            "test_top1": metrics.get("test_top1"), "test_top5": metrics.get("test_top5"),
            "test_images": metrics.get("test_images")}


# ------------------------------------------------------------------------------------------ evaluation

def evaluate(model_path: str, dataset_version: str | None = None, tta: str = "none", output_dir: str | None = None,
             figures: bool = True, record: bool = True, reuse: bool = False, db_url: str | None = None) -> dict:
    """Evaluate a saved model on a dataset version's test split, write its reports, record the result.

    tta: none, flip, flip_translate, or recipe (the model recipe's own, at least flip). `reuse`: when the
    artifact already has its reports (training evaluates at its end), take those instead of evaluating
    again. `record`: register the model if needed and store the evaluation in the registry.
    Returns the metrics (test_top1, test_top5 as fractions, ...) with model_id, path and reports_dir.
    """
    from tasks.evaluate import evaluate as evaluation
    from tasks.registry import artifact, registry, store

    engine = results_engine(db_url) if record else None  # an unready database fails before the work
    reference = str(model_path)
    model_path = store.resolve(reference, settings())  # an s3:// model trained on another host
    metadata = artifact.read(model_path)
    reports_dir = Path(metadata.path) / artifact.REPORTS_DIR
    reused = reuse and dataset_version is None and output_dir is None and (reports_dir / "metrics.json").exists()
    if reused:
        metrics = dict(metadata.metrics, model_id=metadata.model_id, reports_dir=str(reports_dir))
    else:
        if tta == "recipe":  # the recipe's own, and at least the mirror image
            tta = evaluation.recipe_tta(metadata.as_dict()).replace("none", "flip")
        metrics = evaluation.evaluate_artifact(
            model_path, dataset_version, tta, settings(), Path(output_dir) if output_dir else None,
            evaluation.EvaluateConfig(tta=tta, figures=figures))
        metadata = artifact.read(model_path)
    if engine is not None:
        if reused or registry.get(engine, metadata.model_id) is None:
            # with its evaluation on its own dataset version; an s3:// model keeps its store reference
            registry.register(engine, metadata, reference if reference.startswith(store.S3) else None)
        if not reused:
            registry.record_evaluation(engine, metadata.model_id, metrics)
    return {**model_summary(metadata), **metrics}


# ------------------------------------------------------------------------------------------ registry

def register_model(path: str, db_url: str | None = None) -> dict:
    """Record a saved model folder as a candidate (a second call refreshes its metrics); its registry row."""
    from tasks.registry import artifact, registry

    return registry.register(results_engine(db_url), artifact.read(path))


def list_models(dataset: str | None = None, status: str | None = None, db_url: str | None = None) -> list[dict]:
    """Registered models, newest first (registry rows)."""
    from tasks.registry import registry

    return registry.list_models(results_engine(db_url), dataset, status)


def champions_history(db_url: str | None = None) -> list[dict]:
    """Each dataset's champion (registry row) with `since` (when crowned), `replaced` and `reason`."""
    from tasks.registry import registry

    return registry.champions_history(results_engine(db_url))


def model_history(model_id: str, db_url: str | None = None) -> dict:
    """One model's registry row, evaluations (oldest first) and events (newest first); RegistryError if unknown."""
    from tasks.registry import registry

    engine = results_engine(db_url)
    model = registry.get(engine, model_id)
    if model is None:
        raise registry.RegistryError(f"model {model_id} is not registered")
    return {"model": model, "evaluations": registry.evaluations(engine, model_id),
            "events": registry.events(engine, model_id=model_id)}


def promote_model(model_id: str, reason: str = "manual promotion", onnx: bool = True, db_url: str | None = None):
    """Make a model its dataset's champion whatever its accuracy (exported to ONNX first); the Decision."""
    from tasks.registry import promote

    return promote.promote(results_engine(db_url), model_id, reason, onnx=onnx)


def auto_promote_model(model_id: str, margin: float | None = None, onnx: bool = True, db_url: str | None = None):
    """Make a model champion only if it beats the champion's test top-1 on the same dataset version by
    `margin` (a fraction; None: the registry's default); the Decision."""
    from tasks.registry import promote, registry

    return promote.auto_promote(results_engine(db_url), model_id,
                                registry.DEFAULT_MARGIN if margin is None else margin, onnx=onnx)


def rollback_champion(dataset: str, onnx: bool = True, db_url: str | None = None):
    """Bring back the champion the current one replaced; the Decision."""
    from tasks.registry import promote

    return promote.rollback(results_engine(db_url), dataset, onnx=onnx)


def promote(candidates: list[dict], dataset: str, db_url: str | None = None) -> dict:
    """Offer the `dataset` models among `candidates` (model summaries) for promotion, best first.

    Each goes through `auto_promote_model`: one champion per dataset, even under concurrent promotions.
    Returns the best model's id, the one promoted (or None), the champion after, and every decision.
    """
    candidates = sorted((candidate for candidate in candidates if candidate["dataset"] == dataset),
                        key=lambda candidate: (-candidate["test_top1"], candidate["model_id"]))
    if not candidates:
        raise ValueError(f"no trained {dataset} model to promote")
    decisions = [auto_promote_model(candidate["model_id"], db_url=db_url).as_dict() for candidate in candidates]
    for decision in decisions:
        # the promote task's log: why each model was (not) promoted, as model_events records it
        log.info("%s %s: %s", decision["model_id"], "PROMOTED" if decision["promoted"] else "REFUSED",
                 decision["reason"])
    from tasks.registry import registry

    champion = registry.champion(results_engine(db_url), dataset)
    return {"dataset": dataset, "best": candidates[0]["model_id"],
            "promoted": next((d["model_id"] for d in decisions if d["promoted"]), None),
            "champion": champion and {"model_id": champion["model_id"], "path": champion["artifact_uri"],
                                      "test_top1": champion["test_top1"]},
            "decisions": [{key: d[key] for key in ("model_id", "promoted", "reason")} for d in decisions]}


def export_model(path: str, overwrite: bool = False) -> Path:
    """Write model.onnx beside model.keras (for the lean serving path); its path."""
    from tasks.registry import export

    return export.export_onnx(path, overwrite=overwrite)


def champion_path(dataset: str = "cifar10", db_url: str | None = None) -> str:
    """The reference of the model tagging serves: the registry's champion of `dataset` (its artifact_uri:
    bundled:, home:, s3:// or a path, resolved by each worker with tasks.registry.store.resolve), else
    the bundled model, `bundled:<dataset>`.

    The one champion lookup; it only reads (a database never migrated has no champion: the bundled model).
    ModelNotFound when the install lacks the bundled model it would fall back to.
    """
    import sqlalchemy as sa

    from tasks.registry import registry
    from tasks.tag import predictor

    engine = _plain_engine(db_url)
    try:
        champion = registry.champion(engine, dataset) if sa.inspect(engine).has_table("models") else None
    except sa.exc.OperationalError as error:
        from tasks.store import db

        from tasks import errors

        reason = errors.first_line(getattr(error, "orig", None) or error)
        raise db.DatabaseUnavailable(f"cannot read the champion from {engine.url.render_as_string()}: "
                                     f"{reason}; {errors.DB_URL_HINT}") from None
    if champion:
        return champion["artifact_uri"]
    predictor.bundled_model(dataset)  # ModelNotFound early when the install lacks it
    return f"bundled:{dataset}"


# ------------------------------------------------------------------------------------------ hashtags

def refresh_hashtags(db_url: str | None = None, bearer_token: str | None = None, dataset: str = "cifar10",
                     labels: list[str] | None = None, lang: str | None = "en", woeid: int = 1,
                     max_posts: int = 100, ttl_hours: float = 6.0, force: bool = False,
                     progress=None) -> dict:
    """Refresh the X hashtag cache for `labels` (default: the dataset's); never raises because of X.

    ValueError for settings out of range. Returns counts of labels by outcome and the requests sent.
    `progress(done, total)`, when given, is told how many labels are done (a progress bar).
    """
    from tasks.hashtags import refresh
    from tasks.hashtags.x_api import XConfig

    config = XConfig(lang=lang, woeid=woeid, max_posts=max_posts, ttl_hours=ttl_hours)
    return refresh.refresh(results_engine(db_url), labels, dataset=dataset, bearer_token=bearer_token,
                           config=config, force=force, progress=progress)


def hashtag_report(label: str, platform: str = "generic", db_url: str | None = None) -> dict:
    """What the cache holds for a label: the X query, the fetch log, cached counts (trending marked), and
    the ranked hashtags tagging would give it."""
    import time

    from tasks.hashtags import cache, providers, x_search, x_trends
    from tasks.hashtags.rank import RankConfig
    from tasks.hashtags.x_api import XConfig

    engine, config = results_engine(db_url), XConfig()
    now = cache.utc(time.time())
    trending = {tag.casefold() for tag in cache.read(engine, x_trends.place_label(config.woeid),
                                                      x_trends.SOURCE, now - config.ttl)}
    counts = cache.read(engine, label, x_search.SOURCE, now - config.serve_max_age)
    ranked = providers.engine_for(engine, RankConfig(platform=platform)).hashtags([(label, 1.0)])
    return {"query": x_search.search_query(label, config.lang),
            "fetches": [dict(row._mapping) for row in cache.fetches(engine, label)],
            "counts": [(tag, count, tag.casefold() in trending) for tag, count in counts.items()],
            "ranked": [(tag.hashtag, tag.source) for tag in ranked]}


def known_labels() -> list[str]:
    """The labels the shipped lexicon knows (class names such as cat or maple_tree)."""
    from tasks.hashtags import lexicon

    return list(lexicon.entries())


def block_hashtag(hashtag: str, reason: str | None = None, db_url: str | None = None) -> str:
    """Never suggest `hashtag` again; returns the stored key. ValueError when it is not a hashtag."""
    from tasks.hashtags import cache

    return cache.block(results_engine(db_url), hashtag, reason)


def unblock_hashtag(hashtag: str, db_url: str | None = None) -> tuple[str, bool, bool]:
    """Remove a hashtag from the database blocklist: (key, whether it was there, whether it stays blocked
    because the shipped blocklist has it). ValueError when it is not a hashtag."""
    from tasks.hashtags import cache, lexicon, rank

    removed = cache.unblock(results_engine(db_url), hashtag)
    key = rank.fold(hashtag)
    return key, removed, key in lexicon.shipped_blocklist()


# ------------------------------------------------------------------------------------------ tagging

def serving_model(model_path: str | None = None, dataset: str = "cifar10", db_url: str | None = None,
                  write: bool = True):
    """The model a tagging run serves (a Predictor on ONNX Runtime, so tagging never imports TensorFlow):
    `model_path` (a folder or a reference: bundled:, home:, s3://), else the champion of `dataset`.

    `write`: a run that will write results first records the bundled models as the database's baseline
    champions (ensure_baseline). ModelNotFound when the model has no model.onnx.
    """
    from tasks.tag import predictor

    if write:
        ensure_baseline(results_engine(db_url))
    return predictor.load(model_path or champion_path(dataset, db_url), runtime="onnx")


def tag_source(source: str, model, db_url: str | None = None, platform: str = "generic", run_id: str | None = None,
               shard: tuple[int, int] | None = None, run_key: str | None = None, **options):
    """Tag every new image of `source` (a folder or s3://bucket/prefix) with `model` (serving_model's).

    `options` are TagConfig fields (batch_size, workers, limit, dry_run, min_confidence, progress). Returns the
    RunSummary; RunFailed (with the summary) when the source or the database fails for good; RunActive,
    before writing anything, when a live run already tags the same source (and shard); SourceError when
    the source cannot be opened. A progress bar over a folder counts its images first (a total and ETA).
    """
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig
    from tasks.store import results
    from tasks.tag import sources
    from tasks.tag import tag

    engine = _plain_engine(db_url) if options.get("dry_run") else results_engine(db_url)
    config = tag.TagConfig(shard=shard, **{key: value for key, value in options.items() if value is not None})
    hashtags = providers.engine_for(engine, RankConfig(platform=platform))
    opened = sources.open_source(source, config.workers)
    if config.progress and config.progress_total is None and isinstance(opened, sources.LocalSource):
        config = dataclasses.replace(config, progress_total=sum(1 for _ in opened.list()))  # a folder lists fast
    try:
        return tag.run(source, model, hashtags, engine, config, run_id, source=opened, run_key=run_key)
    except results.AnotherRunActive as active:
        raise RunActive(str(active)) from None
    except tag.RunFailed as failed:
        raise RunFailed(str(failed), failed.summary) from failed


def run_results(run_id: str, images: int = 8, failures: int = 8, db_url: str | None = None,
                hashtags: int = 5) -> dict:
    """A few of a run's tagged images (uri, label, confidence, their first `hashtags` hashtags and how many
    are stored) and failures (uri, reason), by URI."""
    from tasks.store import runs

    engine = results_engine(db_url)
    return {"images": runs.run_images(engine, run_id, images, hashtags),
            "failures": runs.run_failures(engine, run_id, failures)}


def write_run_report(run_ids: list[str], name: str | None = None, page_size: int = 200,
                     db_url: str | None = None, s3: S3Settings | None = None) -> Path:
    """Write the static HTML page of tagging runs (one run, or a nightly run's shards) under
    $HASHTAGGER_HOME/reports/<name or the run id>/ and return its index.html; thumbnails are read from the
    runs' source (through `s3` for a bucket). RunNotFound (tasks.tag.report) when no run exists."""
    from tasks.tag import report

    engine = results_engine(db_url)
    with aws_environment(s3):
        return report.write(engine, list(run_ids), name, settings(db_url), report.ReportConfig(page_size=page_size))


def run_key(logical_date: dt.datetime | None, dag_run_id: str) -> str:
    """The tagging run id stem of one DAG run: from its logical date, or its run id when it has none."""
    if logical_date is not None:
        return "nightly-" + logical_date.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return "nightly-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dag_run_id).strip("-")


def triggering_datasets(context) -> list[str]:
    """The datasets named by the Asset events that started a DAG run (their extra's `dataset`, as
    tasks/assets.py's events carry it), oldest event first, each once; [] for a run started by its cron
    or by hand. `context`: the task's get_current_context() (its `triggering_asset_events`: lists of
    events with `.extra` and `.timestamp` per Asset)."""
    events = sorted((event for events in (context.get("triggering_asset_events") or {}).values()
                     for event in events), key=lambda event: event.timestamp)
    return list(dict.fromkeys(event.extra["dataset"] for event in events if "dataset" in (event.extra or {})))


def shard_run_id(key: str, shard: int, shards: int) -> str:
    return f"{key}-shard{shard}of{shards}"


def shard_run_key(run_id: str, shard: int, shards: int) -> str:
    """The run key of a shard's run id (shard_run_id's inverse); a run id of another form is its own key."""
    return run_id.removesuffix(f"-shard{shard}of{shards}")


def list_new_images(source: str, model_path: str, db_url: str | None = None, s3: S3Settings | None = None) -> dict:
    """Count the images of `source` that the model has not tagged yet; writes nothing."""
    with aws_environment(s3):  # an s3:// model comes from the same store settings as the images
        model = serving_model(model_path, db_url=db_url, write=False)
        counted = tag_source(source, model, db_url, dry_run=True)
    return {"source": counted.source, "model_path": str(model_path), "model_id": model.model_id,
            "seen": counted.seen, "new": counted.tagged}


def tag_shard(source: str, model_path: str, shard: int, shards: int, run_id: str, db_url: str | None = None,
              s3: S3Settings | None = None, platform: str = "generic", limit: int | None = None,
              min_confidence: float | None = None) -> dict:
    """Tag the images of one shard of `source` that the model has not tagged, under `run_id` (a rerun
    repeats the same run), at most `limit` of them; serves ONNX only, so TensorFlow is never imported.
    `min_confidence` overrides the model's abstention threshold. Its RunSummary as a dict."""
    with aws_environment(s3):
        model = serving_model(model_path, db_url=db_url)
        summary = tag_source(source, model, db_url, platform, run_id, shard=(shard, shards), limit=limit,
                             min_confidence=min_confidence, run_key=shard_run_key(run_id, shard, shards))
    return summary.as_dict()


def shard_limit(max_images: int | None, shards: int) -> int | None:
    """Each shard's share of a run's cap on images (None: no cap); shards split a source evenly."""
    return None if max_images is None else -(-int(max_images) // shards)


def summarize_run(key: str, shards: int, db_url: str | None = None) -> dict:
    """Totals over the shard runs of one DAG run, as recorded in tagging_runs."""
    from tasks.store import runs

    rows = runs.runs(results_engine(db_url), [shard_run_id(key, shard, shards) for shard in range(shards)])
    counted = ("seen", "tagged", "skipped", "failed", "abstained", "not_images")
    totals = {name: sum(row[name] for row in rows) for name in counted}
    return dict(totals, run_key=key, shard_runs=len(rows), model_ids=sorted({row["model_id"] for row in rows}),
                status=runs.overall_status([row["status"] for row in rows]))



# ------------------------------------------------------------------------------------------ images in, hashtags out

def hashtag_images(paths: list[str], model_path: str | None = None, dataset: str = "cifar10",
                   platform: str = "generic", label_count: int = 3,
                   min_confidence: float | None = None) -> tuple[str, list[dict]]:
    """Labels and ranked hashtags for each image file, in the given order; writes nothing.

    dataset: cifar10, cifar100, or both (both bundled models on the same tile, their labels merged).
    Each answer has `image` and either `error` (why the file failed) or: `abstained` (True when no model
    was confident; `reason` then says why), `labels` (every model's candidates, [{label, probability,
    dataset}], probabilities calibrated), `coarse_labels` (CIFAR-100 superclasses), `hashtags`
    ([{hashtag, source, label, score}], none when abstained) and `models` ([{model, dataset, score,
    min_confidence, abstained}]). `min_confidence` overrides the models' own thresholds.
    Returns (the model id, or ids joined by '+', answers). ModelNotFound / OSError / ValueError when a
    model cannot be loaded.
    """
    import numpy as np

    from tasks.data import images
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig
    from tasks.tag import decide, predictor

    names = DATASETS if dataset == "both" else (dataset,)
    # serving is ONNX only, as for `hashtagger tag --model`: one rule, one message for a folder without it
    served = [predictor.load(model_path or predictor.bundled_model(name), runtime="onnx") for name in names]
    # several models' labels merged: each hashtag ranks by its label's confidence (no interleaving)
    engine = providers.engine_for(None, RankConfig(platform=platform, by_label=len(served) > 1))
    answers: list[dict] = [{"image": path} for path in paths]
    tiles = []
    for answer in answers:
        try:
            tiles.append((answer, image_tile(answer["image"])))
        except images.ImageError as error:
            answer["error"] = str(error)
    if tiles:
        stacked = np.stack([tile for _, tile in tiles])
        per_model = [decide.decide(model, model.predict(stacked), min_confidence, max(label_count, 1))
                     for model in served]
        for index, (answer, tile) in enumerate(tiles):
            answer.update(_answer([decisions[index] for decisions in per_model], images.is_flat(tile), engine))
    return "+".join(model.model_id for model in served), answers


def _answer(decisions: list, flat: bool, engine) -> dict:
    """One image's answer from each model's Decision (tasks/tag/decide.py)."""
    from tasks.data import images
    from tasks.tag import decide

    if flat:  # a blank picture: nothing to recognise, whatever a model says (the tag stage's rule)
        decisions = [decide.blank(d, images.FLAT_REASON) for d in decisions]
    labels, coarse = decide.merged_labels(decisions)
    abstained = all(d.abstained for d in decisions)
    answer = {"abstained": abstained,
              "labels": [{"label": name, "probability": round(p, 4), "dataset": d.dataset}
                         for d in decisions for name, p in d.labels],
              "coarse_labels": [{"label": name, "probability": round(p, 4)}
                                for d in decisions for name, p in d.coarse[:1]],
              "hashtags": [] if abstained else [
                  {"hashtag": tag.hashtag, "source": tag.source, "label": tag.label, "score": round(tag.score, 4)}
                  for tag in engine.hashtags(labels, coarse)],
              "models": [{"model": d.model_id, "dataset": d.dataset, "score": round(d.score, 4),
                          "min_confidence": round(d.min_confidence, 4), "abstained": d.abstained}
                         for d in decisions]}
    if abstained:
        answer["reason"] = "; ".join(d.reason for d in decisions)
    return answer


def shown_name(name: str) -> str:
    """A file name or URI safe to print: control characters and non-UTF-8 bytes escaped."""
    from tasks.tag import sources

    return sources.shown(name)


def escaped_name(name: str) -> str:
    """A name as the results database stores it: non-UTF-8 bytes and NUL escaped (reversibly)."""
    from tasks.tag import refs

    return refs.escaped(name)


def image_tile(path: str):
    """The 32x32 RGB uint8 tile of one image file, as tagging makes it; ImageError with a reason people read."""
    from tasks.data import images
    from tasks.tag import sources

    try:
        data = sources.read_file(path)
    except sources.UnreadableImage as error:
        raise images.ImageError(str(error)) from None
    try:
        return images.decode(data)
    except images.ImageError:
        raise
    except Exception as error:  # noqa: BLE001  a decoder bug on one file: still answer the others
        raise images.ImageError(f"unreadable image ({type(error).__name__}: {error})") from None
