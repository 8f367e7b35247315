"""Client-side deadlines on PostgreSQL connections: a statement, a COMMIT or the pool's ping that gets no
answer ends in a disconnect error instead of a hang.

A frozen server (SIGSTOP, a hung VM, a failover in progress), or a proxy that stops forwarding, still has a
kernel acknowledging packets and keepalives, so TCP keepalives and tcp_user_timeout never fire and only a
clock on this side ends the wait: a daemon thread shuts down the socket of a connection past its deadline,
the driver's blocked call returns with a disconnect, and the caller's retry (tasks.store.results.retrying)
takes a fresh connection. COMMIT is covered as well as statements: it is no cursor execute (psycopg2 sends
it from connection.commit()), so SQLAlchemy's cursor events never see it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Callable

import sqlalchemy as sa


def watch(eng: sa.Engine, statement_s: Callable[[], float], ping_s: Callable[[], float]) -> None:
    """Deadlines on every statement, COMMIT and ROLLBACK of `eng` (`statement_s()` seconds, read at each
    call so that a changed setting is followed) and on the ping of a pooled connection before it is lent
    (`ping_s()` seconds; the pool's own pre-ping has none: it would wait for a frozen server for ever)."""
    watchdog = Watchdog()

    @sa.event.listens_for(eng, "checkout")
    def _ping(dbapi_connection, _record, _proxy):
        with watchdog.deadline(dbapi_connection, ping_s()):
            try:
                cursor = dbapi_connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
                dbapi_connection.rollback()  # leave no transaction open behind the ping
            except Exception as error:  # noqa: BLE001  any failure: the pool drops it and connects afresh
                raise sa.exc.DisconnectionError(f"pooled connection is dead: {error}") from error

    @sa.event.listens_for(eng, "before_cursor_execute")
    def _arm(connection, cursor, *_):
        watchdog.arm(cursor.connection, statement_s())

    @sa.event.listens_for(eng, "after_cursor_execute")
    def _disarm(connection, cursor, *_):
        watchdog.disarm(cursor.connection)

    @sa.event.listens_for(eng, "handle_error")
    def _disarm_on_error(context):
        cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            watchdog.disarm(cursor.connection)

    _bound(eng.dialect, "do_commit", watchdog, statement_s)
    _bound(eng.dialect, "do_rollback", watchdog, statement_s)


def _bound(dialect, method: str, watchdog: "Watchdog", seconds: Callable[[], float]) -> None:
    """Run the dialect's `method(dbapi_connection)` under a deadline (this engine's dialect only: each
    engine has its own dialect object)."""
    original = getattr(dialect, method)

    def bounded(dbapi_connection):
        with watchdog.deadline(dbapi_connection, seconds()):
            return original(dbapi_connection)

    setattr(dialect, method, bounded)


# Bound at import: a test that patches time.sleep or time.monotonic (to drive the retries' clock) must not
# turn every engine's watchdog thread into a busy loop that eats its clock
_monotonic = time.monotonic


class Watchdog:
    """One daemon thread per engine that severs the socket of a connection past its deadline."""

    def __init__(self, tick_s: float = 1.0):
        self.tick_s = tick_s
        self.deadlines: dict[int, tuple[float, object]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def arm(self, dbapi_connection, seconds: float) -> None:
        """Sever `dbapi_connection` unless disarmed within `seconds`."""
        with self.lock:
            self.deadlines[id(dbapi_connection)] = (_monotonic() + seconds, dbapi_connection)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self.thread.start()

    def disarm(self, dbapi_connection) -> None:
        with self.lock:
            self.deadlines.pop(id(dbapi_connection), None)

    @contextlib.contextmanager
    def deadline(self, dbapi_connection, seconds: float):
        """Armed for `seconds` while the block runs."""
        self.arm(dbapi_connection, seconds)
        try:
            yield
        finally:
            self.disarm(dbapi_connection)

    def _run(self) -> None:
        ticks = threading.Event()  # never set: its wait() is a sleep that no patch of time.sleep reaches
        while True:
            ticks.wait(self.tick_s)
            now = _monotonic()
            with self.lock:
                overdue = [conn for deadline, conn in self.deadlines.values() if deadline < now]
                for conn in overdue:
                    self.deadlines.pop(id(conn), None)
            for conn in overdue:
                sever(conn)


def sever(dbapi_connection) -> None:
    """Shut the connection's socket down: the blocked driver call returns at once with a disconnect."""
    try:
        duplicate = socket.socket(fileno=os.dup(dbapi_connection.fileno()))
    except (OSError, AttributeError, ValueError):
        return  # closed meanwhile
    try:
        duplicate.shutdown(socket.SHUT_RDWR)  # acts on the socket, not only on this descriptor
    except OSError:
        pass
    finally:
        duplicate.close()
