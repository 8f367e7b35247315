"""Which images a tagging run works on: the source's listing in this run's shard, each image once, the
oldest first under a cap (--limit), and what the model has tagged already. Plain functions of a source and
the results database; tasks/tag/tag.py runs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import logging
from typing import Iterable, Iterator

from tasks.store import files, results
from tasks.tag import sources

log = logging.getLogger(__name__)


def in_shard(uri: str, shard: tuple[int, int] | None) -> bool:
    """Whether the image `uri` belongs to `shard` (index, count; None: every image belongs)."""
    return shard is None or shard_of(uri, shard[1]) == shard[0]


def shard_of(uri: str, count: int) -> int:
    """The shard (0 to count - 1) of an image: stable across processes and machines (unlike hash()), sha1
    of the URI modulo the shard count."""
    return int.from_bytes(hashlib.sha1(uri.encode()).digest()[:8], "big") % count


def batches(refs: Iterable[sources.ImageRef], size: int) -> Iterator[list[sources.ImageRef]]:
    """Lists of `size` refs (the last one shorter)."""
    iterator = iter(refs)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def listing(source, shard: tuple[int, int] | None, limit: int | None, engine, model_id: str,
            has_schema: bool) -> Iterator[sources.ImageRef]:
    """The images of `shard` (index, count; None: all), in listing order; under a cap (`limit` images), the
    oldest first."""
    def in_this_shard() -> Iterator[sources.ImageRef]:
        return (ref for ref in once_each(source.list()) if in_shard(ref.uri, shard))

    if limit is None or not has_schema:
        return in_this_shard()
    return oldest_first(in_this_shard, engine, model_id, limit)


def once_each(refs: Iterable[sources.ImageRef]) -> Iterator[sources.ImageRef]:
    """Each image once, as first listed: some S3-compatible stores list a key twice (rustfs #2439); a
    batch holding one key twice cannot be upserted on PostgreSQL ("ON CONFLICT DO UPDATE command cannot
    affect row a second time") and would be counted twice on SQLite."""
    seen: set[int] = set()  # 128 bits of each key's hash, not the key: about 70 bytes an image
    for ref in refs:
        digest = int.from_bytes(hashlib.blake2b(ref.uri.encode(), digest_size=16).digest(), "big")
        if digest in seen:
            log.warning("%s: listed twice by the source; tagged once", sources.shown(ref.text))
            continue
        seen.add(digest)
        yield ref


def oldest_first(shard, engine, model_id: str, limit: int,
                  lookup_size: int = 1000) -> Iterator[sources.ImageRef]:
    """First the `limit` images `model_id` has not tagged that have waited longest: those another
    model tagged, earliest first, then those no model has tagged, in listing order; then the whole
    listing again for whatever room is left (new bytes under a URI it tagged). Memory: `limit` refs.

    So a capped catch-up after a champion change re-tags the images tagged longest ago first.
    """
    def waiting() -> Iterator[tuple[tuple, sources.ImageRef]]:
        order = itertools.count()
        for batch in batches(shard(), lookup_size):
            def query(batch=batch) -> dict:
                with engine.connect() as connection:
                    return results.waiting_since(connection, model_id, [ref.uri for ref in batch])

            since = results.retrying(query, "looking up untagged images")
            for ref in batch:
                if ref.uri in since:  # never tagged: after every image another model tagged
                    yield (since[ref.uri] is None, since[ref.uri] or "", next(order)), ref

    chosen = [ref for _, ref in heapq.nsmallest(limit, waiting(), key=lambda pair: pair[0])]
    yield from chosen
    picked = {ref.uri for ref in chosen}
    yield from (ref for ref in shard() if ref.uri not in picked)


def prior(engine, model_id: str, refs: list[sources.ImageRef], verify: bool = False) -> results.Prior:
    """Which of these images `model_id` has tagged already (each model tags every image once): those its
    stored metadata vouches for (`unchanged`, never read; none under `verify`, which reads every image
    again), those renamed or linked from a key it tagged (`moved`: copied, never read), then, for the
    others, what is stored under their keys (`done` once hashed, `known`)."""
    def query() -> results.Prior:
        with engine.connect() as connection:
            work = {ref.uri: None for ref in refs} if verify else files.pending(connection, model_id, refs)
            found = results.prior(connection, model_id, [ref.uri for ref in refs if ref.uri in work])
        unchanged = frozenset(ref.uri for ref in refs if ref.uri not in work)
        moved = {uri: (known.moved_from, known.moved_hash) for uri, known in work.items()
                 if known is not None and known.moved_from}
        return dataclasses.replace(found, unchanged=unchanged, moved=moved)

    return results.retrying(query, "looking up tagged images")
