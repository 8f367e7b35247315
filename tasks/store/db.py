"""The results database: engines for PostgreSQL or the embedded SQLite, and numbered SQL migrations."""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
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


def engine(url: str | None = None) -> sa.Engine:
    """One pooled engine per URL; the default URL comes from the environment, read at each call (so a
    changed HASHTAGGER_DB_URL or HASHTAGGER_HOME is followed, not the first one ever seen)."""
    return _engine_for(with_driver(url or Settings.from_env().database_url))


@functools.lru_cache(maxsize=8)
def _engine_for(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, future=True)


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
