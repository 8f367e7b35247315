"""Writes of tagging results: upserts keyed on natural keys, with bind parameters, one batch a transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import random
import socket
import time

import sqlalchemy as sa

# one class for "the database does not answer", whether at the schema check or after the retry window
from tasks.store.db import DatabaseUnavailable, utcnow  # noqa: F401
from tasks.store import counts as run_counts
from tasks.store import files, leases
from tasks.store.leases import AnotherRunActive  # noqa: F401  raised by tag runs, caught by the CLI
from tasks.hashtags.rank import RankedHashtag

log = logging.getLogger(__name__)

# A dropped connection is retried for about a minute: long enough for a restart with crash recovery
# (8 s measured) or a managed failover (30-60 s), short enough that a dead database ends the run tonight.
RETRY_WINDOW_S = 60.0  # seconds of retrying, then the run fails with a clear message
RETRY_PAUSE = 0.5  # seconds before the first retry, doubled after each (with jitter) ...
RETRY_MAX_PAUSE = 8.0  # ... up to this
HEARTBEAT_STALE_S = 15 * 60  # a 'running' run silent this long is dead (a batch takes seconds)


@dataclasses.dataclass(frozen=True)
class Tagged:
    uri: str  # the image's key (tasks.tag.sources.image_key)
    content_hash: str
    top_labels: list[tuple[str, float]]
    hashtags: list[RankedHashtag]
    replaces: bool = True  # the URI has earlier rows (old content, fewer hashtags, a failure) to clear
    uri_text: str | None = None  # the name for people when the key is a hash of it
    abstained: bool = False  # no confident label: stored with a NULL label and no hashtags


@dataclasses.dataclass(frozen=True)
class Failed:
    uri: str  # the image's key
    content_hash: str  # '' when the bytes could not be read: tried again by the next run
    reason: str
    uri_text: str | None = None


# Tables written in bulk, as Core constructs: an INSERT built this way is sent as multi-row VALUES
# pages (SQLAlchemy's "insertmanyvalues"), where a text() statement would cost one round trip per row:
# 1,700 -> ~6,000 images/s written on PostgreSQL here.
# One row an image: its ranked hashtags are a JSON array on the result row (sql/013_hashtag_arrays.sql;
# the view image_hashtags unnests them), so a batch of 256 images is 256 rows, not 2,816.
RESULTS = sa.table("image_results", *map(sa.column, (
    "image_uri", "content_hash", "model_version", "label", "confidence", "top_labels", "run_id", "tagged_at",
    "uri_text", "hashtags")))
FAILURES = sa.table("image_failures", *map(sa.column, (
    "image_uri", "content_hash", "reason", "run_id", "failed_at", "uri_text")))
KEYS = {"image_results": ("image_uri", "content_hash", "model_version"),
        "image_failures": ("image_uri", "content_hash"), "image_files": files.KEY, "night_work": ("run_key", "seq")}

# Cleaning up after earlier rows of the same URI; skipped for URIs never seen (the nightly common case).
CLEAR_FAILURES = sa.text("""
DELETE FROM image_failures WHERE image_uri = :uri
""")
# A URI shows its current content only: results of the bytes it held before go when the new ones are tagged.
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
INSERT INTO tagging_runs (run_id, run_key, source, model_version, started_at, status, host, pid, heartbeat_at)
VALUES (:run_id, :run_key, :source, :model, :at, 'running', :host, :pid, :at)
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL, run_key = excluded.run_key,
                                   host = excluded.host, pid = excluded.pid, heartbeat_at = excluded.heartbeat_at
""")
ADD_COUNTS = sa.text(f"UPDATE tagging_runs SET {run_counts.ADD}, heartbeat_at = :at WHERE run_id = :run_id")
RUNNING = sa.text("""
SELECT run_id, source, host, pid, started_at, heartbeat_at FROM tagging_runs WHERE status = 'running'
""")
MARK_INTERRUPTED = sa.text("""
UPDATE tagging_runs SET status = 'interrupted', finished_at = :at, error = :error
WHERE run_id = :run_id AND status = 'running'
""")
# A run that finished with failed images says so in its status: one bad file does not fail a night, yet
# the record must show it at a glance (the count is the run's own, as committed batch by batch).
FINISH_RUN = sa.text("""
UPDATE tagging_runs SET status = CASE WHEN :status = 'succeeded' AND failed > 0 THEN 'succeeded_with_failures'
                                      ELSE :status END,
                        finished_at = :at, error = :error, not_images = :not_images
WHERE run_id = :run_id
""")
# A batch's key, inserted in the batch's own transaction: new (one row) the first time, nothing when a retry
# follows a COMMIT whose answer was lost but which took effect (sql/017_run_batch_keys.sql)
NEW_BATCH = sa.text("""
INSERT INTO run_batches (run_id, batch_no) VALUES (:run_id, :batch_no) ON CONFLICT (run_id, batch_no) DO NOTHING
""")
FORGET_BATCHES = sa.text("DELETE FROM run_batches WHERE run_id = :run_id")
RESET_COUNTS = sa.text(f"UPDATE tagging_runs SET {run_counts.RESET} WHERE run_id = :run_id")


@dataclasses.dataclass(frozen=True)
class Prior:
    done: set[tuple[str, str]]  # (uri, content hash) needing no work
    known: set[str]  # URIs with any earlier row, whose old rows a new result must replace
    unchanged: frozenset[str] = frozenset()  # URIs done as their stored metadata says: not even read
    # URI -> (the URI, content hash) of the same file under another name, tagged there: copied, not read
    moved: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


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


def retrying(work, what: str, window_s: float | None = None):
    """work() again, on a fresh connection, when the database connection dropped or the transaction
    was rolled back by the server (restart, failover, pg_terminate_backend, deadlock, SQLite busy).

    Pauses double from RETRY_PAUSE up to RETRY_MAX_PAUSE, with full jitter (many workers reconnecting
    to a restarted server do not all knock at once), for about RETRY_WINDOW_S seconds; then
    DatabaseUnavailable says what failed for how long. Safe because `work` is one transaction of
    upserts: a failed try left nothing behind.
    """
    window_s = RETRY_WINDOW_S if window_s is None else window_s
    started, pause, tries = time.monotonic(), RETRY_PAUSE, 0
    while True:
        tries += 1
        try:
            return work()
        except sa.exc.DBAPIError as error:
            transient = isinstance(error, sa.exc.OperationalError) or error.connection_invalidated
            if not transient:
                raise
            reason = _first_line(error)
            elapsed = time.monotonic() - started
            if elapsed + pause > window_s:
                raise DatabaseUnavailable(
                    f"the database did not answer while {what}: {tries} tries in {elapsed:.0f} s, last error: "
                    f"{reason}") from error
            wait = random.uniform(pause / 2, pause)
            log.warning("%s failed (try %d), retrying in %.1f s: %s", what, tries, wait, reason)
            time.sleep(wait)
            pause = min(pause * 2, RETRY_MAX_PAUSE)


def _first_line(error: sa.exc.DBAPIError) -> str:
    text = str(error.orig if error.orig is not None else error).strip()
    return (text.splitlines() or [type(error).__name__])[0]


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


def start_run(engine: sa.Engine, run_id: str, source: str, model_version: str, run_key: str | None = None) -> None:
    """Record the run with this host, process id and a first heartbeat, under `run_key` (the nightly DAG
    run its shard belongs to; default: the run itself); starting the same run id again resets its
    counters and batch keys (a rerun counts afresh). Runs left 'running' by dead processes are marked
    'interrupted' first. The caller holds the source's lease (tasks/store/leases.py)."""
    now = utcnow()
    with engine.begin() as connection:
        _close_dead_runs(connection, now)
        connection.execute(UPSERT_RUN, {"run_id": run_id, "run_key": run_key or run_id, "source": source,
                                        "model": model_version, "at": now,
                                        "host": socket.gethostname(), "pid": os.getpid()})
        connection.execute(RESET_COUNTS, {"run_id": run_id})
        connection.execute(FORGET_BATCHES, {"run_id": run_id})


def _close_dead_runs(connection, now: dt.datetime) -> list:
    """Mark 'interrupted' the running runs whose process is gone; returns the live ones."""
    live = []
    host = socket.gethostname()
    for run in connection.execute(RUNNING).all():
        last = _as_utc(run.heartbeat_at) or _as_utc(run.started_at)
        silent = (now - last).total_seconds() if last else float("inf")
        if run.host == host and run.pid and not leases.process_alive(run.pid):
            why = f"process {run.pid} on {host} is gone (killed, or the machine restarted)"
        elif silent > HEARTBEAT_STALE_S:
            why = f"no heartbeat for {silent / 60:.0f} min from {run.host or 'an unknown host'}:{run.pid or '?'}"
        else:
            live.append(run)
            continue
        connection.execute(MARK_INTERRUPTED, {"run_id": run.run_id, "at": now,
                                              "error": f"interrupted: {why}; a rerun finishes its work"})
        log.warning("run %s was interrupted: %s", run.run_id, why)
    return live


def _as_utc(value) -> dt.datetime | None:
    """A timestamp as read back: a datetime (PostgreSQL) or ISO text (SQLite); naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def write_batch(engine: sa.Engine, run_id: str, model_version: str, tagged: list[Tagged],
                failed: list[Failed], skipped: int, count: bool = True, batch_no: int | None = None,
                checked: list[files.Checked] = ()) -> None:
    """One transaction: results, hashtags, failures, the signatures of the bytes read (`checked`,
    sql/019) and (with `count`) the run's counters, all or nothing.

    `batch_no` (0, 1, ... within the run) keys the counters: a batch retried after a COMMIT whose outcome
    was unknown (the connection cut while waiting for its answer) rewrites the same rows and adds its
    counts only if the first COMMIT did not take effect. None: counted each time it is written."""
    now = utcnow()
    result_rows = []
    for item in tagged:
        label, confidence = item.top_labels[0]  # confidence: the top calibrated probability, the OOD score
        label = None if item.abstained else label
        result_rows.append({"image_uri": item.uri, "content_hash": item.content_hash, "model_version": model_version,
                            "label": label, "confidence": confidence,
                            "top_labels": json.dumps([[name, round(p, 6)] for name, p in item.top_labels]),
                            "run_id": run_id, "tagged_at": now, "uri_text": item.uri_text,
                            "hashtags": hashtags_json(item.hashtags)})
    failure_rows = [{"image_uri": item.uri, "content_hash": item.content_hash, "reason": item.reason,
                     "run_id": run_id, "failed_at": now, "uri_text": item.uri_text} for item in failed]
    counted = run_counts.RunCounts(seen=len(tagged) + len(failed) + skipped, tagged=len(tagged), skipped=skipped,
                                   failed=len(failed), abstained=sum(item.abstained for item in tagged))
    counts = {name: getattr(counted, name) for name in run_counts.BATCH_FIELDS} | {"run_id": run_id, "at": now}
    moved = [item for item in checked if item.moved_from]
    cleared = [{"uri": item.uri} for item in [*tagged, *moved] if getattr(item, "replaces", True)]
    # new bytes that fail to decode replace the old bytes' results too: a key shows what it holds now
    current = [{"uri": item.uri, "hash": item.content_hash} for item in [*tagged, *moved]
               if getattr(item, "replaces", True)] + [{"uri": item.uri, "hash": item.content_hash}
                                                       for item in failed if item.content_hash]

    def transaction() -> None:
        with engine.begin() as connection:
            upsert(connection, RESULTS, result_rows)
            # moved bytes first: the drop below may remove the rows they are copied from (swapped names)
            lost = {item.uri for item in files.copy_results(connection, model_version, moved, run_id, now)}
            if lost:
                log.warning("%d renamed images lost the results of their bytes to an earlier batch of this run; "
                            "the next run tags them", len(lost))
            if cleared:
                connection.execute(CLEAR_FAILURES, cleared)  # a file that failed before and is fixed now
            if current:
                connection.execute(DROP_OLD_RESULTS, current)
            upsert(connection, FAILURES, failure_rows)
            upsert(connection, files.FILES, files.rows([item for item in checked if item.uri not in lost], run_id, now))
            if count and _new_batch(connection, run_id, batch_no):
                connection.execute(ADD_COUNTS, counts)

    retrying(transaction, f"writing a batch of {len(tagged) + len(failed)} images")


def _new_batch(connection, run_id: str, batch_no: int | None) -> bool:
    """Record the batch's key; False when an earlier try of this batch committed it already."""
    if batch_no is None:
        return True
    return connection.execute(NEW_BATCH, {"run_id": run_id, "batch_no": batch_no}).rowcount > 0


def hashtags_json(hashtags: list[RankedHashtag]) -> str:
    """The image_results.hashtags column: ranked hashtags as a JSON array, best first (sql/013).
    Numbers unrounded, so that image_tags shows the same confidence as image_labels."""
    return json.dumps([{"rank": tag.rank, "hashtag": tag.hashtag, "label": tag.label,
                        "confidence": tag.confidence, "score": tag.score, "source": tag.source}
                       for tag in hashtags], separators=(",", ":"), ensure_ascii=False)


def clear_failures(engine: sa.Engine, uris: list[str], chunk: int = 500) -> None:
    """Drop the failures recorded for `uris` (folders that could not be listed and now can: their files
    are tagged as any others), in chunks of `chunk` URIs a transaction."""
    for start in range(0, len(uris), chunk):
        rows = [{"uri": uri} for uri in uris[start:start + chunk]]
        retrying(lambda: _execute(engine, CLEAR_FAILURES, rows), "clearing the failures of listed folders")


def _execute(engine: sa.Engine, statement, rows: list[dict]) -> None:
    with engine.begin() as connection:
        connection.execute(statement, rows)


def finish_run(engine: sa.Engine, run_id: str, status: str, error: str | None = None, not_images: int = 0) -> dict:
    """Close the run record with the count of non-image files its source skipped; returns it as written
    (counts are exact: each batch added its own)."""
    def transaction() -> dict:
        with engine.begin() as connection:
            connection.execute(FINISH_RUN, {"run_id": run_id, "status": status, "at": utcnow(), "error": error,
                                            "not_images": not_images})
            # the batch keys guard retries within the run only; an ended run needs none (a rerun resets)
            connection.execute(FORGET_BATCHES, {"run_id": run_id})
            return dict(connection.execute(sa.text("SELECT * FROM tagging_runs WHERE run_id = :run_id"),
                                           {"run_id": run_id}).mappings().one())

    return retrying(transaction, "closing the run record")
