"""Tagging's core: one run's pipeline of four stages, each on its own threads, batch by batch.

1. queue (the calling thread, `Ahead`): list the next batch, look up what the model has tagged of it,
   and hand its decoding to the decoding threads, two batches ahead.
2. decode (the decoding threads, `decode_chunk`): skip what is done, else read, hash and decode,
   at most PREPARE_CHUNK images a task (Pillow and zlib release the GIL: threads beat processes here, see
   reports/tag_throughput.md).
3. classify (the model thread, `Pipeline.classify`): the model on one batch's tiles.
4. write (the writer thread, `write`): decisions, hashtags and rows, one transaction a batch.

So batches n+1 and n+2 decode while the model runs on batch n and batch n-1 is written. What moves
between the stages is typed: `Pending` (a batch queued for decoding), `Item` (one image, decoded or
not), `Batch` (a decoded batch within --limit). --limit lives in `Budget` alone; the run's counts as
committed in `Pipeline.committed`, the progress bar's as handed to the writer in `Progress`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import threading
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

from tasks.data import images
from tasks.store import files, leases, results
from tasks.store.counts import RunCounts
from tasks.tag import decide, listing, sources
from tasks.tag.config import TagConfig

if TYPE_CHECKING:
    from tasks.hashtags.engine import HashtagEngine
    from tasks.tag.predictor import Predictor

log = logging.getLogger("tasks.tag.tag")  # the tag stage's logger, as before the split: its warnings name it

# images a decoding thread takes at a time: a task, a future and a wake-up per image cost more than a CIFAR
# tile's decoding (2 threads decoded 3,400-3,800 tiles/s a task per image, 4,800-5,400 with 8 a task),
# while 8 photos of 12 MP are still a small share of a batch (32 tasks) to balance between the threads
PREPARE_CHUNK = 8
AHEAD = 2  # batches listed and decoding while the model runs on one


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Run:
    """What every stage of one run reads."""

    source: sources.Source
    predictor: Predictor
    hashtags: HashtagEngine
    engine: sa.Engine
    config: TagConfig
    run_id: str
    lease_lost: threading.Event | None = None  # set by the heartbeat when another run took the source over


@dataclasses.dataclass
class Item:
    """One image as the decoding threads leave it."""

    ref: sources.ImageRef
    state: str  # done (skipped) | new (dry run) | tile | failed
    content_hash: str = ""
    tile: np.ndarray | None = None
    reason: str = ""
    stamp: bool = False  # done, its bytes known by hashing or ETag, not by a stored signature: store it
    moved_from: str | None = None  # done under this other key (renamed, linked): its results are copied

    @property
    def costs(self) -> bool:
        """Whether it counts against --limit: tagged or failed, not done before."""
        return self.state != "done"


@dataclasses.dataclass(frozen=True)
class Pending:
    """A batch listed, looked up and queued for decoding, not yet classified."""

    prior: results.Prior  # what the model has tagged of it already
    chunks: list[concurrent.futures.Future]  # each: at most PREPARE_CHUNK decoded Items (chunked), in order
    size: int  # images listed (each may cost room under --limit until decoded)

    def items(self) -> list[Item]:
        """Its items once decoded (waits; a SourceError in a decoding thread is raised here)."""
        return [item for chunk in self.chunks for item in chunk.result()]

    def cancel(self) -> None:
        for chunk in self.chunks:
            chunk.cancel()


@dataclasses.dataclass(frozen=True)
class Batch:
    """A decoded batch within --limit: the model's input and the writer's work, one transaction."""

    items: list[Item]
    prior: results.Prior
    number: int  # its key in run_batches: a retried write is counted once
    tiles: list[Item]  # the items decoded to tiles, in order: the model's input
    pixels: np.ndarray | None  # their tiles stacked; None when there are none
    counts: RunCounts  # by outcome; its abstentions are known once written

    @classmethod
    def of(cls, items: list[Item], prior: results.Prior, number: int) -> Batch:
        tiles = [item for item in items if item.state == "tile"]
        states = collections.Counter(item.state for item in items)
        counts = RunCounts(seen=len(items), skipped=states["done"], failed=states["failed"],
                           tagged=states["tile"] + states["new"])
        return cls(items, prior, number, tiles, np.stack([item.tile for item in tiles]) if tiles else None, counts)


class Budget:
    """--limit, in one place: at most `limit` new images (tagged or failed) a run; None: no limit. Images
    found done cost nothing, so a queued batch holds room only until it is decoded and taken."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.spent = 0  # new images taken into batches (handed on to the model and the writer)

    def may_queue(self, queued: int) -> bool:
        """Whether another batch may be listed while `queued` listed images wait to be decoded."""
        return self.limit is None or self.spent + queued < self.limit

    def take(self, items: list[Item]) -> list[Item]:
        """The items of a decoded batch the room left holds (done ones always fit), spent."""
        kept = items
        if self.limit is not None:
            room, kept = self.limit - self.spent, []
            for item in items:
                if item.costs:
                    if room <= 0:
                        break
                    room -= 1
                kept.append(item)
        self.spent += sum(item.costs for item in kept)
        return kept

    def reached(self) -> bool:
        return self.limit is not None and self.spent >= self.limit


class Ahead:
    """Stage 1, on the calling thread: list, look up and queue the decoding of the next batches."""

    def __init__(self, run: Run, decoders: concurrent.futures.Executor, budget: Budget):
        config = run.config
        self.run, self.decoders, self.budget = run, decoders, budget
        self.has_schema = not config.dry_run or sa.inspect(run.engine).has_table("image_results")
        listed = listing.listing(run.source, config.shard, config.limit, run.engine, run.predictor.model_id,
                                 self.has_schema)
        self.batches = listing.batches(listed, config.batch_size)
        self.queue: collections.deque[Pending] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self.queue)

    def fill(self) -> None:
        """Top the queue up to AHEAD batches, within the room the budget leaves (looked at again after
        each batch: the images found done do not use it)."""
        while len(self.queue) < AHEAD and self.budget.may_queue(sum(pending.size for pending in self.queue)):
            refs = next(self.batches, None)
            if refs is None:
                return
            self.queue.append(self._queued(refs))

    def _queued(self, refs: list[sources.ImageRef]) -> Pending:
        config = self.run.config
        prior = listing.prior(self.run.engine, self.run.predictor.model_id, refs, config.verify) \
            if self.has_schema else None
        prior = prior or results.Prior(set(), set())
        return Pending(prior, [self.decoders.submit(decode_chunk, self.run, chunk, prior)
                               for chunk in chunked(refs, config.workers)], len(refs))

    def next(self) -> Pending:
        return self.queue.popleft()

    def cancel(self) -> None:
        for pending in self.queue:
            pending.cancel()


class Progress:
    """The progress bar: images handed to the writer, by outcome (the run's counts move on commit)."""

    def __init__(self, config: TagConfig):
        from tqdm import tqdm

        self.bar = tqdm(total=config.progress_total, unit="img", desc="tagging", disable=not config.progress,
                        leave=False, dynamic_ncols=True)
        self.shown = RunCounts()

    def add(self, batch: Batch) -> None:
        self.shown += batch.counts
        self.bar.update(batch.counts.seen)
        self.bar.set_postfix(tagged=self.shown.tagged, failed=self.shown.failed, skipped=self.shown.skipped,
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


class Pipeline:
    """One run's stages and their threads. `committed` moves when a batch commits (a dry run: when it is
    counted), so a run that stops says exactly what it wrote."""

    def __init__(self, run: Run):
        self.run = run
        self.committed = RunCounts()
        self.budget = Budget(run.config.limit)
        self.decoders = concurrent.futures.ThreadPoolExecutor(run.config.workers, thread_name_prefix="decode")
        self.model = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write")
        self.writing: concurrent.futures.Future | None = None  # the batch in flight; its result: its counts
        self.numbers = itertools.count()  # each batch's key in run_batches

    def execute(self) -> None:
        """Decode batches n+1 and n+2 while the model runs on batch n and batch n-1 is written."""
        ahead = Ahead(self.run, self.decoders, self.budget)
        progress = Progress(self.run.config)
        try:
            ahead.fill()
            while ahead:
                pending = ahead.next()
                batch = Batch.of(self.budget.take(pending.items()), pending.prior, next(self.numbers))
                inference = self.classify(batch)
                # while the model runs: the next batch's listing, lookup and decoding start, and what
                # follows from the model's last answer (decisions, hashtags, rows) is the writer's work
                ahead.fill()
                probabilities = inference.result() if inference else None
                self.wait_for_write()  # one write in flight at most; its error stops the run here
                self.check_lease()
                self.write(batch, probabilities)
                progress.add(batch)
                if self.budget.reached():
                    break
            self.wait_for_write()
        finally:
            self.stop(ahead)
            progress.close()

    def classify(self, batch: Batch) -> concurrent.futures.Future | None:
        """Stage 3: the model on the batch's tiles, on the model thread."""
        return self.model.submit(self.run.predictor.predict, batch.pixels) if batch.tiles else None

    def write(self, batch: Batch, probabilities: np.ndarray | None) -> None:
        """Stage 4: hand the batch to the writer thread (a dry run counts it and writes nothing)."""
        if self.run.config.dry_run:
            self.committed += batch.counts
        else:
            self.writing = self.writer.submit(write, self.run, batch, probabilities)

    def wait_for_write(self) -> None:
        """Wait for the batch in flight; its counts join the run's once its transaction committed."""
        if self.writing is not None:
            self.committed += self.writing.result()
            self.writing = None

    def check_lease(self) -> None:
        lost = self.run.lease_lost
        if lost is not None and lost.is_set():  # another run took the source over: leave it
            raise leases.LeaseLost(f"run {self.run.run_id} lost the source's lease (its heartbeat was not recorded "
                                   f"for {leases.LEASE_S:.0f} s) and another run took it over")

    def stop(self, ahead: Ahead) -> None:
        if self.writing is not None:  # stopping on an error: the batch in flight may still commit; count it if so
            with contextlib.suppress(Exception):
                self.wait_for_write()
        ahead.cancel()
        self.decoders.shutdown(wait=True, cancel_futures=True)
        self.model.shutdown(wait=True)
        self.writer.shutdown(wait=True)


def chunked(refs: list[sources.ImageRef], workers: int) -> list[list[sources.ImageRef]]:
    """A batch cut into the decoding threads' tasks: at most PREPARE_CHUNK images each, in listing order, as
    many tasks as a multiple of `workers` allows and sizes within one of each other. So no thread waits at a
    batch's end for another's last task: 20 photos on 2 threads are 4 tasks of 5 (10 a thread), not 8, 8
    and 4 (12 on one: 20 photos of 3 MP decoded in 87 ms instead of about 65, the night's whole work when
    1% is new)."""
    if not refs:
        return []
    tasks = -(-len(refs) // PREPARE_CHUNK)
    tasks = min(len(refs), -(-tasks // workers) * workers)
    # numpy's even split (as the predictor cuts a batch into parts), on positions: refs stay a list
    return [refs[part[0]:part[-1] + 1] for part in np.array_split(np.arange(len(refs)), tasks)]


def decode_chunk(run: Run, refs: list[sources.ImageRef], prior: results.Prior) -> list[Item]:
    """Stage 2, on a decoding thread: a few images of a batch."""
    return [_decode(run, ref, prior) for ref in refs]


def _decode(run: Run, ref: sources.ImageRef, prior: results.Prior) -> Item:
    """Skip when done, else read, hash and decode one image; never raises for a bad image (only
    SourceError, which stops the run)."""
    config = run.config
    if ref.error:  # listed but unreadable: a symbolic link loop, a link to nothing
        return Item(ref, "failed", "", reason=ref.error)
    if ref.uri in prior.unchanged:  # its metadata is what it was when these bytes were tagged: not read
        return Item(ref, "done", "")
    if ref.uri in prior.moved:  # the same file renamed or linked, tagged under its old name: copied, not read
        moved_from, moved_hash = prior.moved[ref.uri]
        return Item(ref, "done", moved_hash, stamp=True, moved_from=moved_from)
    done, listed = prior.done, ref.listed_hash
    if listed and (ref.uri, listed) in done:
        return Item(ref, "done", listed, stamp=True)  # known from the listing: not even downloaded
    if listed and config.dry_run:
        return Item(ref, "new", listed)
    if ref.size is not None and ref.size > config.max_bytes:
        return Item(ref, "failed", listed or "", reason=sources.too_big(ref.size, config.max_bytes))
    try:
        data = run.source.read(ref, config.max_bytes)
    except sources.UnreadableImage as unreadable:
        # no content hash: a read that failed (403, deleted, changed) is tried again by the next run;
        # only a decode failure of the same bytes is final
        return Item(ref, "failed", "", reason=str(unreadable))
    identity = listed or content_hash(data)
    if (ref.uri, identity) in done:  # read for nothing (touched, or --verify): its metadata is stored again
        return Item(ref, "done", identity, stamp=True)
    if config.dry_run:
        return Item(ref, "new", identity)
    return _decoded(ref, identity, data)


def _decoded(ref: sources.ImageRef, identity: str, data: bytes) -> Item:
    notes: list[str] = []
    try:
        tile = images.decode(data, notes)
        for note in notes:  # broken metadata: the pixels were used; say what was skipped
            log.warning("%s: %s", sources.shown(ref.text), note)
        return Item(ref, "tile", identity, tile=tile)
    except images.ImageError as bad:
        return Item(ref, "failed", identity, reason=str(bad))
    except Exception as unexpected:  # noqa: BLE001  a decoder bug on one hostile file must not stop the night
        log.exception("unexpected error decoding %s", sources.shown(ref.text))
        return Item(ref, "failed", identity, reason=f"unreadable image ({type(unexpected).__name__}: "
                                                    f"{unexpected})")


def write(run: Run, batch: Batch, probabilities: np.ndarray | None) -> RunCounts:
    """Stage 4, on the writer thread: decide, rank hashtags and write one batch in one transaction;
    returns its counts for the run, abstentions added."""
    tagged = _tagged(run, batch, probabilities)
    failed = [results.Failed(item.ref.uri, item.content_hash, item.reason, item.ref.name)
              for item in batch.items if item.state == "failed"]
    checked = [files.Checked(item.ref.uri, item.content_hash, item.ref, item.moved_from) for item in batch.items
               if item.state in ("tile", "failed") or item.stamp]
    results.write_batch(run.engine, run.run_id, run.predictor.model_id, tagged, failed, batch.counts.skipped,
                        batch_no=batch.number, checked=checked)
    return dataclasses.replace(batch.counts, abstained=sum(item.abstained for item in tagged))


def _tagged(run: Run, batch: Batch, probabilities: np.ndarray | None) -> list[results.Tagged]:
    """The batch's tiles as results: the model's decisions (tasks/tag/decide.py) and their hashtags."""
    if not batch.tiles:
        return []
    config, known = run.config, batch.prior.known
    # one flat colour (a blank picture): nothing to recognise, so no confident label whatever the model
    # says ("cat 40%" would be a confident lie)
    flat = images.flat_tiles(batch.pixels)
    decisions = [decide.blank(answer, images.FLAT_REASON) if is_blank else answer for answer, is_blank
                 in zip(decide.decide(run.predictor, probabilities, config.min_confidence, config.label_count),
                        flat.tolist())]
    return [results.Tagged(item.ref.uri, item.content_hash, answer.labels,
                           [] if answer.abstained else run.hashtags.hashtags(answer.labels, answer.coarse),
                           replaces=item.ref.uri in known, uri_text=item.ref.name, abstained=answer.abstained)
            for item, answer in zip(batch.tiles, decisions)]
