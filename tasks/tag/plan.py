"""One listing per night: list the source once, keep what needs work, hand each shard its part.

The nightly DAG's first task runs `plan`: it lists the source, decides per chunk of LOOKUP_CHUNK images,
in one anti-join against what is stored (tasks/store/files.py), which need work for the night's model
(new, changed by their metadata, or not tagged by this model yet), and writes those to the night's
manifest (tasks/store/manifest.py), each with its shard. Each shard then tags `ManifestSource`, which
lists its part of the manifest and reads the images from the source itself: the source is listed once
a night, whatever the shard count, and the count for the log needs no model.

A small night uses fewer shards than asked: each shard costs a fixed start (an ONNX Runtime session, an S3
client, its lease and run record: 0.1-0.35 s here, seconds of scheduling on Airflow) that a handful of
images does not repay, so the manifest is split into at most one shard per `min_work` images of work
(reports/noop_night.md: 20 new photos over 4 shards cost more than over one).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterator

import sqlalchemy as sa

from tasks.store import files, manifest, results
from tasks.tag import listing, sources

log = logging.getLogger(__name__)

# images of work a shard is worth starting for, by default: one batch of the tag stage (TagConfig.batch_size)
MIN_SHARD_WORK = 256


def planned_shards(work: int, shards: int, min_work: int = MIN_SHARD_WORK) -> int:
    """The shards a night with `work` images of work runs: `shards` at most, one per `min_work` images
    (rounded up), at least one."""
    if min_work < 1:
        raise ValueError(f"a shard's least work must be at least 1 image, not {min_work}")
    return max(1, min(shards, -(-work // min_work)))


def plan(source: sources.Source, engine: sa.Engine, model_id: str, run_key: str, shards: int,
         verify: bool = False, min_work: int = MIN_SHARD_WORK) -> manifest.Manifest:
    """List `source` once and write the manifest of `run_key`: the images that need work for `model_id`
    (every image under `verify`), each with its shard (listing.shard_of) of `shards`, or of fewer for a
    small night (planned_shards: one per `min_work` images of work). Returns the manifest's header (listed,
    work, other_files, shards: the count planned). ValueError for shards or min_work below 1; raises
    sources.SourceError when the source cannot be listed; the database is retried (results.retrying) and
    raises DatabaseUnavailable at last."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    planned_shards(0, shards, min_work)  # a bad min_work fails here, before the listing
    manifest.start(engine, run_key, source.uri, model_id, shards, verify)
    listed = work = 0
    for chunk in listing.batches(listing.once_each(source.list()), files.LOOKUP_CHUNK):
        pending = {ref.uri: None for ref in chunk} if verify else _pending(engine, model_id, chunk)
        entries = [(listed + number, listing.shard_of(ref.uri, shards),
                    dataclasses.replace(ref, stored_hash=pending[ref.uri] and pending[ref.uri].stored_hash))
                   for number, ref in enumerate(chunk) if ref.uri in pending]
        manifest.add(engine, run_key, entries)
        listed, work = listed + len(chunk), work + len(entries)
    listed_folders = getattr(source, "listed_folders", None)
    if listed_folders:  # folders that failed to list before and list now: their failures are over
        results.clear_failures(engine, listed_folders)
    planned = planned_shards(work, shards, min_work)
    if planned < shards:  # a small night: its few entries are split again over fewer shards
        manifest.reshard(engine, run_key, lambda uri: listing.shard_of(uri, planned), planned)
    return manifest.finish(engine, run_key, listed, work, getattr(source, "not_images", 0))


def _pending(engine: sa.Engine, model_id: str, chunk: list[sources.ImageRef]) -> dict[str, files.Work]:
    def query() -> dict[str, files.Work]:
        with engine.connect() as connection:
            return files.pending(connection, model_id, chunk)

    return results.retrying(query, "looking up tagged images")


class ManifestNotReady(RuntimeError):
    """A shard found no complete manifest for its night: the first task did not finish (run it again)."""


class ManifestSource:
    """One shard's part of a night's manifest as a Source: list() reads the manifest (the source itself
    is never listed), read() reads the image from the source. `not_images` is the listing's count."""

    def __init__(self, source: sources.Source, engine: sa.Engine, run_key: str, shard: int, shards: int = 1):
        header = manifest.header(engine, run_key)
        if header is None or header.status != "ready":
            raise ManifestNotReady(f"no complete manifest of work for {run_key}: its first task (find_new_images) "
                                   "did not finish; clear it to list the source again")
        if header.source != source.uri:
            raise ManifestNotReady(f"the manifest of {run_key} lists {header.source}, not {source.uri}")
        if header.shards != shards:  # its entries are split over header.shards: another count skips some
            raise ManifestNotReady(f"the manifest of {run_key} is split over {header.shards} shards, not {shards}: "
                                   "run the shards its first task (find_new_images) planned")
        self.uri, self.manifest = source.uri, header
        self.not_images = header.other_files
        self.listed_folders: list[str] = []  # the listing's folders were cleared by plan()
        self._source, self._engine, self._run_key, self._shard = source, engine, run_key, shard

    def list(self) -> Iterator[sources.ImageRef]:
        return manifest.entries(self._engine, self._run_key, self._shard)

    def read(self, ref: sources.ImageRef, max_bytes: int) -> bytes:
        return self._source.read(ref, max_bytes)
