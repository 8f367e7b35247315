"""Tagging: the model a run serves, a run over a folder or bucket (or one shard of it), its results and
its HTML page, and the run ids of the nightly DAG.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from pathlib import Path

from tasks.pipeline.common import (RunActive, RunFailed, S3Settings, ensure_baseline, plain_engine,
                                   results_engine, settings)
from tasks.pipeline.models import champion_path
from tasks.store.counts import RunCounts

log = logging.getLogger(__name__)


def serving_model(model_path: str | None = None, dataset: str = "cifar10", db_url: str | None = None,
                  write: bool = True, s3: S3Settings | None = None):
    """The model a tagging run serves (a Predictor on ONNX Runtime, so tagging never imports TensorFlow):
    `model_path` (a folder or a reference: bundled:, home:, s3://), else the champion of `dataset`; an
    s3:// artifact is fetched through `s3` (None: boto3's standard AWS environment).

    `write`: a run that will write results first records the bundled models as the database's baseline
    champions (ensure_baseline). ModelNotFound when the model has no model.onnx.
    """
    from tasks.tag import predictor

    if write:
        ensure_baseline(results_engine(db_url))
    return predictor.load(model_path or champion_path(dataset, db_url), runtime="onnx", s3_settings=s3)


def tag_source(source: str, model, db_url: str | None = None, platform: str = "generic", run_id: str | None = None,
               shard: tuple[int, int] | None = None, run_key: str | None = None, s3: S3Settings | None = None,
               manifest: str | None = None, **options):
    """Tag every new image of `source` (a folder or s3://bucket/prefix, reached through `s3`; None: boto3's
    standard AWS environment) with `model` (serving_model's).

    `manifest`: the run key of a night's manifest (plan_night's) whose part for `shard` is tagged instead
    of listing the source. `options` are TagConfig fields (batch_size, workers, limit, dry_run, verify,
    min_confidence, progress). Returns the
    RunSummary; RunFailed (with the summary) when the source or the database fails for good; RunActive,
    before writing anything, when a live run already tags the same source (and shard); SourceError when
    the source cannot be opened. A progress bar over a folder counts its images first (a total and ETA).
    """
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig
    from tasks.store import results
    from tasks.tag import sources
    from tasks.tag import tag

    engine = plain_engine(db_url) if options.get("dry_run") else results_engine(db_url)
    config = tag.TagConfig(shard=shard, **{key: value for key, value in options.items() if value is not None})
    hashtags = providers.engine_for(engine, RankConfig(platform=platform))
    opened = sources.open_source(source, config.workers, s3)
    if manifest is not None:
        from tasks.tag import plan

        opened = plan.ManifestSource(opened, engine, manifest, *(shard or (0, 1)))
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

    return report.write(results_engine(db_url), list(run_ids), name, settings(db_url),
                        report.ReportConfig(page_size=page_size), s3)


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


def plan_night(source: str, model_path: str, key: str, shards: int, db_url: str | None = None,
               s3: S3Settings | None = None, verify: bool = False, min_shard_images: int | None = None) -> dict:
    """List `source` once and write the night's manifest of work (tasks/tag/plan.py) under the run key
    `key`, split over `shards` at most (a small night over fewer: one per `min_shard_images` images of work,
    default plan.MIN_SHARD_WORK); reads the model's id from its metadata (no model is loaded). Returns
    {source, model_path, model_id, seen, new, done, not_images, shards}: small, for XCom and the log;
    `shards` is the count the night runs. SourceError when the source cannot be listed; ArtifactError
    (tasks.registry) when `model_path` is not a model; ValueError for shards or min_shard_images below 1."""
    from tasks.registry import artifact, artifact_store
    from tasks.tag import plan, sources

    model_id = artifact.read(artifact_store.resolve(model_path, s3_settings=s3)).model_id
    engine = results_engine(db_url)
    opened = sources.open_source(source, s3_settings=s3)
    least = plan.MIN_SHARD_WORK if min_shard_images is None else min_shard_images
    night = plan.plan(opened, engine, model_id, key, shards, verify, least)
    return {"source": night.source, "model_path": str(model_path), "model_id": model_id, "seen": night.listed,
            "new": night.work, "done": night.done, "not_images": night.other_files, "shards": night.shards}


def tag_shard(source: str, model_path: str, shard: int, shards: int, run_id: str, db_url: str | None = None,
              s3: S3Settings | None = None, platform: str = "generic", limit: int | None = None,
              min_confidence: float | None = None, manifest: str | None = None, verify: bool = False) -> dict:
    """Tag the images of one shard of `source` that the model has not tagged, under `run_id` (a rerun
    repeats the same run), at most `limit` of them; serves ONNX only, so TensorFlow is never imported.
    `manifest`: the night's run key whose manifest (plan_night) lists the shard's work, None: list the
    source. `verify`: read every image (plan_night's `verify`). `min_confidence` overrides the model's
    abstention threshold. Its RunSummary as a dict."""
    model = serving_model(model_path, db_url=db_url, s3=s3)
    summary = tag_source(source, model, db_url, platform, run_id, shard=(shard, shards), limit=limit,
                         min_confidence=min_confidence, run_key=shard_run_key(run_id, shard, shards), s3=s3,
                         manifest=manifest, verify=verify or None)
    return summary.as_dict()


def shard_limit(max_images: int | None, shards: int) -> int | None:
    """Each shard's share of a run's cap on images (None: no cap); shards split a source evenly."""
    return None if max_images is None else -(-int(max_images) // shards)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NightSummary(RunCounts):
    """One nightly run's totals (summarize_run): the RunCounts of its shard runs summed, with the images its
    listing found done added to `seen` and `skipped`; `as_dict` is its JSON (XCom, the Asset event's extra)."""

    run_key: str
    status: str  # tasks/store/runs.py overall_status of the shard runs
    shard_runs: int = 0
    run_ids: tuple[str, ...] = ()  # the shard runs counted (the run page shows them)
    model_ids: tuple[str, ...] = ()  # the models they tagged with (one, unless a night was cleared across a change)

    def as_dict(self) -> dict:
        """JSON types only: the id tuples as lists (Airflow's XCom would store a tuple as a typed object)."""
        fields = dataclasses.asdict(self)
        fields["run_ids"], fields["model_ids"] = list(self.run_ids), list(self.model_ids)
        return fields


def summarize_run(key: str, shards: int, db_url: str | None = None) -> NightSummary:
    """Totals over the shard runs of one DAG run, as recorded in tagging_runs. With a manifest (plan_night),
    the shard runs it planned (a small night runs fewer than asked; a cleared one plans again, and its
    earlier attempt's runs are history: the manifest counts what they tagged as done) and none when it
    found no work; without, the `shards` shard runs of `key`."""
    from tasks.store import manifest, runs

    engine = results_engine(db_url)
    night = manifest.header(engine, key)
    ready = night is not None and night.status == "ready"
    planned = (night.shards if night.work else 0) if ready else shards
    rows = runs.runs(engine, [shard_run_id(key, shard, planned) for shard in range(planned)])
    counts = RunCounts.total(rows)
    if ready:  # images the listing found done: no shard saw them; the files not images: the listing's count
        counts = dataclasses.replace(counts, seen=counts.seen + night.done, skipped=counts.skipped + night.done,
                                     not_images=night.other_files)
    return NightSummary(**counts.counts(), run_key=key, status=runs.overall_status([row["status"] for row in rows]),
                        shard_runs=len(rows), run_ids=tuple(row["run_id"] for row in rows),
                        model_ids=tuple(sorted({row["model_id"] for row in rows})))
