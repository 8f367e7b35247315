"""A results database that refuses writes until a person acts (issue 21, items 12 and 13): a role
without grants, a read-only server, a full disk. Each is exit 2 at once, saying what to fix; no minute
of retries, no "unexpected error" (70)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
import sqlalchemy as sa

from fixtures import hostile, tiny_model
from tasks.store import db


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        (folder / f"img{index}.jpg").write_bytes(hostile.jpeg(colour=(200, 60 * index, 20)))
    return folder


@pytest.fixture
def model_dir(tmp_path):
    return tiny_model.build(tmp_path / "tiny")


def hashtagger(bin_dir, db_url: str, *args: str, prefix: tuple = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, str(bin_dir / "hashtagger"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HASHTAGGER_DB_URL": db_url})


def admin(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


@pytest.fixture
def limited_role(pg_server_url):
    """A role that may log in, and nothing more: PostgreSQL 15's default for schema public."""
    name = f"hashtagger_limited_{uuid.uuid4().hex[:8]}"
    admin(pg_server_url, f"CREATE ROLE {name} LOGIN")
    yield name
    admin(pg_server_url, f"DROP ROLE IF EXISTS {name}")


def test_a_role_without_grants_is_told_the_grant_it_needs(pg_url, limited_role, photos, model_dir, bin_dir):
    with db.engine(pg_url).connect() as connection:
        version = int(connection.exec_driver_sql("SHOW server_version_num").scalar())
    if version < 150000:
        pytest.skip("before PostgreSQL 15 every role may create in schema public")
    limited = sa.engine.make_url(pg_url).set(username=limited_role).render_as_string(hide_password=False)
    migrate = hashtagger(bin_dir, limited, "db", "migrate")
    assert migrate.returncode == 2, migrate.stderr
    assert "permission denied for schema public" in migrate.stderr
    assert f"GRANT USAGE, CREATE ON SCHEMA public TO {limited_role}" in migrate.stderr

    db.migrate(db.engine(pg_url))  # by the owner; the role still has no table grants
    tagged = hashtagger(bin_dir, limited, "tag", str(photos), "--model", str(model_dir))
    assert tagged.returncode == 2, tagged.stderr
    assert f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {limited_role}" in tagged.stderr
    assert "unexpected error" not in tagged.stderr and "retrying" not in tagged.stderr


def test_a_read_only_server_is_named_as_such(pg_url, photos, model_dir, bin_dir):
    db.migrate(db.engine(pg_url))
    # what a standby (or the old primary after a failover) answers to a write: SQLSTATE 25006
    admin(pg_url, f'ALTER DATABASE "{sa.engine.make_url(pg_url).database}" SET default_transaction_read_only = on')
    tagged = hashtagger(bin_dir, pg_url, "tag", str(photos), "--model", str(model_dir))
    assert tagged.returncode == 2, tagged.stderr
    assert "read-only" in tagged.stderr and "point HASHTAGGER_DB_URL at the primary" in tagged.stderr
    assert "retrying" not in tagged.stderr


FULL_DISK = """
set -e
mount -t tmpfs -o size=2m tmpfs "$DISK"
"$HASHTAGGER" db migrate > /dev/null
head -c 8M /dev/zero > "$DISK/filler" 2> /dev/null || true
set +e
"$HASHTAGGER" tag "$PHOTOS" --model "$MODEL"
echo "exit=$?"
"""


def test_sqlite_on_a_full_disk_says_so_at_once(tmp_path, photos, model_dir, bin_dir):
    """A 2 MiB tmpfs, in a mount namespace of its own (unshare: no mount outside the test), filled up."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "--map-root-user", "true"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here (unshare --mount --map-root-user fails)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", FULL_DISK], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "DISK": str(disk), "HASHTAGGER": str(bin_dir / "hashtagger"),
                               "PHOTOS": str(photos), "MODEL": str(model_dir),
                               "HASHTAGGER_DB_URL": f"sqlite:///{disk / 'results.db'}"})
    assert "exit=2" in done.stdout, done.stdout + done.stderr
    assert "the disk that holds the results database is full" in done.stderr, done.stderr
    assert "retrying" not in done.stderr, "no minute of retries"
