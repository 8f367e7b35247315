"""A night's manifest of work (sql/019): written once by the nightly DAG's first task, which lists the source;
read by each shard instead of listing the source again. Plain functions of an engine; tasks/tag/plan.py
fills it, tasks.tag.plan.ManifestSource reads it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable, Iterator

import sqlalchemy as sa

from tasks.store import files
from tasks.store.db import utcnow
from tasks.store.results import retrying, upsert

KEEP_DAYS = 14  # a manifest older than this is dropped when a new one is written (the table stays small)
READ_PAGE = 1000  # entries per query when a shard reads its part (keyset pagination on seq)

WORK = sa.table("night_work", *map(sa.column, (
    "run_key", "seq", "shard", "image_uri", "location", "uri_text", "size", "mtime_ns", "inode", "device", "etag",
    "last_modified", "stored_hash", "error")))
START = sa.text("""
INSERT INTO night_manifests (run_key, source, model_version, shards, verify, status, created_at)
VALUES (:run_key, :source, :model, :shards, :verify, 'listing', :at)
ON CONFLICT (run_key) DO UPDATE SET source = excluded.source, model_version = excluded.model_version,
    shards = excluded.shards, verify = excluded.verify, status = 'listing', listed = 0, work = 0, other_files = 0,
    created_at = excluded.created_at, finished_at = NULL
""")
FORGET_WORK = sa.text("DELETE FROM night_work WHERE run_key = :run_key")
OLD_WORK = sa.text("DELETE FROM night_work WHERE run_key IN "
                   "(SELECT run_key FROM night_manifests WHERE created_at < :cutoff)")
OLD_MANIFESTS = sa.text("DELETE FROM night_manifests WHERE created_at < :cutoff")
FINISH = sa.text("""
UPDATE night_manifests SET status = 'ready', listed = :listed, work = :work, other_files = :other_files,
    finished_at = :at
WHERE run_key = :run_key
""")
HEADER = sa.text("SELECT run_key, source, model_version, shards, verify, status, listed, work, other_files "
                 "FROM night_manifests WHERE run_key = :run_key")
SHARDS = sa.text("SELECT seq, image_uri FROM night_work WHERE run_key = :run_key")
SET_SHARD = sa.text("UPDATE night_work SET shard = :shard WHERE run_key = :run_key AND seq = :seq")
SET_SHARDS = sa.text("UPDATE night_manifests SET shards = :shards WHERE run_key = :run_key")
PAGE = sa.text("""
SELECT seq, image_uri, location, uri_text, size, mtime_ns, inode, device, etag, last_modified, stored_hash, error
FROM night_work WHERE run_key = :run_key AND shard = :shard AND seq > :after ORDER BY seq LIMIT :page
""")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """One night's manifest: what was listed (`listed` images, `other_files` skipped as not images) and how
    many entries need work (`work`), for `model_version` over `shards` shards; status 'listing' until
    complete. (Named apart from a run's counts, tasks/store/counts.py, which are defined once.)"""

    run_key: str
    source: str
    model_version: str
    shards: int
    verify: bool
    status: str
    listed: int = 0
    work: int = 0
    other_files: int = 0

    @property
    def done(self) -> int:
        """Images listed that need no work (tagged before, by metadata)."""
        return self.listed - self.work


def start(engine: sa.Engine, run_key: str, source: str, model_version: str, shards: int, verify: bool) -> None:
    """Begin (or begin again: a retried first task) the manifest of `run_key`, dropping its earlier entries
    and the manifests older than KEEP_DAYS."""
    cutoff = utcnow() - dt.timedelta(days=KEEP_DAYS)

    def transaction() -> None:
        with engine.begin() as connection:
            connection.execute(OLD_WORK, {"cutoff": cutoff})
            connection.execute(OLD_MANIFESTS, {"cutoff": cutoff})
            connection.execute(FORGET_WORK, {"run_key": run_key})
            connection.execute(START, {"run_key": run_key, "source": source, "model": model_version,
                                       "shards": shards, "verify": int(verify), "at": utcnow()})

    retrying(transaction, "starting the night's manifest")


def add(engine: sa.Engine, run_key: str, entries: list[tuple[int, int, object]]) -> None:
    """Write entries (seq, shard, ImageRef) of the manifest in one transaction (upserts: a retry rewrites)."""
    from tasks.tag.refs import escaped

    rows = [{"run_key": run_key, "seq": seq, "shard": shard, "image_uri": ref.uri,
             "location": None if ref.location is None else escaped(ref.location), "uri_text": ref.name,
             "size": ref.size, "mtime_ns": ref.mtime_ns, "inode": files.signed64(ref.inode),
             "device": files.signed64(ref.device), "etag": ref.etag, "last_modified": ref.modified,
             "stored_hash": ref.stored_hash, "error": ref.error} for seq, shard, ref in entries]

    def transaction() -> None:
        with engine.begin() as connection:
            upsert(connection, WORK, rows)

    if rows:
        retrying(transaction, f"writing {len(rows)} entries of the night's manifest")


def reshard(engine: sa.Engine, run_key: str, shard_of: Callable[[str], int], shards: int) -> None:
    """Split the manifest of `run_key` over `shards` shards instead, each entry's shard `shard_of(its URI)`,
    in one transaction. For small nights only (tasks/tag/plan.py): every entry is read and updated."""
    def transaction() -> None:
        with engine.begin() as connection:
            rows = connection.execute(SHARDS, {"run_key": run_key}).all()
            if rows:
                connection.execute(SET_SHARD, [{"run_key": run_key, "seq": seq, "shard": shard_of(uri)}
                                               for seq, uri in rows])
            connection.execute(SET_SHARDS, {"run_key": run_key, "shards": shards})

    retrying(transaction, f"splitting the night's manifest over {shards} shards")


def finish(engine: sa.Engine, run_key: str, listed: int, work: int, other_files: int) -> Manifest:
    """Mark the manifest complete with its counts; returns its header."""
    def transaction() -> None:
        with engine.begin() as connection:
            connection.execute(FINISH, {"run_key": run_key, "listed": listed, "work": work,
                                        "other_files": other_files, "at": utcnow()})

    retrying(transaction, "closing the night's manifest")
    return header(engine, run_key)


def header(engine: sa.Engine, run_key: str) -> Manifest | None:
    """The manifest of `run_key`, or None when its night wrote none."""
    def query():
        with engine.connect() as connection:
            return connection.execute(HEADER, {"run_key": run_key}).mappings().first()

    row = retrying(query, "reading the night's manifest")
    return None if row is None else Manifest(**{**row, "verify": bool(row["verify"])})


def entries(engine: sa.Engine, run_key: str, shard: int) -> Iterator[object]:
    """The ImageRefs of one shard's part of the manifest, in listing order, READ_PAGE a query."""
    from tasks.tag.refs import ImageRef, unescaped

    after = -1
    while True:
        def query(after=after) -> list:
            with engine.connect() as connection:
                return connection.execute(PAGE, {"run_key": run_key, "shard": shard, "after": after,
                                                 "page": READ_PAGE}).mappings().all()

        page = retrying(query, "reading the night's manifest")
        for row in page:
            location = row["location"] and unescaped(row["location"]).decode("utf-8", "surrogateescape")
            yield ImageRef(row["image_uri"], row["size"], row["etag"], name=row["uri_text"], error=row["error"],
                           location=location or None,
                           mtime_ns=row["mtime_ns"], inode=files.unsigned64(row["inode"]),
                           device=files.unsigned64(row["device"]), modified=row["last_modified"],
                           stored_hash=row["stored_hash"])
        if len(page) < READ_PAGE:
            return
        after = page[-1]["seq"]
