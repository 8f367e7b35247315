"""The results database: engines for PostgreSQL or the embedded SQLite, and numbered SQL migrations."""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from tasks.config import Settings

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
PG_MIGRATION_LOCK = 7_431_001  # advisory lock id: one migrating process at a time per database


class MigrationError(RuntimeError):
    """A migration file is malformed or failed to apply."""


def sql_dir() -> Path:
    """The `sql/` folder: beside the package in a checkout, under the prefix when installed."""
    for candidate in (Path(__file__).resolve().parent.parent.parent / "sql",
                      Path(sys.prefix) / "share" / "hashtagger" / "sql"):
        if candidate.is_dir():
            return candidate
    raise MigrationError("cannot find the sql/ folder of migrations")


def query_text(name: str) -> str:
    """A query kept in sql/queries/<name>.sql."""
    return (sql_dir() / "queries" / f"{name}.sql").read_text()


# How long PostgreSQL may take before a connection counts as dead. A frozen server (SIGSTOP, a hung
# VM, a failover in progress) still has its kernel acknowledge packets and keepalives, so only a clock
# on this side ends the wait: the watchdog below closes the socket of a statement overdue by
# STATEMENT_TIMEOUT_S + WATCHDOG_GRACE_S, the driver then raises a disconnect, and the caller's retry
# (tasks.store.results.retrying) takes a fresh connection.
CONNECT_TIMEOUT_S = 10  # libpq connect_timeout: a new connection, including the server's answer
STATEMENT_TIMEOUT_S = 120  # server side: no statement of ours takes more than a second or two
WATCHDOG_GRACE_S = 15  # beyond that, the server itself is not answering
PING_TIMEOUT_S = 10  # the liveness check of a pooled connection before it is lent
PG_CONNECT_ARGS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,  # a lost host
    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000}",  # milliseconds
}


def engine(url: str | None = None) -> sa.Engine:
    """One pooled engine per URL; the default URL comes from the environment, read at each call (so a
    changed HASHTAGGER_DB_URL or HASHTAGGER_HOME is followed, not the first one ever seen).

    PostgreSQL connections carry a connect timeout, TCP keepalives and a statement timeout, and every
    statement (and the ping before a pooled connection is lent) runs under a client-side deadline, so a
    frozen server ends in a disconnect error, never in a hang.
    """
    return _engine_for(with_driver(url or Settings.from_env().database_url))


@functools.lru_cache(maxsize=8)
def _engine_for(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if sa.engine.make_url(url).get_driver_name() not in ("psycopg2", "psycopg"):  # the libpq drivers
        return sa.create_engine(url, pool_pre_ping=True, future=True)
    eng = sa.create_engine(url, connect_args=dict(PG_CONNECT_ARGS), future=True)
    _watch(eng)
    return eng


def _watch(eng: sa.Engine) -> None:
    """Deadlines on every statement and on the ping of a pooled connection (the pool's own pre-ping has
    none: it would wait for a frozen server for ever)."""
    watchdog = _Watchdog()

    @sa.event.listens_for(eng, "checkout")
    def _ping(dbapi_connection, _record, _proxy):
        watchdog.arm(dbapi_connection, PING_TIMEOUT_S)
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()  # leave no transaction open behind the ping
        except Exception as error:  # noqa: BLE001  any failure: the pool drops it and connects afresh
            raise sa.exc.DisconnectionError(f"pooled connection is dead: {error}") from error
        finally:
            watchdog.disarm(dbapi_connection)

    @sa.event.listens_for(eng, "before_cursor_execute")
    def _arm(connection, cursor, *_):
        watchdog.arm(cursor.connection, STATEMENT_TIMEOUT_S + WATCHDOG_GRACE_S)

    @sa.event.listens_for(eng, "after_cursor_execute")
    def _disarm(connection, cursor, *_):
        watchdog.disarm(cursor.connection)

    @sa.event.listens_for(eng, "handle_error")
    def _disarm_on_error(context):
        cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            watchdog.disarm(cursor.connection)


class _Watchdog:
    """One daemon thread per engine that severs the socket of a connection past its deadline."""

    def __init__(self, tick_s: float = 1.0):
        self.tick_s = tick_s
        self.deadlines: dict[int, tuple[float, object]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def arm(self, dbapi_connection, seconds: float) -> None:
        with self.lock:
            self.deadlines[id(dbapi_connection)] = (time.monotonic() + seconds, dbapi_connection)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self.thread.start()

    def disarm(self, dbapi_connection) -> None:
        with self.lock:
            self.deadlines.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.tick_s)
            now = time.monotonic()
            with self.lock:
                overdue = [conn for deadline, conn in self.deadlines.values() if deadline < now]
                for conn in overdue:
                    self.deadlines.pop(id(conn), None)
            for conn in overdue:
                _sever(conn)


def _sever(dbapi_connection) -> None:
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


engine.cache_clear = _engine_for.cache_clear  # tests drop every engine between databases


def with_driver(url: str) -> str:
    """`postgresql://` (psql's form) -> `postgresql+psycopg2://`, the driver hashtagger installs.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not a dependency; a URL naming its
    driver is left as it is.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def _sqlite_engine(url: str) -> sa.Engine:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    eng = sa.create_engine(url, connect_args={"timeout": 60}, future=True)

    # pysqlite only opens transactions before DML; take them ourselves so that DDL and every batch
    # of writes is atomic, and IMMEDIATE so concurrent writers queue instead of failing late.
    @sa.event.listens_for(eng, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @sa.event.listens_for(eng, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return eng


def migration_files() -> list[tuple[str, Path]]:
    files = []
    for path in sorted(sql_dir().glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migrations are named NNN_snake_case.sql")
        files.append((path.stem, path))
    numbers = [name[:3] for name, _ in files]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migrations share a number in {sql_dir()}")
    return files


def statements(script: str) -> list[str]:
    """Split a migration into statements: each ends with ';' at the end of a line."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()]


def migrate(eng: sa.Engine | None = None) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns the applied names."""
    eng = eng or engine()
    applied_now = []
    with eng.begin() as connection:
        _lock(connection)
        connection.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version TEXT PRIMARY KEY, applied_at TIMESTAMP WITH TIME ZONE NOT NULL)"))
    for name, path in migration_files():
        with eng.begin() as connection:
            _lock(connection)
            done = connection.execute(sa.text("SELECT 1 FROM schema_migrations WHERE version = :v"),
                                      {"v": name}).first()
            if done:
                continue
            for statement in statements(path.read_text()):
                try:
                    connection.exec_driver_sql(statement)
                except sa.exc.DBAPIError as error:
                    raise MigrationError(f"{path.name} failed: {error.orig}") from error
            connection.execute(sa.text("INSERT INTO schema_migrations (version, applied_at) VALUES (:v, :t)"),
                               {"v": name, "t": utcnow()})
            applied_now.append(name)
    return applied_now


def _lock(connection) -> None:
    """Serialise migrating processes (SQLite already does, through BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_MIGRATION_LOCK})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ensure_schema(eng: sa.Engine | None = None) -> sa.Engine:
    """The engine, migrated: commands that write results call this first."""
    eng = eng or engine()
    migrate(eng)
    return eng
