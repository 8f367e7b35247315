"""Tag stage: list a source, skip what is done, read and decode, classify in batches, rank hashtags, upsert.

One code path for every source. The work is a pipeline of three overlapping steps: worker threads read
and decode the next two batches, 8 images a task (Pillow and zlib release the GIL; threads beat
processes here, see reports/tag_throughput.md), a model thread runs the model on the current one while
the calling thread lists, looks up and queues the next, and one writer thread turns the previous one's
probabilities into decisions, hashtags and rows and commits them. Memory stays flat: the listing is
streamed, file bytes live only inside a worker, and at most four batches of 32x32 tiles exist at a time.

Each batch is one transaction of upserts, so a run killed at any point loses at most the batches in
flight, and a rerun finishes the work with exactly one result per image. Which images a run works on (its
shard, each once, the oldest first under --limit, those done already) is tasks/tag/listing.py.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import logging
import os
import threading
import time
import uuid

import numpy as np
import sqlalchemy as sa

from tasks.data import images as decode
from tasks.store import counts as run_counts
from tasks.store import files, leases, redecide, results
from tasks.tag import decide, listing, sources
from tasks.tag.listing import in_shard  # part of this module's interface: tests and the shards use tag.in_shard
from tasks.hashtags.engine import HashtagEngine
from tasks.tag.predictor import Predictor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TagConfig:
    batch_size: int = 256  # images per model call and per database transaction
    workers: int = max(1, os.cpu_count() or 1)  # threads reading and decoding (Pillow releases the GIL)
    label_count: int = 5  # top labels stored per image
    # abstain below this calibrated top probability (tasks/tag/decide.py); None: the model's own
    # threshold (metrics.ood.threshold); 0: never abstain
    min_confidence: float | None = None
    limit: int | None = None  # at most this many new images (tagged or failed) this run; None: all
    dry_run: bool = False  # list and count only: no decoding, no writes
    progress: bool = False  # a progress bar on stderr
    progress_total: int | None = None  # images the bar counts up to (the CLI counts a folder first); None: unknown
    max_bytes: int = sources.MAX_IMAGE_BYTES  # bytes per file; bigger files fail unread ("too large")
    # (index, count): tag only the images whose URI hashes to this shard, so `count` workers can split
    # one source without coordinating (the nightly DAG maps one task per shard)
    shard: tuple[int, int] | None = None
    # read and hash every image, whatever its metadata says, and store the metadata found (a weekly
    # check: catches bytes changed under the same size, mtime and inode, which a normal run skips)
    verify: bool = False


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


@dataclasses.dataclass
class _Item:
    ref: sources.ImageRef
    state: str  # done (skipped) | new (dry run) | tile | failed
    content_hash: str = ""
    tile: np.ndarray | None = None
    reason: str = ""
    stamp: bool = False  # done, its bytes known by hashing or ETag, not by a stored signature: store it
    moved_from: str | None = None  # done under this other key (renamed, linked): its results are copied


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
    run_id = run_id or new_run_id()
    started = time.monotonic()
    counts = collections.Counter(dict.fromkeys(run_counts.BATCH_FIELDS, 0))  # as committed
    failure: BaseException | None = None
    lease_lost = None  # set by the heartbeat when another run took the source's lease over
    with contextlib.ExitStack() as stack:
        if not config.dry_run:
            lease_lost = _start(engine, run_id, source.uri, predictor.model_id, config, stack, run_key)
        try:
            if config.min_confidence is not None and not config.dry_run:
                # only this source's (and shard's) results: a threshold changes what the user pointed it at
                counts["redecided"] = redecide.redecide(engine, predictor, hashtags, config.min_confidence,
                                                        source.uri, lambda key: in_shard(key, config.shard))
            _pipeline(source, predictor, hashtags, engine, config, run_id, counts, lease_lost)
            if not config.dry_run and getattr(source, "listed_folders", None):
                results.clear_failures(engine, source.listed_folders)
        except BaseException as caught:  # recorded on the run, then raised again below
            failure = caught
        not_images = getattr(source, "not_images", 0)
        # every shard lists the whole source: the first records its non-image files, so shards add up
        recorded_not_images = not_images if config.shard is None or config.shard[0] == 0 else 0
        summary = _finish(engine, run_id, source.uri, predictor.model_id, config, counts, failure,
                          recorded_not_images)
    summary = dataclasses.replace(summary, seconds=round(time.monotonic() - started, 3), not_images=not_images)
    if failure is None:
        return summary
    if isinstance(failure, (sources.SourceError, sa.exc.DBAPIError, results.DatabaseUnavailable, leases.LeaseLost)):
        raise RunFailed(f"run {run_id} failed: {summary.error}", summary) from failure
    raise failure


def _start(engine, run_id: str, source_uri: str, model_id: str, config: TagConfig,
           stack: contextlib.ExitStack, run_key: str | None = None) -> threading.Event:
    """Take the source's lease (renewed by a heartbeat until the run ends) and record the run (the schema
    is migrated beforehand: `hashtagger db migrate` or the DAG's first task); returns the event set if
    the lease is lost."""
    lock_key = source_uri if config.shard is None else f"{source_uri} shard {config.shard[0]}/{config.shard[1]}"
    holder = leases.new_holder()  # this attempt's: a second process running the same run id is refused
    results.retrying(lambda: leases.take(engine, lock_key, run_id, holder=holder), "taking the source's lease")
    lost = stack.enter_context(leases.held(engine, lock_key, run_id, taken=True, holder=holder))
    results.retrying(lambda: results.start_run(engine, run_id, source_uri, model_id, run_key), "recording the run")
    return lost


def _finish(engine, run_id, source_uri, model_id, config, counts, failure, not_images: int = 0) -> RunSummary:
    """The run's summary, recorded as its end unless this is a dry run; counts are what was committed."""
    # Ctrl-C, or SIGTERM (tasks.errors.Terminated, with its words): stopped from outside; nothing went wrong
    interrupted = isinstance(failure, KeyboardInterrupt)
    error = None if failure is None else \
        f"interrupted: {str(failure) or 'by the user (Ctrl-C)'}; a rerun finishes its work" if interrupted else \
        (str(failure).strip().splitlines() or [type(failure).__name__])[0]
    status = "dry-run" if config.dry_run else "succeeded" if failure is None else \
        "interrupted" if interrupted else "failed"
    counts = {key: counts[key] for key in (*run_counts.BATCH_FIELDS, "redecided")}
    if not config.dry_run:
        try:
            recorded = results.finish_run(engine, run_id, status, error, not_images)
            # exact: each committed batch added its own
            counts.update({key: recorded[key] for key in run_counts.BATCH_FIELDS})
            status = recorded["status"]  # succeeded_with_failures when images failed
        except (sa.exc.DBAPIError, results.DatabaseUnavailable) as close_error:
            # the database is gone; every batch it holds is complete, and the next run marks this one
            log.error("cannot record the end of run %s: %s", run_id, close_error)
    return RunSummary(run_id=run_id, source=source_uri, model_id=model_id, status=status, error=error, **counts)


def _pipeline(source, predictor, hashtags, engine, config, run_id, counts, lease_lost=None) -> None:
    """Decode batches n+1 and n+2 while the model runs on batch n and batch n-1 is written.

    `counts` moves when a batch commits (a run that stops says exactly what it wrote); `submitted`,
    which --limit and the progress bar follow, when it is handed to the writer.
    """
    has_schema = not config.dry_run or sa.inspect(engine).has_table("image_results")
    pool = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="decode")
    model = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write")
    bar = _progress_bar(config.progress, config.progress_total)
    ahead: collections.deque = collections.deque()  # (prior rows, futures, images) queued, not yet classified
    writing: concurrent.futures.Future | None = None  # the batch in flight; its result: its counts
    submitted = collections.Counter(tagged=0, failed=0)
    batch_numbers = itertools.count()  # each written batch's key in run_batches: counted once if retried
    try:
        listed = listing.listing(source, config.shard, config.limit, engine, predictor.model_id, has_schema)
        batches = listing.batches(listed, config.batch_size)
        _decode_next(batches, ahead, pool, source, predictor, engine, config, has_schema, submitted)
        while ahead:
            known, futures, _ = ahead.popleft()
            items = _within_limit([item for future in futures for item in future.result()], config, submitted)
            tiles = [item for item in items if item.state == "tile"]
            batch = _counts(items)
            pixels = np.stack([item.tile for item in tiles]) if tiles else None
            inference = model.submit(predictor.predict, pixels) if tiles else None
            # while the model runs: the next batch's listing, lookup and decoding start, and what follows
            # from the model's last answer (decisions, hashtags, rows) is the writer's work
            _decode_next(batches, ahead, pool, source, predictor, engine, config, has_schema,
                         submitted + collections.Counter(tagged=batch["tagged"], failed=batch["failed"]))
            probabilities = inference.result() if inference else None
            _committed(writing, counts)  # one write in flight at most; its error stops the run here
            writing = None
            if lease_lost is not None and lease_lost.is_set():  # another run took the source over: leave it
                raise leases.LeaseLost(f"run {run_id} lost the source's lease (its heartbeat was not recorded "
                                       f"for {leases.LEASE_S:.0f} s) and another run took it over")
            if config.dry_run:
                counts.update(batch)
            else:
                writing = writer.submit(_write, items, tiles, pixels, probabilities, predictor, hashtags, config,
                                        known, engine, run_id, batch, next(batch_numbers))
            submitted.update(batch)
            bar.update(len(items))
            bar.set_postfix(tagged=submitted["tagged"], failed=submitted["failed"], skipped=submitted["skipped"],
                            refresh=False)
            if config.limit is not None and submitted["tagged"] + submitted["failed"] >= config.limit:
                break
        _committed(writing, counts)
        writing = None
    finally:
        if writing is not None:  # stopping on an error: the batch in flight may still commit; count it if so
            with contextlib.suppress(Exception):
                _committed(writing, counts)
        for _, futures, _ in ahead:
            for future in futures:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        model.shutdown(wait=True)
        writer.shutdown(wait=True)
        bar.close()


def _decode_next(batches, ahead: collections.deque, pool, source, predictor, engine, config: TagConfig,
                 has_schema: bool, submitted: collections.Counter) -> None:
    """Top up `ahead` to two batches: list each, look up what the model tagged already, queue its
    decoding (PREPARE_CHUNK images a task). Under --limit, no more than the room left is queued (images
    found done are not counted against it, so the room is looked at again after each batch)."""
    while len(ahead) < 2:
        if config.limit is not None:
            queued = sum(size for _, _, size in ahead)
            if submitted["tagged"] + submitted["failed"] + queued >= config.limit:
                return
        refs = next(batches, None)
        if refs is None:
            return
        known = listing.prior(engine, predictor.model_id, refs, config.verify) if has_schema else None
        known = known or results.Prior(set(), set())
        ahead.append((known, [pool.submit(_prepare_chunk, source, refs[start:start + PREPARE_CHUNK], known, config)
                              for start in range(0, len(refs), PREPARE_CHUNK)], len(refs)))


def _counts(items: list[_Item]) -> collections.Counter:
    """One batch's counts for --limit and the progress bar (abstentions are counted when written)."""
    states = collections.Counter(item.state for item in items)
    return collections.Counter(seen=len(items), skipped=states["done"], failed=states["failed"],
                               tagged=states["tile"] + states["new"])


def _write(items: list[_Item], tiles: list[_Item], pixels, probabilities, predictor, hashtags, config: TagConfig,
           known: results.Prior | None, engine, run_id: str, batch: collections.Counter,
           batch_no: int | None = None) -> collections.Counter:
    """In the writer thread: decide, rank hashtags and write one batch in one transaction; returns
    its counts (`batch`, from _counts) for the run, abstentions added."""
    # one flat colour (a blank picture): nothing to recognise, so no confident label whatever the model
    # says ("cat 40%" would be a confident lie)
    flat = decode.flat_tiles(pixels) if tiles else None
    tagged = _classify(tiles, probabilities, flat, predictor, hashtags, config, known.known if known else set())
    failed = [results.Failed(item.ref.uri, item.content_hash, item.reason, item.ref.name)
              for item in items if item.state == "failed"]
    checked = [files.Checked(item.ref.uri, item.content_hash, item.ref, item.moved_from) for item in items
               if item.state in ("tile", "failed") or item.stamp]
    results.write_batch(engine, run_id, predictor.model_id, tagged, failed, batch["skipped"], batch_no=batch_no,
                        checked=checked)
    return collections.Counter({**batch, "abstained": sum(item.abstained for item in tagged)})


def _committed(writing: concurrent.futures.Future | None, counts) -> None:
    """Wait for the batch in flight; its counts join the run's once its transaction committed."""
    if writing is not None:
        counts.update(writing.result())


# images a decoding thread takes at a time: a task, a future and a wake-up per image cost more than a CIFAR
# tile's decoding (2 threads decoded 3,400-3,800 tiles/s a task per image, 4,800-5,400 with 8 a task),
# while 8 photos of 12 MP are still a small share of a batch (32 tasks) to balance between the threads
PREPARE_CHUNK = 8


def _prepare_chunk(source: sources.Source, refs: list[sources.ImageRef], known: results.Prior,
                   config: TagConfig) -> list[_Item]:
    return [_prepare(source, ref, known, config) for ref in refs]


def _prepare(source: sources.Source, ref: sources.ImageRef, known: results.Prior, config: TagConfig) -> _Item:
    """In a worker thread: skip when done, else read, hash and decode one image; never raises for a bad
    image (only SourceError, which stops the run)."""
    if ref.error:  # listed but unreadable: a symbolic link loop, a link to nothing
        return _Item(ref, "failed", "", reason=ref.error)
    if ref.uri in known.unchanged:  # its metadata is what it was when these bytes were tagged: not read
        return _Item(ref, "done", "")
    if ref.uri in known.moved:  # the same file renamed or linked, tagged under its old name: copied, not read
        moved_from, moved_hash = known.moved[ref.uri]
        return _Item(ref, "done", moved_hash, stamp=True, moved_from=moved_from)
    done, listed = known.done, ref.listed_hash
    if listed and (ref.uri, listed) in done:
        return _Item(ref, "done", listed, stamp=True)  # known from the listing: not even downloaded
    if listed and config.dry_run:
        return _Item(ref, "new", listed)
    if ref.size is not None and ref.size > config.max_bytes:
        return _Item(ref, "failed", listed or "", reason=sources.too_big(ref.size, config.max_bytes))
    try:
        data = source.read(ref, config.max_bytes)
    except sources.UnreadableImage as unreadable:
        # no content hash: a read that failed (403, deleted, changed) is tried again by the next run;
        # only a decode failure of the same bytes is final
        return _Item(ref, "failed", "", reason=str(unreadable))
    identity = listed or content_hash(data)
    if (ref.uri, identity) in done:  # read for nothing (touched, or --verify): its metadata is stored again
        return _Item(ref, "done", identity, stamp=True)
    if config.dry_run:
        return _Item(ref, "new", identity)
    notes: list[str] = []
    try:
        tile = decode.decode(data, notes)
        for note in notes:  # broken metadata: the pixels were used; say what was skipped
            log.warning("%s: %s", sources.shown(ref.text), note)
        return _Item(ref, "tile", identity, tile=tile)
    except decode.ImageError as bad:
        return _Item(ref, "failed", identity, reason=str(bad))
    except Exception as unexpected:  # noqa: BLE001  a decoder bug on one hostile file must not stop the night
        log.exception("unexpected error decoding %s", sources.shown(ref.text))
        return _Item(ref, "failed", identity, reason=f"unreadable image ({type(unexpected).__name__}: "
                                                     f"{unexpected})")


def _within_limit(items: list[_Item], config: TagConfig, counts) -> list[_Item]:
    """The items this run still has room for under --limit (done ones always fit: they cost nothing)."""
    if config.limit is None:
        return items
    room = config.limit - counts["tagged"] - counts["failed"]
    kept = []
    for item in items:
        if item.state != "done":
            if room <= 0:
                break
            room -= 1
        kept.append(item)
    return kept


def _classify(items: list[_Item], probabilities: np.ndarray | None, flat: np.ndarray | None, predictor: Predictor,
              hashtags: HashtagEngine, config: TagConfig, known_uris: set[str]) -> list[results.Tagged]:
    if not items:
        return []
    decisions = [decide.blank(answer, decode.FLAT_REASON) if is_blank else answer for answer, is_blank
                 in zip(decide.decide(predictor, probabilities, config.min_confidence, config.label_count),
                        flat.tolist())]
    return [results.Tagged(item.ref.uri, item.content_hash, answer.labels,
                           [] if answer.abstained else hashtags.hashtags(answer.labels, answer.coarse),
                           replaces=item.ref.uri in known_uris, uri_text=item.ref.name,
                           abstained=answer.abstained)
            for item, answer in zip(items, decisions)]


def _progress_bar(enabled: bool, total: int | None = None):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="tagging", disable=not enabled, leave=False, dynamic_ncols=True)
