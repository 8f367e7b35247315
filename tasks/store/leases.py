"""Run leases: one row per source (and shard) in `run_leases` (sql/016_run_leases.sql), held by one live run.

A lease replaces PostgreSQL's session advisory lock, which cannot work behind PgBouncer in transaction
pooling (the lock stays on whichever server connection the pool lends next, and is never released) and
which a role's idle_session_timeout drops while the run is alive. A lease is a row: taken in one short
transaction, kept alive by a heartbeat thread (every HEARTBEAT_S), released at the end. Its expiry is by
the database's clock, so workers whose clocks disagree agree on it; an expired lease, or one whose holder
is a dead process on this host, is taken over. The same code runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid

import sqlalchemy as sa

log = logging.getLogger(__name__)

LEASE_S = 90.0  # a lease not renewed for this long is free: six missed heartbeats
HEARTBEAT_S = 15.0  # how often a holder renews its lease (one UPDATE of one row)

# The database's clock in epoch seconds: a constant expression per dialect, not a value
CLOCK = {"postgresql": "EXTRACT(EPOCH FROM clock_timestamp())",
         "sqlite": "((julianday('now') - 2440587.5) * 86400.0)"}
# Taken when free, expired, or already ours (a retried start); ON CONFLICT locks the row on PostgreSQL and
# SQLite's IMMEDIATE transaction holds the write lock, so two runs cannot both see it free
TAKE = """
INSERT INTO run_leases (source, holder, run_id, host, pid, acquired_at, expires_at)
VALUES (:source, :holder, :run_id, :host, :pid, {clock}, {clock} + :lease_s)
ON CONFLICT (source) DO UPDATE SET holder = excluded.holder, run_id = excluded.run_id, host = excluded.host,
                                   pid = excluded.pid, acquired_at = excluded.acquired_at,
                                   expires_at = excluded.expires_at
WHERE run_leases.expires_at < {clock} OR run_leases.holder = excluded.holder
"""
# Taken from a holder known to be dead (its process is gone from this host), only if it still holds it
TAKE_FROM = """
UPDATE run_leases SET holder = :holder, run_id = :run_id, host = :host, pid = :pid, acquired_at = {clock},
                      expires_at = {clock} + :lease_s
WHERE source = :source AND holder = :dead_holder
"""
RENEW = "UPDATE run_leases SET expires_at = {clock} + :lease_s WHERE source = :source AND holder = :holder"
HOLDER = "SELECT holder, run_id, host, pid, expires_at - {clock} AS left_s FROM run_leases WHERE source = :source"
RELEASE = sa.text("DELETE FROM run_leases WHERE source = :source AND holder = :holder")


class AnotherRunActive(RuntimeError):
    """Another live run holds the lease on this source (and shard): this one would only repeat its work.
    str() names the holder and says to wait."""


class LeaseLost(RuntimeError):
    """A run's lease was taken over (its heartbeat was not recorded for LEASE_S seconds): it must stop."""


def _sql(connection, template: str) -> sa.TextClause:
    return sa.text(template.format(clock=CLOCK[connection.dialect.name]))


def new_holder() -> str:
    """A holder token for one run attempt: take it once, before any retry of `take`."""
    return uuid.uuid4().hex


def take(engine: sa.Engine, source: str, run_id: str, lease_s: float | None = None,
         holder: str | None = None) -> None:
    """Take the lease on `source` for `run_id` (one transaction), for `lease_s` seconds (default LEASE_S).

    `holder`: this attempt's token (new_holder(); default the run id, for callers with one attempt per
    run id). The same holder taking it again succeeds (a retried start); another holder with the same run
    id (a second process running that run: an Airflow retry beside a zombie attempt) is refused.
    Raises AnotherRunActive when a live run holds it: unexpired, and not a process on this host known to be gone.
    """
    me = {"source": source, "holder": holder or run_id, "run_id": run_id, "host": socket.gethostname(),
          "pid": os.getpid(), "lease_s": LEASE_S if lease_s is None else lease_s}
    with engine.begin() as connection:
        if connection.execute(_sql(connection, TAKE), me).rowcount:
            _HELD_HERE.add((source, me["holder"]))  # before the commit: no thread of ours sees it unlisted
            return
        holder = connection.execute(_sql(connection, HOLDER), {"source": source}).one()
        if holder.host == me["host"] and holder.pid and _gone(holder.pid, source, holder.holder):
            # killed (SIGKILL, OOM), or a run of this process whose release the database missed (it was
            # away): its lease would block the rerun for up to LEASE_S otherwise
            if connection.execute(_sql(connection, TAKE_FROM), {**me, "dead_holder": holder.holder}).rowcount:
                _HELD_HERE.add((source, me["holder"]))
                log.warning("took over the lease on %s from run %s (process %s is gone, or its run is over)",
                            source, holder.run_id, holder.pid)
                return
    raise AnotherRunActive(f"another run is active on this source: {holder.run_id} (host {holder.host or '?'}, "
                           f"process {holder.pid or '?'}, lease renewed for another {max(holder.left_s, 0):.0f} s); "
                           f"wait for it to finish")


def renew(engine: sa.Engine, source: str, holder: str, lease_s: float | None = None) -> bool:
    """Move the lease's expiry to `lease_s` seconds from now (database clock); False when `holder` (take's
    token, or the run id it defaulted to) no longer holds it (it expired and another run took it over)."""
    with engine.begin() as connection:
        return connection.execute(_sql(connection, RENEW), {
            "source": source, "holder": holder, "lease_s": LEASE_S if lease_s is None else lease_s}).rowcount > 0


def release(engine: sa.Engine, source: str, holder: str) -> None:
    """Give the lease up (no-op when `holder` does not hold it). Should the database miss it, a later run of
    this process takes the lease over at once, one of another process once it expires."""
    _HELD_HERE.discard((source, holder))
    with engine.begin() as connection:
        connection.execute(RELEASE, {"source": source, "holder": holder})


@contextlib.contextmanager
def held(engine: sa.Engine, source: str, run_id: str, lease_s: float | None = None,
         heartbeat_s: float | None = None, taken: bool = False, holder: str | None = None):
    """Hold the lease on `source` while the block runs, renewed every `heartbeat_s` seconds (default
    HEARTBEAT_S) by a daemon thread; released at the end. Yields a threading.Event set if the lease was lost
    (taken over after missed heartbeats). Raises AnotherRunActive when another live run holds it.
    `taken`: the caller took it already (with `take`, under its retries, as `holder`)."""
    lease_s, holder = LEASE_S if lease_s is None else lease_s, holder or run_id
    if not taken:
        take(engine, source, run_id, lease_s, holder)
    stop, lost = threading.Event(), threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(engine, source, holder, run_id, lease_s,
                                                     HEARTBEAT_S if heartbeat_s is None else heartbeat_s, stop, lost),
                            name="lease-heartbeat", daemon=True)
    beat.start()
    try:
        yield lost
    finally:
        stop.set()
        beat.join(timeout=5)  # a renewal stuck on a frozen server must not hold the run's end (a daemon)
        try:
            release(engine, source, holder)
        except sa.exc.DBAPIError as error:  # the database is gone: the lease expires by itself
            log.warning("could not release the lease on %s (%s); it expires within %.0f s", source,
                        str(error.orig or error).strip().splitlines()[0], lease_s)


def _heartbeat(engine, source: str, holder: str, run_id: str, lease_s: float, every_s: float,
               stop: threading.Event, lost: threading.Event) -> None:
    """Renew until stopped; a failed renewal (database away for a moment) is tried at the next beat."""
    while not stop.wait(every_s):
        try:
            if not renew(engine, source, holder, lease_s):
                log.error("run %s lost its lease on %s (not renewed for %.0f s; another run took it)", run_id,
                          source, lease_s)
                lost.set()
                return
        except Exception as error:  # noqa: BLE001  any failure: a heartbeat thread that died would lose the lease
            log.warning("could not renew the lease on %s: %s", source,
                        (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0])


_HELD_HERE: set[tuple[str, str]] = set()  # (source, holder) of the leases this process's runs hold now


def _gone(pid: int, source: str, holder: str) -> bool:
    """Whether the holder, a process on this host, is dead or is this process with the run over."""
    if pid == os.getpid():
        return (source, holder) not in _HELD_HERE
    return not process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process of this host with this id exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True
