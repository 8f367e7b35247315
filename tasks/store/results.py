"""Writes of tagging results: upserts keyed on natural keys, with bind parameters, one batch a transaction."""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import sqlalchemy as sa

from tasks.store.db import utcnow
from tasks.hashtags.rank import RankedHashtag

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 4  # a batch is tried this many times when the connection drops; then the run fails
RETRY_PAUSE = 0.5  # seconds before the first retry, doubled after each


@dataclasses.dataclass(frozen=True)
class Tagged:
    uri: str
    content_hash: str
    top_labels: list[tuple[str, float]]
    hashtags: list[RankedHashtag]
    replaces: bool = True  # the URI has earlier rows (old content, fewer hashtags, a failure) to clear


@dataclasses.dataclass(frozen=True)
class Failed:
    uri: str
    content_hash: str  # '' when the bytes could not be read
    reason: str


# Tables written in bulk, as Core constructs: an INSERT built this way is sent as multi-row VALUES
# pages (SQLAlchemy's "insertmanyvalues"), where a text() statement would cost one round trip per row:
# 1,700 -> ~6,000 images/s written on PostgreSQL here.
RESULTS = sa.table("image_results", *map(sa.column, (
    "image_uri", "content_hash", "model_version", "label", "confidence", "top_labels", "run_id", "tagged_at")))
HASHTAGS = sa.table("image_hashtags", *map(sa.column, (
    "image_uri", "content_hash", "model_version", "hashtag_rank", "hashtag", "label", "confidence", "score",
    "hashtag_source")))
FAILURES = sa.table("image_failures", *map(sa.column, (
    "image_uri", "content_hash", "reason", "run_id", "failed_at")))
KEYS = {"image_results": ("image_uri", "content_hash", "model_version"),
        "image_hashtags": ("image_uri", "content_hash", "model_version", "hashtag_rank"),
        "image_failures": ("image_uri", "content_hash")}

# Cleaning up after earlier rows of the same URI; skipped for URIs never seen (the nightly common case).
TRIM_HASHTAGS = sa.text("""
DELETE FROM image_hashtags
WHERE image_uri = :uri AND content_hash = :hash AND model_version = :model AND hashtag_rank > :keep
""")
CLEAR_FAILURES = sa.text("""
DELETE FROM image_failures WHERE image_uri = :uri
""")
# A URI shows its current content only: results of the bytes it held before go when the new ones are tagged.
DROP_OLD_HASHTAGS = sa.text("""
DELETE FROM image_hashtags WHERE image_uri = :uri AND content_hash <> :hash
""")
DROP_OLD_RESULTS = sa.text("""
DELETE FROM image_results WHERE image_uri = :uri AND content_hash <> :hash
""")
PRIOR_ROWS = sa.text("""
SELECT image_uri, content_hash, model_version FROM image_results WHERE image_uri IN :uris
UNION ALL
SELECT image_uri, content_hash, NULL FROM image_failures WHERE image_uri IN :uris
""").bindparams(sa.bindparam("uris", expanding=True))
# When each URI was first tagged (by any model), for the URIs `model` has not tagged: a capped run
# catches up oldest first.
FIRST_TAGGED = sa.text("""
SELECT image_uri, MIN(tagged_at) AS first_tagged
FROM image_results
WHERE image_uri IN :uris
GROUP BY image_uri
HAVING MAX(CASE WHEN model_version = :model THEN 1 ELSE 0 END) = 0
""").bindparams(sa.bindparam("uris", expanding=True))
TAGGED_BY_MODEL = sa.text("""
SELECT DISTINCT image_uri FROM image_results WHERE image_uri IN :uris AND model_version = :model
""").bindparams(sa.bindparam("uris", expanding=True))
UPSERT_RUN = sa.text("""
INSERT INTO tagging_runs (run_id, source, model_version, started_at, status)
VALUES (:run_id, :source, :model, :at, 'running')
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL
""")
ADD_COUNTS = sa.text("""
UPDATE tagging_runs SET seen = seen + :seen, tagged = tagged + :tagged, skipped = skipped + :skipped,
                        failed = failed + :failed
WHERE run_id = :run_id
""")
FINISH_RUN = sa.text("""
UPDATE tagging_runs SET status = :status, finished_at = :at, error = :error WHERE run_id = :run_id
""")
RESET_COUNTS = sa.text("""
UPDATE tagging_runs SET seen = 0, tagged = 0, skipped = 0, failed = 0 WHERE run_id = :run_id
""")


@dataclasses.dataclass(frozen=True)
class Prior:
    done: set[tuple[str, str]]  # (uri, content hash) needing no work
    known: set[str]  # URIs with any earlier row, whose old rows a new result must replace


def prior(connection, model_version: str, uris: list[str]) -> Prior:
    """What the database holds already for these URIs, for the model `model_version`.

    Done: tagged by this very model, or failed on these very bytes (a decode failure does not change
    until the bytes do; a read failure, with no hash, is tried again). Tagging is incremental per model:
    images that only earlier models tagged are not done, so a new champion re-tags them (the earlier
    rows stay, in the views image_tags_all and image_labels_all).
    """
    if not uris:
        return Prior(set(), set())
    done, known = set(), set()
    for uri, content_hash, model in connection.execute(PRIOR_ROWS, {"uris": uris}):
        known.add(uri)
        if (model is None and content_hash) or model == model_version:
            done.add((uri, content_hash))
    return Prior(done, known)


def waiting_since(connection, model_version: str, uris: list[str]) -> dict[str, str | None]:
    """For the URIs `model_version` has not tagged: when any model first tagged them (text that sorts
    in time order), None for URIs no model has tagged yet. URIs it has tagged are left out."""
    if not uris:
        return {}
    tagged = {uri for (uri,) in connection.execute(TAGGED_BY_MODEL, {"uris": uris, "model": model_version})}
    first = {uri: str(at) for uri, at in connection.execute(FIRST_TAGGED, {"uris": uris, "model": model_version})}
    return {uri: first.get(uri) for uri in dict.fromkeys(uris) if uri not in tagged}


def retrying(work, what: str, attempts: int = WRITE_ATTEMPTS):
    """work() again, on a fresh connection, when the database connection dropped or the transaction
    was rolled back by the server (restart, failover, pg_terminate_backend, deadlock, SQLite busy).

    Safe because `work` is one transaction of upserts: a failed try left nothing behind.
    """
    pause = RETRY_PAUSE
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except sa.exc.DBAPIError as error:
            transient = isinstance(error, sa.exc.OperationalError) or error.connection_invalidated
            if not transient or attempt == attempts:
                raise
            log.warning("%s failed (try %d of %d), retrying in %.1f s: %s", what, attempt, attempts, pause,
                        str(error.orig).strip().splitlines()[0] if error.orig else error)
            time.sleep(pause)
            pause *= 2


def upsert(connection, table: sa.TableClause, rows: list[dict]) -> None:
    """INSERT ... ON CONFLICT (natural key) DO UPDATE, in multi-row pages, on PostgreSQL or SQLite."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif connection.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"results are written to PostgreSQL or SQLite, not {connection.dialect.name}")
    keys = KEYS[table.name]
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={column.name: statement.excluded[column.name] for column in table.columns if column.name not in keys})
    # RETURNING makes SQLAlchemy send multi-row pages even with ON CONFLICT (without it, it falls back to
    # one round trip per row, lest one page update the same row twice: our pages never repeat a key)
    connection.execute(statement.returning(table.columns[keys[-1]]), rows).close()


def start_run(engine: sa.Engine, run_id: str, source: str, model_version: str) -> None:
    """Record the run; starting the same run id again resets its counters (a rerun counts afresh)."""
    with engine.begin() as connection:
        connection.execute(UPSERT_RUN, {"run_id": run_id, "source": source, "model": model_version,
                                        "at": utcnow()})
        connection.execute(RESET_COUNTS, {"run_id": run_id})


def write_batch(engine: sa.Engine, run_id: str, model_version: str, tagged: list[Tagged],
                failed: list[Failed], skipped: int) -> None:
    """One transaction: results, hashtags, failures and the run's counters, all or nothing."""
    now = utcnow()
    result_rows, hashtag_rows, trims = [], [], []
    for item in tagged:
        label, confidence = item.top_labels[0]
        result_rows.append({"image_uri": item.uri, "content_hash": item.content_hash, "model_version": model_version,
                            "label": label, "confidence": confidence,
                            "top_labels": json.dumps([[name, round(p, 6)] for name, p in item.top_labels]),
                            "run_id": run_id, "tagged_at": now})
        if item.replaces:
            trims.append({"uri": item.uri, "hash": item.content_hash, "model": model_version,
                          "keep": len(item.hashtags)})
        hashtag_rows.extend({"image_uri": item.uri, "content_hash": item.content_hash,
                             "model_version": model_version, "hashtag_rank": tag.rank, "hashtag": tag.hashtag,
                             "label": tag.label, "confidence": tag.confidence, "score": tag.score,
                             "hashtag_source": tag.source}
                            for tag in item.hashtags)
    failure_rows = [{"image_uri": item.uri, "content_hash": item.content_hash, "reason": item.reason,
                     "run_id": run_id, "failed_at": now} for item in failed]
    counts = {"run_id": run_id, "seen": len(tagged) + len(failed) + skipped, "tagged": len(tagged),
              "skipped": skipped, "failed": len(failed)}
    cleared = [{"uri": item.uri} for item in tagged if item.replaces]
    current = [{"uri": item.uri, "hash": item.content_hash} for item in tagged if item.replaces]

    def transaction() -> None:
        with engine.begin() as connection:
            upsert(connection, RESULTS, result_rows)
            if trims:
                connection.execute(TRIM_HASHTAGS, trims)
                connection.execute(CLEAR_FAILURES, cleared)  # a file that failed before and is fixed now
                connection.execute(DROP_OLD_HASHTAGS, current)
                connection.execute(DROP_OLD_RESULTS, current)
            upsert(connection, HASHTAGS, hashtag_rows)
            upsert(connection, FAILURES, failure_rows)
            connection.execute(ADD_COUNTS, counts)

    retrying(transaction, f"writing a batch of {len(tagged) + len(failed)} images")


def finish_run(engine: sa.Engine, run_id: str, status: str, error: str | None = None) -> dict:
    """Close the run record; returns it as written (counts are exact: each batch added its own)."""
    def transaction() -> dict:
        with engine.begin() as connection:
            connection.execute(FINISH_RUN, {"run_id": run_id, "status": status, "at": utcnow(), "error": error})
            return dict(connection.execute(sa.text("SELECT * FROM tagging_runs WHERE run_id = :run_id"),
                                           {"run_id": run_id}).mappings().one())

    return retrying(transaction, "closing the run record")
