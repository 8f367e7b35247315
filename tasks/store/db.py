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
import re
from pathlib import Path

import sqlalchemy as sa

from tasks.config import Settings
from tasks.store import migrations_sql as statements_sql

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
PG_MIGRATION_LOCK = 7_431_001  # advisory lock id: one migrating process at a time per database
MIGRATE_HINT = "run `hashtagger db migrate`"


class MigrationError(RuntimeError):
    """A migration file is malformed, edited after it was applied, or failed to apply."""


class SchemaNotReady(MigrationError):
    """The database has not been migrated to this version's schema; the message says what to run."""


class DatabaseUnavailable(RuntimeError):
    """The results database does not answer (wrong URL, server down); the message names it."""


def sql_dir() -> importlib.resources.abc.Traversable:
    """The packaged `sql/` folder (migrations, and example queries under queries/)."""
    folder = importlib.resources.files("tasks.store") / "sql"
    if not folder.is_dir():
        raise MigrationError("the package has no tasks/store/sql folder of migrations (a broken install?)")
    return folder


def query_text(name: str) -> str:
    """A query kept in sql/queries/<name>.sql."""
    return (sql_dir() / "queries" / f"{name}.sql").read_text()


@functools.lru_cache(maxsize=8)
def engine(url: str | None = None) -> sa.Engine:
    """One pooled engine per URL; the default URL comes from the environment."""
    url = url or Settings.from_env().database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, future=True)


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


def statements(script: str) -> list[str]:
    """Split a migration into statements: each ends with ';' at the end of a line."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()]


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
            for statement in statements(script):
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


def verify_checksums(eng: sa.Engine, files: list[tuple[str, str]] | None = None) -> None:
    """MigrationError when a migration recorded with a checksum differs from its file now."""
    files = files if files is not None else migration_files()
    recorded = applied(eng)
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
                                  f"{reason[0] if reason else type(error).__name__}") from None
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
    verify_checksums(eng, files)
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
