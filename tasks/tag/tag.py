"""Tag stage: list a source, skip what is done, read and decode, classify in batches, rank hashtags, upsert.

One code path for every source: `run` takes the source's lease, records the run, runs the pipeline of
tasks/tag/stages.py and records what it committed. The pipeline overlaps four stages: the calling thread
lists, looks up and queues the next batches, worker threads read and decode them, 8 images a task
(Pillow and zlib release the GIL; threads beat processes here, see reports/tag_throughput.md), a model
thread runs the model on the current one, and one writer thread turns the previous one's probabilities
into decisions, hashtags and rows and commits them. Memory stays flat: the listing is streamed, file
bytes live only inside a worker, and at most four batches of 32x32 tiles exist at a time.

Each batch is one transaction of upserts, so a run killed at any point loses at most the batches in
flight, and a rerun finishes the work with exactly one result per image. Which images a run works on (its
shard, each once, the oldest first under --limit, those done already) is tasks/tag/listing.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid

import sqlalchemy as sa

from tasks.store import counts as run_counts
from tasks.store import leases, redecide, results
from tasks.tag import sources, stages
from tasks.tag.config import TagConfig  # part of this module's interface: tag.TagConfig
from tasks.tag.listing import in_shard  # part of this module's interface: tests and the shards use tag.in_shard
# part of this module's interface: benchmarks/tag_throughput.py decodes PREPARE_CHUNK images a task too
from tasks.tag.stages import PREPARE_CHUNK, content_hash  # noqa: F401
from tasks.hashtags.engine import HashtagEngine
from tasks.tag.predictor import Predictor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSummary(run_counts.RunCounts):
    """One tagging run as recorded in `tagging_runs` (there `model_id` is the column `model_version`):
    its counts (the RunCounts fields: `seen` = `tagged` + `skipped` (done before) + `failed`; a dry run's
    `tagged` counts the images it would tag) and what follows. Small and JSON-friendly (`as_dict`), for
    XCom and the CLI.
    """

    run_id: str
    source: str  # the source's URI as listed: an absolute folder path or s3://bucket/prefix
    model_id: str
    status: str  # succeeded | succeeded_with_failures (some images failed) | failed | interrupted | dry-run
    error: str | None = None  # first line of why the run failed; None unless status is failed
    seconds: float = 0.0  # wall-clock time of the run
    redecided: int = 0  # earlier results of this model whose decision a new --min-confidence changed

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class RunFailed(RuntimeError):
    """The run stopped early (source gone, database down); `summary` is what it wrote, all complete."""

    def __init__(self, message: str, summary: RunSummary):
        super().__init__(message)
        self.summary = summary


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def run(source_uri: str, predictor: Predictor, hashtags: HashtagEngine, engine: sa.Engine,
        config: TagConfig = TagConfig(), run_id: str | None = None,
        source: sources.Source | None = None, run_key: str | None = None) -> RunSummary:
    """Tag every new image of `source_uri` (the database migrated beforehand); returns the run's record.
    `run_key` names the run people started when this is one shard of it (default: this run).

    Raises RunFailed when the source or the database fails for good; the run is then recorded as
    'failed' with the reason, and every batch it wrote is complete. Raises results.AnotherRunActive,
    before writing anything, when a live run already tags the same source and shard.
    """
    source = source or sources.open_source(source_uri, config.workers)
    shared = stages.Run(source, predictor, hashtags, engine, config, run_id or new_run_id())
    started = time.monotonic()
    failure: BaseException | None = None
    redecided = 0  # earlier results whose decision a new --min-confidence changed
    with contextlib.ExitStack() as stack:
        if not config.dry_run:
            shared = dataclasses.replace(shared, lease_lost=_start(shared, stack, run_key))
        pipeline = stages.Pipeline(shared)
        try:
            if config.min_confidence is not None and not config.dry_run:
                # only this source's (and shard's) results: a threshold changes what the user pointed it at
                redecided = redecide.redecide(engine, predictor, hashtags, config.min_confidence,
                                              source.uri, lambda key: in_shard(key, config.shard))
            pipeline.execute()
            if not config.dry_run and getattr(source, "listed_folders", None):
                results.clear_failures(engine, source.listed_folders)
        except BaseException as caught:  # recorded on the run, then raised again below
            failure = caught
        not_images = getattr(source, "not_images", 0)
        # every shard lists the whole source: the first records its non-image files, so shards add up
        recorded_not_images = not_images if config.shard is None or config.shard[0] == 0 else 0
        summary = _finish(shared, pipeline.committed, failure, recorded_not_images)
    summary = dataclasses.replace(summary, seconds=round(time.monotonic() - started, 3), not_images=not_images,
                                  redecided=redecided)
    if failure is None:
        return summary
    if isinstance(failure, (sources.SourceError, sa.exc.DBAPIError, results.DatabaseUnavailable, leases.LeaseLost)):
        raise RunFailed(f"run {shared.run_id} failed: {summary.error}", summary) from failure
    raise failure


def _start(shared: stages.Run, stack: contextlib.ExitStack, run_key: str | None = None) -> threading.Event:
    """Take the source's lease (renewed by a heartbeat until the run ends) and record the run (the schema
    is migrated beforehand: `hashtagger db migrate` or the DAG's first task); returns the event set if
    the lease is lost."""
    engine, run_id, source_uri, shard = shared.engine, shared.run_id, shared.source.uri, shared.config.shard
    lock_key = source_uri if shard is None else f"{source_uri} shard {shard[0]}/{shard[1]}"
    holder = leases.new_holder()  # this attempt's: a second process running the same run id is refused
    results.retrying(lambda: leases.take(engine, lock_key, run_id, holder=holder), "taking the source's lease")
    lost = stack.enter_context(leases.held(engine, lock_key, run_id, taken=True, holder=holder))
    results.retrying(lambda: results.start_run(engine, run_id, source_uri, shared.predictor.model_id, run_key),
                     "recording the run")
    return lost


def _finish(shared: stages.Run, committed: run_counts.RunCounts, failure: BaseException | None,
            not_images: int = 0) -> RunSummary:
    """The run's summary, recorded as its end unless this is a dry run; counts are what was committed."""
    # Ctrl-C, or SIGTERM (tasks.errors.Terminated, with its words): stopped from outside; nothing went wrong
    interrupted = isinstance(failure, KeyboardInterrupt)
    error = None if failure is None else \
        f"interrupted: {str(failure) or 'by the user (Ctrl-C)'}; a rerun finishes its work" if interrupted else \
        (str(failure).strip().splitlines() or [type(failure).__name__])[0]
    status = "dry-run" if shared.config.dry_run else "succeeded" if failure is None else \
        "interrupted" if interrupted else "failed"
    counts = {key: getattr(committed, key) for key in run_counts.BATCH_FIELDS}
    if not shared.config.dry_run:
        try:
            recorded = results.finish_run(shared.engine, shared.run_id, status, error, not_images)
            # exact: each committed batch added its own
            counts.update({key: recorded[key] for key in run_counts.BATCH_FIELDS})
            status = recorded["status"]  # succeeded_with_failures when images failed
        except (sa.exc.DBAPIError, results.DatabaseUnavailable) as close_error:
            # the database is gone; every batch it holds is complete, and the next run marks this one
            log.error("cannot record the end of run %s: %s", shared.run_id, close_error)
    return RunSummary(run_id=shared.run_id, source=shared.source.uri, model_id=shared.predictor.model_id,
                      status=status, error=error, **counts)
