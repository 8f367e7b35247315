"""Shared fixtures: a fresh PostgreSQL database per test session, an isolated HASHTAGGER_HOME per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get("HASHTAGGER_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_server_url():
    """Admin URL of the PostgreSQL server the tests use (fails loudly when it is down)."""
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        pytest.fail(f"PostgreSQL is not answering at {PG_ADMIN_URL}: {error.orig}")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


def _create_database(admin_url: str, name: str) -> str:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, name: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def pg_url(pg_server_url):
    """A brand-new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"hashtagger_test_{uuid.uuid4().hex[:12]}"
    url = _create_database(pg_server_url, name)
    yield url
    from tasks.store import db

    db.engine.cache_clear()
    _drop_database(pg_server_url, name)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, tmp_path):
    """Each test using this runs twice: on a fresh PostgreSQL database and on an SQLite file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def hashtagger_home(tmp_path, monkeypatch):
    """Every test gets its own HASHTAGGER_HOME and no X credentials unless it sets them."""
    home = tmp_path / "home"
    monkeypatch.setenv("HASHTAGGER_HOME", str(home))
    monkeypatch.delenv("HASHTAGGER_DB_URL", raising=False)
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    return home


@pytest.fixture(scope="session")
def shared_data():
    """The real CIFAR JPEG archives beside the checkout (../shared/data)."""
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip(f"real CIFAR data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def bin_dir():
    """Folder of the installed console scripts (hashtag, hashtagger)."""
    import sys

    return Path(sys.executable).parent


@pytest.fixture
def prepared_cifar10(bin_dir, shared_data, hashtagger_home, tmp_path):
    """(environment for CLI subprocesses, `hashtagger data prepare` output): the real CIFAR-10 JPEG data
    prepared through the CLI in this test's HASHTAGGER_HOME, with an SQLite results database."""
    import subprocess

    env = {"HASHTAGGER_HOME": str(hashtagger_home), "PATH": str(bin_dir),
           "HASHTAGGER_DB_URL": f"sqlite:///{tmp_path / 'results.db'}"}
    prepared = subprocess.run(
        [bin_dir / "hashtagger", "data", "prepare", "cifar10", "--source",
         str(shared_data / "cifar10-jpeg.tar.gz"), "--quiet"], env=env, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    return env, prepared.stdout
