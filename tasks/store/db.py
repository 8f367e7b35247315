"""The results database: engines for PostgreSQL or the embedded SQLite, and numbered SQL migrations.

Migrations are applied once per database, by `hashtagger db migrate` (the compose init service runs it,
and so may the first task of a DAG); every other command only checks that the schema is current
(`require_schema`) and fails with one line saying to migrate. The exception is the embedded default
SQLite file under HASHTAGGER_HOME, which the first command migrates, so that a laptop user's first
`hashtagger tag samples/` works. Each applied migration is recorded with the sha256 of its file, and a
shipped migration edited afterwards is refused.

The SQL files ship inside the package (`tasks/store/sql`, a link to the top-level `sql/` in a checkout,
copied into wheels by setuptools) and are read with importlib.resources.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.resources
import math
import os
import re
from pathlib import Path

import sqlalchemy as sa

from tasks import errors
from tasks.config import Settings
from tasks.store import deadlines, migrations_sql as statements_sql

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
ONLY_DIALECT = re.compile(r"^\s*--\s*only:\s*(postgresql|sqlite)\s*$")  # a statement for one database
PG_MIGRATION_LOCK = 7_431_001  # advisory lock id: one migrating process at a time per database
MIGRATE_HINT = "run `hashtagger db migrate`"


class MigrationError(RuntimeError):
    """A migration file is malformed, edited after it was applied, or failed to apply."""


class SchemaNotReady(MigrationError):
    """The database has not been migrated to this version's schema; the message says what to run."""


class DatabaseUnavailable(RuntimeError):
    """The results database does not answer (wrong URL, server down); the message names it."""


class DatabaseRefused(sa.exc.DatabaseError):
    """The results database refuses the work until a person acts: its disk is full, it is read-only (a
    standby after a failover, a read-only file), or the role lacks a grant. str() says which and what
    to do. Never retried: it is no OperationalError, which the retries take for a passing fault."""

    def __init__(self, message: str, statement, params, orig):
        super().__init__(statement, params, orig)
        self.message = message

    def __str__(self) -> str:
        return self.message


SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL = 8, 10, 13  # sqlite3.h primary result codes


def refusal(orig: BaseException, url: sa.engine.URL) -> str | None:
    """What a driver error says a person must fix before any write succeeds, or None."""
    reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        # a full disk is SQLITE_FULL when a file cannot grow, but "disk I/O error" when WAL's shared
        # memory file cannot (SQLite keeps the errno to itself): the free space tells them apart
        if code & 0xFF == SQLITE_FULL or (code & 0xFF == SQLITE_IOERR and _no_space_left(url.database)):
            return (f"the disk that holds the results database is full ({reason}): free space on it, then "
                    "run the same command again")
        if code & 0xFF == SQLITE_READONLY:
            return (f"the results database file cannot be written ({reason}): let the user that runs "
                    "hashtagger write the file and its folder")
        return None
    state = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if state == "53100":
        return f"the PostgreSQL server's disk is full ({reason}): free space on the server"
    if state == "25006":
        return (f"the results database server is read-only ({reason}): a standby, or the old primary after "
                "a failover; point HASHTAGGER_DB_URL at the primary")
    if state == "42501":
        return _missing_grant(reason, url.username or "this role")
    return None


def _no_space_left(database: str | None) -> bool:
    """Whether the file system of an SQLite file has less than 1 MiB left for its user."""
    if not database or database == ":memory:":
        return False
    try:
        stats = os.statvfs(Path(database).expanduser().parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 2**20


def _missing_grant(reason: str, role: str) -> str:
    """The GRANT that would allow what the server refused (`permission denied for <kind> <name>`)."""
    match = re.search(r"permission denied for (schema|table|sequence|database) (\S+)", reason)
    kind, name = match.groups() if match else (None, None)
    if kind == "schema":
        grant = (f"GRANT USAGE, CREATE ON SCHEMA {name} TO {role} (PostgreSQL 15 and later let only the "
                 "schema's owner create in public), or run `hashtagger db migrate` as the owner")
    elif kind in ("table", "sequence"):
        grant = (f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role} (the "
                 f"{kind} {name} and the others hashtagger writes)")
    elif kind == "database":
        grant = f"GRANT CONNECT, CREATE ON DATABASE {name} TO {role}"
    else:
        grant = "GRANT the privilege it names"
    return f"the role {role} lacks a privilege ({reason}): as the owner, {grant}"


def _refusals(eng: sa.Engine) -> None:
    """Errors that no retry changes (a full disk, a read-only server, a missing grant) become
    DatabaseRefused, said at once instead of after a minute of retries."""
    @sa.event.listens_for(eng, "handle_error", retval=True)
    def _refused(context):
        orig = context.original_exception
        message = refusal(orig, eng.url)
        if message is None:
            return None
        return DatabaseRefused(message, context.statement, context.parameters, orig)


def sql_dir() -> importlib.resources.abc.Traversable:
    """The packaged `sql/` folder (migrations, and example queries under queries/)."""
    folder = importlib.resources.files("tasks.store") / "sql"
    if not folder.is_dir():
        raise MigrationError("the package has no tasks/store/sql folder of migrations (a broken install?)")
    return folder


def query_text(name: str) -> str:
    """A query kept in sql/queries/<name>.sql."""
    return (sql_dir() / "queries" / f"{name}.sql").read_text()


# How long PostgreSQL may take before a connection counts as dead. A frozen server, or a proxy that stops
# forwarding, is ended by a clock on this side (tasks/store/deadlines.py): a statement, COMMIT or ROLLBACK
# overdue by STATEMENT_TIMEOUT_S + WATCHDOG_GRACE_S has its socket closed, the driver then raises a
# disconnect, and the caller's retry (tasks.store.results.retrying) takes a fresh connection.
# No `options` startup parameter: PgBouncer (how managed PostgreSQL is reached) refuses it ("unsupported
# startup parameter: options"); the statement timeout is set per transaction instead (SET LOCAL).
CONNECT_TIMEOUT_S = 10  # libpq connect_timeout: a new connection, including the server's answer
STATEMENT_TIMEOUT_S = 120  # server side: no statement of ours takes more than a second or two
WATCHDOG_GRACE_S = 15  # beyond that, the server itself is not answering
PING_TIMEOUT_S = 10  # the liveness check of a pooled connection before it is lent
PG_CONNECT_ARGS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,  # a lost host
    "tcp_user_timeout": 60_000,  # milliseconds: data sent and never acknowledged (a host gone mid-write)
}


def engine(url: str | None = None) -> sa.Engine:
    """One pooled engine per URL; the default URL comes from the environment, read at each call (so a
    changed HASHTAGGER_DB_URL or HASHTAGGER_HOME is followed, not the first one ever seen).

    PostgreSQL connections carry a connect timeout and TCP keepalives, every transaction a statement
    timeout (SET LOCAL, which PgBouncer's transaction pooling keeps to the transaction), and every
    statement, COMMIT and ROLLBACK (and the ping before a pooled connection is lent) runs under a
    client-side deadline, so a frozen server ends in a disconnect error, never in a hang.
    """
    return _engine_for(with_driver(url or Settings.from_env().database_url))


@functools.lru_cache(maxsize=8)
def _engine_for(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        eng = _sqlite_engine(url)
    elif sa.engine.make_url(url).get_driver_name() not in ("psycopg2", "psycopg"):  # the libpq drivers
        eng = sa.create_engine(url, pool_pre_ping=True, future=True)
    else:
        eng = sa.create_engine(url, connect_args=dict(PG_CONNECT_ARGS), future=True)
        deadlines.watch(eng, lambda: STATEMENT_TIMEOUT_S + WATCHDOG_GRACE_S, lambda: PING_TIMEOUT_S)
        _statement_timeout(eng)
    _refusals(eng)
    return eng


def _statement_timeout(eng: sa.Engine) -> None:
    """Each transaction starts with SET LOCAL statement_timeout: it ends with the transaction, so behind
    PgBouncer in transaction pooling it never leaks onto another client's server connection."""
    @sa.event.listens_for(eng, "begin")
    def _begin(connection):
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_S * 1000)}")  # ms


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


def _sqrt(value):
    return None if value is None or value < 0 else math.sqrt(value)


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
        # the shipped queries' sqrt (reviewed_accuracy.sql's Wilson interval): SQLite has it only when built
        # with SQLITE_ENABLE_MATH_FUNCTIONS (Debian's is; others are not); the same function either way
        dbapi_connection.create_function("sqrt", 1, _sqrt, deterministic=True)

    @sa.event.listens_for(eng, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return eng


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL text) of every migration, in order; malformed names and shared numbers are errors."""
    files = []
    for entry in sorted(sql_dir().iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith(".sql"):
            continue
        if not MIGRATION_NAME.match(entry.name):
            raise MigrationError(f"{entry.name}: migrations are named NNN_snake_case.sql")
        files.append((entry.name[:-len(".sql")], entry.read_text()))
    numbers = [name[:3] for name, _ in files]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migrations share a number in {sql_dir()}")
    return files


def checksum(script: str) -> str:
    """sha256 of a migration file's text, as recorded in schema_migrations.checksum."""
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def statements(script: str, dialect: str | None = None) -> list[str]:
    """Split a migration into statements: each ends with ';' at the end of a line.

    Migrations are portable SQL; where the two databases spell a thing differently (JSON functions), a
    statement preceded by the comment line `-- only: postgresql` (or `sqlite`) runs on that dialect
    only. `dialect` None keeps every statement.
    """
    kept, lines, only = [], [], None
    for line in script.splitlines() + [";"]:
        marker = ONLY_DIALECT.match(line)
        if marker:
            only = marker.group(1)
            continue
        if line.strip().startswith("--"):
            continue
        lines.append(line)
        if re.search(r";\s*$", line):
            statement = re.sub(r";\s*$", "", "\n".join(lines)).strip()
            if statement and (dialect is None or only is None or only == dialect):
                kept.append(statement)
            if statement:
                only = None
            lines = []
    return kept


def migrate(eng: sa.Engine | None = None) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns the applied names.

    Raises MigrationError, before applying anything, when a recorded migration's file has changed since.
    """
    eng = eng or engine()
    files = migration_files()
    with eng.begin() as connection:
        _lock(connection)
        connection.execute(statements_sql.CREATE_BOOKKEEPING)
    verify_checksums(eng, files)
    applied_now = []
    for name, script in files:
        with eng.begin() as connection:
            _lock(connection)
            if connection.execute(statements_sql.IS_APPLIED, {"v": name}).first():
                continue
            for statement in statements(script, connection.dialect.name):
                try:
                    connection.exec_driver_sql(statement)
                except sa.exc.DBAPIError as error:
                    raise MigrationError(f"{name}.sql failed: {error.orig}") from error
            connection.execute(statements_sql.RECORD, {"v": name, "t": utcnow()})
            if _has_checksums(connection):
                # this one, and (once, when 006 itself is applied) those applied before checksums existed
                for recorded, text in files:
                    connection.execute(statements_sql.FILL_CHECKSUM, {"v": recorded, "c": checksum(text)})
            applied_now.append(name)
    return applied_now


def applied(eng: sa.Engine) -> dict[str, str | None]:
    """{migration name: recorded checksum (None before 006)} of a database; {} when never migrated."""
    with eng.connect() as connection:
        if not sa.inspect(connection).has_table("schema_migrations"):
            return {}
        query = statements_sql.APPLIED if _has_checksums(connection) else statements_sql.APPLIED_NO_CHECKSUM
        return {row.version: row.checksum for row in connection.execute(query)}


def verify_checksums(eng: sa.Engine, files: list[tuple[str, str]] | None = None,
                     recorded: dict[str, str | None] | None = None) -> None:
    """MigrationError when a migration recorded with a checksum differs from its file now; `recorded`:
    applied(eng) when the caller has just read it (each read inspects the schema: a few ms a call)."""
    files = files if files is not None else migration_files()
    recorded = recorded if recorded is not None else applied(eng)
    for name, script in files:
        expected = recorded.get(name)
        if expected is not None and expected != checksum(script):
            raise MigrationError(
                f"migration {name}.sql has changed since it was applied to {_where(eng)} (sha256 {expected[:12]} "
                f"then, {checksum(script)[:12]} now): a shipped migration is never edited; restore it and put "
                f"the change in a new numbered file")


def require_schema(eng: sa.Engine) -> sa.Engine:
    """The engine, when its schema is this version's; else SchemaNotReady saying to migrate.

    The embedded default SQLite (no HASHTAGGER_DB_URL) is migrated here instead, once, so that a
    laptop user's first command works. DatabaseUnavailable when the database does not answer.
    """
    try:
        if is_embedded_default(eng):
            migrate(eng)
            return eng
        files = migration_files()
        recorded = applied(eng)
    except sa.exc.OperationalError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise DatabaseUnavailable(f"cannot use the results database {_where(eng)}: "
                                  f"{reason[0] if reason else type(error).__name__}; {errors.DB_URL_HINT}") from None
    missing = [name for name, _ in files if name not in recorded]
    if not recorded:
        raise SchemaNotReady(f"the results database {_where(eng)} has no hashtagger tables: {MIGRATE_HINT}")
    if missing:
        raise SchemaNotReady(f"the results database {_where(eng)} lacks migration {', '.join(missing)}: "
                             f"{MIGRATE_HINT}")
    unknown = sorted(set(recorded) - {name for name, _ in files})
    if unknown:
        raise SchemaNotReady(f"the results database {_where(eng)} has migration {', '.join(unknown)}, which "
                             f"this hashtagger does not know: upgrade hashtagger")
    verify_checksums(eng, files, recorded)
    return eng


def is_embedded_default(eng: sa.Engine) -> bool:
    """Whether `eng` is the embedded SQLite under HASHTAGGER_HOME that no HASHTAGGER_DB_URL replaced."""
    settings = Settings.from_env()
    return settings.db_url is None and eng.url.render_as_string(hide_password=False) == settings.database_url


def _has_checksums(connection) -> bool:
    return any(column["name"] == "checksum" for column in sa.inspect(connection).get_columns("schema_migrations"))


def _where(eng: sa.Engine) -> str:
    return eng.url.render_as_string(hide_password=True)


def _lock(connection) -> None:
    """Serialise migrating processes (SQLite already does, through BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(statements_sql.LOCK, {"id": PG_MIGRATION_LOCK})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ensure_schema(eng: sa.Engine | None = None) -> sa.Engine:
    """The engine, migrated (`hashtagger db migrate`, tests, benchmarks); commands call require_schema."""
    eng = eng or engine()
    migrate(eng)
    return eng
