"""Shared fixtures: a fresh PostgreSQL database per test, an isolated HASHTAGGER_HOME per test, a tiny
prepared CIFAR-10, and the real CIFAR data when it is there.

Tests that need the PostgreSQL server are marked `postgres` here, from the fixtures they use; they skip
with the reason when the server does not answer, except under CI (the CI variable set), where the
servers are started and a dead one is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get("HASHTAGGER_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


POSTGRES_FIXTURES = {"pg_server_url", "pg_url"}


def pytest_collection_modifyitems(items):
    """Mark `postgres` every test that reaches the server: through pg_url, or db_url's PostgreSQL case."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if POSTGRES_FIXTURES & set(item.fixturenames) and params.get("db_url") != "sqlite" \
                or params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server_url():
    """Admin URL of the PostgreSQL server the tests use; skips with the reason when it is down (fails
    under CI, which starts the server)."""
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        reason = f"PostgreSQL is not answering at {PG_ADMIN_URL}: {str(error.orig).strip().splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
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


@pytest.fixture
def results_db_url(db_url):
    """db_url, migrated: a results database that commands may use (PostgreSQL, then SQLite)."""
    from tasks.store import db

    db.migrate(db.engine(db_url))
    return db_url


@pytest.fixture
def results_sqlite_url(sqlite_url):
    """sqlite_url, migrated."""
    from tasks.store import db

    db.migrate(db.engine(sqlite_url))
    return sqlite_url


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
    """The real CIFAR JPEG archives beside the checkout (../shared/data); skips when they are absent."""
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip(f"real CIFAR data not found at {SHARED_DATA} (a clone without ../shared/data)")
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

    from tasks.store import db

    env = {**os.environ, "HASHTAGGER_HOME": str(hashtagger_home),
           "HASHTAGGER_DB_URL": f"sqlite:///{tmp_path / 'results.db'}"}
    db.migrate(db.engine(env["HASHTAGGER_DB_URL"]))
    prepared = subprocess.run(
        [bin_dir / "hashtagger", "data", "prepare", "cifar10", "--source",
         str(shared_data / "cifar10-jpeg.tar.gz"), "--quiet"], env=env, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    return env, prepared.stdout


# ---------------------------------------------------------------------------------------------- tiny CIFAR-10

def write_image_tree(root: Path, per_class: int = 20, test_per_class: int = 10, seed: int = 0) -> Path:
    """train/<class>/ and test/<class>/ of random 32x32 JPEGs, each class with its own mean colour."""
    from PIL import Image

    from tasks.data.prepare import CIFAR10_CLASSES

    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, (len(CIFAR10_CLASSES), 3))
    for split, count in (("train", per_class), ("test", test_per_class)):
        for index, name in enumerate(CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            colour = colours[index]
            for number in range(count):
                noise = rng.integers(-30, 31, (32, 32, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}-{number:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def tiny_cifar_tree(tmp_path_factory) -> Path:
    """A class-per-folder tree of 200 train and 100 test synthetic JPEGs (CIFAR-10's class names)."""
    return write_image_tree(tmp_path_factory.mktemp("tiny-tree"))


@pytest.fixture(scope="session")
def tiny_cifar_home(tmp_path_factory, tiny_cifar_tree):
    """A home with a prepared 'cifar10' of 180 train, 20 validation and 100 test images (built once)."""
    from tasks.config import Settings
    from tasks.data.prepare import PrepareConfig, prepare

    home = tmp_path_factory.mktemp("tiny-home")
    prepare("cifar10", str(tiny_cifar_tree), Settings(home=home), PrepareConfig(validation_size=20), progress=False)
    return home


@pytest.fixture
def tiny_cifar(tiny_cifar_home, hashtagger_home):
    """The tiny dataset, copied into this test's own HASHTAGGER_HOME; returns the dataset."""
    from tasks.data.dataset import load

    shutil.copytree(tiny_cifar_home / "datasets", hashtagger_home / "datasets")
    return load("cifar10")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny exported model (fixtures/tiny_model.py), built once per test module: fast to serve."""
    from fixtures import tiny_model

    return tiny_model.build(tmp_path_factory.mktemp("model") / "tiny")
