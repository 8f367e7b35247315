"""What the results database knows about each image's bytes without reading them (sql/019): the listing's
metadata (ImageRef.signature) when they were last hashed, and the set-based "already done" built on it.

A listed image needs no work when its signature is the one stored and the content hash stored with it was
tagged by the run's model (or failed to decode on those very bytes). That decision is one statement per
chunk of listed images: the chunk travels as a VALUES list joined against image_files, image_results and
image_failures (an anti-join of index lookups, a few per listed image whatever the tables' size),
read-only, so it needs no temporary table: nothing survives between statements (PgBouncer's transaction
pooling keeps no session) and SQLite takes no write lock.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, NamedTuple

import sqlalchemy as sa

FILES = sa.table("image_files", *map(sa.column, (
    "image_uri", "content_hash", "signature", "size", "mtime_ns", "inode", "device", "etag", "last_modified",
    "run_id", "checked_at")))
KEY = ("image_uri",)
LOOKUP_CHUNK = 1000  # listed images per statement: 2,000 bind parameters, under SQLite's and PostgreSQL's limits

# The listed images (key, signature) that need work for :model: no stored signature equal to the listed
# one, or one whose bytes this model has not tagged (and that did not fail to decode). With each, the
# first other key stored with the same signature whose bytes :model tagged: the same file renamed or
# hard-linked (same size, mtime, inode and device), whose results are copied, unread (local files only: an
# object copied in a bucket gets a new LastModified, and two uploads of the same bytes in one second are
# two objects, each tagged). The chunk's VALUES list is spliced in as bind parameter names only (_values):
# never values.
_MOVED = """
(SELECT g.{column} FROM image_files g
 JOIN image_results m ON m.image_uri = g.image_uri AND m.content_hash = g.content_hash AND m.model_version = :model
 WHERE g.signature = l.signature AND l.signature LIKE 'file:%' AND g.image_uri <> l.image_uri
 ORDER BY g.image_uri LIMIT 1)"""
_PENDING = """
WITH listed (image_uri, signature) AS (VALUES {values}),
stored AS (
    SELECT l.image_uri, l.signature,
           (SELECT f.content_hash FROM image_files f WHERE f.image_uri = l.image_uri AND f.signature = l.signature)
             AS content_hash
    FROM listed l)
SELECT l.image_uri, l.content_hash, """ + _MOVED.format(column="image_uri") + ", " + _MOVED.format(
    column="content_hash") + """
FROM stored l
WHERE l.content_hash IS NULL
   OR NOT (EXISTS (SELECT 1 FROM image_results r WHERE r.image_uri = l.image_uri
                     AND r.content_hash = l.content_hash AND r.model_version = :model)
           OR EXISTS (SELECT 1 FROM image_failures x WHERE x.image_uri = l.image_uri
                        AND x.content_hash = l.content_hash AND l.content_hash <> ''))
"""
# PostgreSQL would JIT-compile the statement (its estimated cost passes jit_above_cost), which took 0.7 s a
# chunk here for what is a few hundred index lookups of well under a millisecond each
NO_JIT = sa.text("SET LOCAL jit = off")


def signed64(value: int | None) -> int | None:
    """An unsigned 64-bit number (inode, device) as the signed BIGINT both databases store."""
    if value is None:
        return None
    return value - 2**64 if value >= 2**63 else value


def unsigned64(value: int | None) -> int | None:
    """signed64's inverse."""
    if value is None:
        return None
    return value + 2**64 if value < 0 else value


class Work(NamedTuple):
    """What is known of a listed image that needs work."""

    stored_hash: str | None  # the content hash stored for its very signature (tagged by another model)
    moved_from: str | None  # another key with its signature whose bytes the model tagged (renamed, linked)
    moved_hash: str | None  # that key's content hash


def pending(connection, model_version: str, refs: list) -> dict[str, Work]:
    """{key: Work} of the `refs` (ImageRefs with distinct keys) that need work for `model_version`; a ref
    left out is done: its bytes, known from its metadata, were tagged by that model (or failed to
    decode). One statement per LOOKUP_CHUNK refs."""
    work: dict[str, Work] = {}
    if connection.dialect.name == "postgresql":
        connection.execute(NO_JIT)  # for this transaction only (PgBouncer's transaction pooling keeps no session)
    for start in range(0, len(refs), LOOKUP_CHUNK):
        chunk = refs[start:start + LOOKUP_CHUNK]
        params: dict = {"model": model_version}
        for number, ref in enumerate(chunk):
            params[f"u{number}"], params[f"s{number}"] = ref.uri, "" if ref.error else (ref.signature or "")
        statement = sa.text(_PENDING.format(values=_values(len(chunk))))
        work.update({uri: Work(*rest) for uri, *rest in connection.execute(statement, params)})
    return work


def _values(count: int) -> str:
    """The placeholders of a VALUES list of `count` (key, signature) rows: (:u0, :s0), (:u1, :s1), ..."""
    return ", ".join(f"(:u{number}, :s{number})" for number in range(count))


@dataclasses.dataclass(frozen=True)
class Checked:
    """One image whose bytes a run read in full: its key, content hash and listed ref (for the signature)."""

    uri: str
    content_hash: str
    ref: object  # tasks.tag.refs.ImageRef
    moved_from: str | None = None  # the key whose results of these bytes are copied to this one (Work)


def rows(checked: Iterable[Checked], run_id: str, now) -> list[dict]:
    """image_files rows of the images read in full whose listing gave a signature."""
    return [{"image_uri": item.uri, "content_hash": item.content_hash, "signature": item.ref.signature,
             "size": item.ref.size, "mtime_ns": item.ref.mtime_ns, "inode": signed64(item.ref.inode),
             "device": signed64(item.ref.device), "etag": item.ref.etag, "last_modified": item.ref.modified,
             "run_id": run_id, "checked_at": now}
            for item in checked if item.ref.signature is not None and item.content_hash]


# The results of the same bytes, copied to the key they moved to: from the key they were tagged under, or from
# any key that holds the same bytes (a model's answer depends on the bytes only), the old key first.
COPY_RESULTS = sa.text("""
INSERT INTO image_results (image_uri, content_hash, model_version, label, confidence, top_labels, run_id, tagged_at,
                           uri_text, hashtags)
SELECT :uri, content_hash, model_version, label, confidence, top_labels, :run_id, :at, :uri_text, hashtags
FROM image_results WHERE content_hash = :hash AND model_version = :model AND image_uri <> :uri
ORDER BY CASE WHEN image_uri = :moved_from THEN 0 ELSE 1 END LIMIT 1
ON CONFLICT (image_uri, content_hash, model_version) DO NOTHING
""")
HAS_RESULT = sa.text("""
SELECT 1 FROM image_results WHERE image_uri = :uri AND content_hash = :hash AND model_version = :model
""")


def copy_results(connection, model_version: str, moved: list[Checked], run_id: str, now) -> list[Checked]:
    """Copy `model_version`'s results of moved images (Checked with `moved_from`) to their new keys, before the
    batch drops the results of bytes its keys no longer hold (two files that swapped names copy each other's).
    Returns the moved images whose bytes have no result left anywhere (a chain of renames whose first key was
    tagged anew by an earlier batch of the run): their signatures must not be stored, so that the next run
    reads and tags them."""
    lost = []
    for item in moved:  # one statement each: a move is rare, and INSERT ... SELECT ... LIMIT 1 is per row
        values = {"uri": item.uri, "run_id": run_id, "at": now, "uri_text": item.ref.name,
                  "moved_from": item.moved_from, "hash": item.content_hash, "model": model_version}
        connection.execute(COPY_RESULTS, values)
        if connection.execute(HAS_RESULT, values).first() is None:
            lost.append(item)
    return lost

