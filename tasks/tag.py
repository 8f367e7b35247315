"""Tag stage: list a source, skip what is done, decode, classify in batches, rank hashtags, upsert.

Memory stays flat: the listing is streamed and only one batch of images is held at a time. Each batch
is written in one transaction, so a run killed at any point loses at most the batch in flight, and a
rerun finishes the work with exactly one result per image.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import itertools
import logging
import os
import time
import uuid
from typing import Iterable, Iterator

import numpy as np
import sqlalchemy as sa

from tasks import db, decode, results, sources
from tasks.hashtags.engine import HashtagEngine
from tasks.predictor import Predictor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TagConfig:
    batch_size: int = 256  # images per model call and per database transaction
    workers: int = max(1, os.cpu_count() or 1)  # threads reading and decoding (Pillow releases the GIL)
    label_count: int = 5  # top labels stored per image
    limit: int | None = None  # at most this many new images this run; None: all
    dry_run: bool = False  # list and count only: no decoding, no writes
    retag: bool = False  # re-tag images another model already tagged (after a new champion)
    progress: bool = False  # a progress bar on stderr
    # (index, count): tag only the images whose URI hashes to this shard, so `count` workers can split
    # one source without coordinating (the nightly DAG maps one task per shard)
    shard: tuple[int, int] | None = None


@dataclasses.dataclass
class _Item:
    ref: sources.ImageRef
    data: bytes | None = None
    content_hash: str = ""
    error: str | None = None


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def content_hash(ref: sources.ImageRef, data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def in_shard(uri: str, shard: tuple[int, int] | None) -> bool:
    """Stable across processes and machines (unlike hash()): sha1 of the URI modulo the shard count."""
    if shard is None:
        return True
    index, count = shard
    return int.from_bytes(hashlib.sha1(uri.encode()).digest()[:8], "big") % count == index


def _batches(refs: Iterable[sources.ImageRef], size: int) -> Iterator[list[sources.ImageRef]]:
    iterator = iter(refs)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _read(source: sources.Source, ref: sources.ImageRef) -> _Item:
    try:
        data = source.read(ref)
    except sources.SourceError:
        raise
    except OSError as error:
        return _Item(ref, error=f"cannot read: {error.strerror or error}")
    return _Item(ref, data, content_hash(ref, data))


def run(source_uri: str, predictor: Predictor, hashtags: HashtagEngine, engine: sa.Engine,
        config: TagConfig = TagConfig(), run_id: str | None = None) -> dict:
    """Tag every new image of `source_uri`; returns the run's summary row plus timing."""
    source = sources.open_source(source_uri)
    run_id = run_id or new_run_id()
    model_version = predictor.model_version
    started = time.monotonic()
    if not config.dry_run:
        db.ensure_schema(engine)
        results.start_run(engine, run_id, source.uri, model_version)
    counts = {"seen": 0, "tagged": 0, "skipped": 0, "failed": 0}
    status = "failed"
    bar = _progress_bar(config.progress)
    try:
        with concurrent.futures.ThreadPoolExecutor(config.workers) as pool:
            listing = (ref for ref in source.list() if in_shard(ref.uri, config.shard))
            for refs in _batches(listing, config.batch_size):
                batch_counts = _tag_batch(refs, source, predictor, hashtags, engine, config, run_id,
                                          pool, counts)
                for key, value in batch_counts.items():
                    counts[key] += value
                bar.update(len(refs))
                if config.limit is not None and counts["tagged"] + counts["failed"] >= config.limit:
                    break
        status = "succeeded"
    finally:
        bar.close()
        summary = dict(counts, run_id=run_id, source=source.uri, model_version=model_version, status=status)
        if not config.dry_run:
            summary.update(results.finish_run(engine, run_id, status))
        summary["seconds"] = round(time.monotonic() - started, 3)
        if config.dry_run:
            summary["status"] = "dry-run"
    return summary


def _tag_batch(refs, source, predictor, hashtags, engine, config, run_id, pool, counts) -> dict:
    if config.limit is not None:
        room = config.limit - counts["tagged"] - counts["failed"]
    else:
        room = None
    items = list(pool.map(lambda ref: _read(source, ref), refs))
    if config.dry_run:
        done = _done(engine, predictor.model_version, items, config.retag) if _has_schema(engine) else set()
        new = [item for item in items if (item.ref.uri, item.content_hash) not in done]
        return {"seen": len(items), "tagged": len(new), "skipped": len(items) - len(new), "failed": 0}
    done = _done(engine, predictor.model_version, items, config.retag)
    todo = [item for item in items if (item.ref.uri, item.content_hash) not in done]
    skipped = len(items) - len(todo)
    if room is not None:
        skipped_by_limit = todo[room:]
        todo = todo[:room]
        skipped += len(skipped_by_limit)
    failed = [results.Failed(item.ref.uri, item.content_hash, item.error) for item in todo if item.error]
    readable = [item for item in todo if not item.error]
    tiles = list(pool.map(_decode_or_reason, (item.data for item in readable)))
    good = [(item, tile) for item, tile in zip(readable, tiles) if not isinstance(tile, str)]
    failed += [results.Failed(item.ref.uri, item.content_hash, tile)
               for item, tile in zip(readable, tiles) if isinstance(tile, str)]
    tagged = []
    if good:
        probabilities = predictor.predict(np.stack([tile for _, tile in good]))
        for (item, _), probs in zip(good, probabilities):
            top = predictor.top_labels(probs, config.label_count)
            tagged.append(results.Tagged(item.ref.uri, item.content_hash, top,
                                         hashtags.hashtags(top, predictor.coarse_labels(probs))))
    results.write_batch(engine, run_id, predictor.model_version, tagged, failed, skipped)
    return {"seen": len(items), "tagged": len(tagged), "skipped": skipped, "failed": len(failed)}


def _decode_or_reason(data: bytes) -> np.ndarray | str:
    try:
        return decode.decode(data)
    except decode.ImageError as error:
        return str(error)


def _done(engine, model_version, items, retag) -> set[tuple[str, str]]:
    with engine.connect() as connection:
        return results.done_keys(connection, model_version, [item.ref.uri for item in items], retag)


def _has_schema(engine) -> bool:
    return sa.inspect(engine).has_table("image_results")


def _progress_bar(enabled: bool):
    from tqdm import tqdm

    return tqdm(unit="img", desc="tagging", disable=not enabled, leave=False)
