"""One run per source, by a lease row (tasks/store/leases.py), on PostgreSQL, SQLite, behind PgBouncer in
transaction pooling and for a role whose idle sessions the server ends (issue 21 items 4 and 8)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from fixtures import hostile
from fixtures.pgbouncer import PgBouncer
from tasks.store import db, leases

IMAGES = 400


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return hostile.photo_folder(tmp_path_factory.mktemp("photos"), IMAGES)


@pytest.fixture
def bouncer():
    if not (Path("/usr/sbin/pgbouncer").exists() or _which("pgbouncer")):
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (.ci/run installs Debian's)")
        pytest.skip("pgbouncer is not installed: apt-get install pgbouncer")
    server = PgBouncer(pool_size=4)  # fewer server connections than the two runs' clients
    yield server
    db.engine.cache_clear()
    server.stop()


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def scalar(engine, sql: str, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def tag_command(bin_dir: Path, folder: Path, model_dir: Path, *extra: str) -> list[str]:
    return [str(bin_dir / "hashtagger"), "tag", str(folder), "--model", str(model_dir), "--workers", "1", "--quiet",
            *extra]


def overlapping_runs(command: list[str], env: dict, engine) -> tuple[subprocess.CompletedProcess, str]:
    """Start `command`; once its first image is in, stop it (SIGSTOP) for a while, its connections idle as
    a slow batch leaves them, and run the same command beside it; then let the first go on. Returns (the
    second's outcome, the first's stdout) after the first has finished (exit 0 asserted)."""
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not scalar(engine, "SELECT COUNT(*) FROM image_results"):
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended before its first image"
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        try:
            time.sleep(3)  # past a 2 s idle_session_timeout: the server has ended the idle sessions by now
            second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        finally:
            first.send_signal(signal.SIGCONT)
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    return second, out


def assert_refused_then_free(second: subprocess.CompletedProcess, first_out: str, engine, command, env) -> None:
    assert second.returncode == 1 and "another run is active on this source" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert f"{IMAGES:,} tagged" in first_out
    assert scalar(engine, "SELECT COUNT(*) FROM run_leases") == 0, "the lease was released"
    assert scalar(engine, "SELECT COUNT(DISTINCT image_uri) FROM image_results") == IMAGES
    third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert third.returncode == 0 and "0 tagged" in third.stdout, third.stderr  # no stranded lock
    assert scalar(engine, "SELECT COUNT(*) FROM tagging_runs") == 2, "the refused run recorded nothing"


# --------------------------------------------------------------------------------------- PgBouncer (item 4)

@pytest.mark.slow
@pytest.mark.postgres
def test_tag_through_pgbouncer_in_transaction_pooling_and_a_second_run_is_refused(
        bouncer, pg_url, photos, model_dir, bin_dir):
    url = bouncer.url(sa.engine.make_url(pg_url).database)
    env = {**os.environ, "HASHTAGGER_DB_URL": url}
    migrated = subprocess.run([str(bin_dir / "hashtagger"), "db", "migrate"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr  # was exit 2: "unsupported startup parameter: options"
    engine = db.engine(url)
    with engine.connect() as connection:  # the server-side timeout holds behind the pooler, per transaction
        assert connection.execute(sa.text("SHOW statement_timeout")).scalar() == f"{db.STATEMENT_TIMEOUT_S // 60}min"
    command = tag_command(bin_dir, photos, model_dir, "--batch-size", "1")
    second, out = overlapping_runs(command, env, engine)
    assert_refused_then_free(second, out, engine, command, env)
    # nothing left behind on the pooled server connections
    assert scalar(db.engine(pg_url), "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                                     "(SELECT oid FROM pg_database WHERE datname = current_database())") == 0


# ------------------------------------------------------------------------ idle_session_timeout (item 8)

@pytest.fixture
def idle_role(pg_url):
    """A role whose sessions the server ends after 2 s idle, owning the test's database (and so, in PostgreSQL
    15, its schema public); dropped after."""
    name = f"hashtagger_idle_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    database = sa.engine.make_url(pg_url).database
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE ROLE "{name}" LOGIN'))
        connection.execute(sa.text(f"ALTER ROLE \"{name}\" SET idle_session_timeout = '2s'"))
        connection.execute(sa.text(f'ALTER DATABASE "{database}" OWNER TO "{name}"'))
    yield sa.engine.make_url(pg_url).set(username=name).render_as_string(hide_password=False)
    db.engine.cache_clear()
    with admin.connect() as connection:
        connection.execute(sa.text(f'ALTER DATABASE "{database}" OWNER TO postgres'))
        connection.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"))
        connection.execute(sa.text(f'DROP OWNED BY "{name}"'))
        connection.execute(sa.text(f'DROP ROLE "{name}"'))
    admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_role_with_idle_session_timeout_still_keeps_a_second_run_out(idle_role, photos, model_dir, bin_dir):
    env = {**os.environ, "HASHTAGGER_DB_URL": idle_role}
    migrated = subprocess.run([str(bin_dir / "hashtagger"), "db", "migrate"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    engine = db.engine(idle_role)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SHOW idle_session_timeout")).scalar() == "2s"
    command = tag_command(bin_dir, photos, model_dir, "--batch-size", "1")
    second, out = overlapping_runs(command, env, engine)
    assert_refused_then_free(second, out, engine, command, env)


# ----------------------------------------------------------------------- the lease itself, on both databases

@pytest.fixture
def leases_engine(results_db_url):
    return db.engine(results_db_url)


def test_a_held_lease_refuses_others_until_released(leases_engine):
    with leases.held(leases_engine, "/photos", "run-a"):
        with pytest.raises(leases.AnotherRunActive, match="another run is active on this source: run-a"):
            leases.take(leases_engine, "/photos", "run-b")
        leases.take(leases_engine, "/photos shard 0/2", "run-b")  # another key is another lease
        leases.take(leases_engine, "/photos", "run-a")  # its holder taking it again (a retried start)
    leases.take(leases_engine, "/photos", "run-b")
    assert scalar(leases_engine, "SELECT run_id FROM run_leases WHERE source = '/photos'") == "run-b"


def test_two_attempts_of_the_same_run_id_are_two_holders(leases_engine):
    """An Airflow retry of a shard (same run id) beside its zombie first attempt is refused, not let in: the
    lease belongs to the attempt (its holder token), not to the run id."""
    first, second = leases.new_holder(), leases.new_holder()
    with leases.held(leases_engine, "/photos shard 1/4", "nightly-x-shard1of4", holder=first):
        with pytest.raises(leases.AnotherRunActive, match="nightly-x-shard1of4"):
            leases.take(leases_engine, "/photos shard 1/4", "nightly-x-shard1of4", holder=second)
        leases.take(leases_engine, "/photos shard 1/4", "nightly-x-shard1of4", holder=first)  # a retried start
        assert not leases.renew(leases_engine, "/photos shard 1/4", second)
    leases.take(leases_engine, "/photos shard 1/4", "nightly-x-shard1of4", holder=second)  # once it ended


def test_the_heartbeat_keeps_a_short_lease_alive_and_an_expired_one_is_taken_over(leases_engine):
    with leases.held(leases_engine, "/photos", "run-a", lease_s=1.5, heartbeat_s=0.3) as lost:
        time.sleep(3)  # twice the lease: alive only through its heartbeats
        with pytest.raises(leases.AnotherRunActive):
            leases.take(leases_engine, "/photos", "run-b")
        assert not lost.is_set()
    leases.take(leases_engine, "/photos", "run-c", lease_s=0.5)  # a run that stops beating (killed on another host)
    time.sleep(1.2)
    leases.take(leases_engine, "/photos", "run-d")
    assert not leases.renew(leases_engine, "/photos", "run-c"), "the old holder learns it lost the lease"
    assert scalar(leases_engine, "SELECT run_id FROM run_leases") == "run-d"


def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_over_at_once(leases_engine):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with leases_engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO run_leases (source, holder, run_id, host, pid, acquired_at, "
                                   "expires_at) VALUES ('/photos', 'k', 'killed', :host, :pid, 0, 1e12)"),
                           {"host": socket.gethostname(), "pid": dead.pid})
    leases.take(leases_engine, "/photos", "rerun")
    assert scalar(leases_engine, "SELECT run_id FROM run_leases") == "rerun"


def test_two_runs_racing_for_one_lease_one_wins(leases_engine):
    barrier, outcomes = threading.Barrier(4), []

    def contend(run_id: str) -> None:
        barrier.wait()
        try:
            leases.take(leases_engine, "/photos", run_id)
            outcomes.append(run_id)
        except leases.AnotherRunActive:
            outcomes.append(None)

    threads = [threading.Thread(target=contend, args=(f"run-{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [run_id for run_id in outcomes if run_id]
    assert len(outcomes) == 4 and len(winners) == 1
    assert scalar(leases_engine, "SELECT run_id FROM run_leases") == winners[0]


def test_a_run_whose_lease_is_taken_over_stops_and_says_so(leases_engine, photos, model_dir, monkeypatch):
    """The heartbeat finds another run holding the lease (its own renewals went unrecorded for a lease's
    length): the run stops at its next batch, recorded as failed, instead of tagging beside the other."""
    from tasks.hashtags.engine import HashtagEngine
    from tasks.tag import predictor, tag

    monkeypatch.setattr(leases, "HEARTBEAT_S", 0.2)
    outcome: dict = {}

    def work():
        try:
            tag.run(str(photos), predictor.load(model_dir), HashtagEngine(), leases_engine,
                    tag.TagConfig(batch_size=1, workers=1))
        except tag.RunFailed as failed:
            outcome["failed"] = failed

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 60
    while not scalar(leases_engine, "SELECT COUNT(*) FROM image_results"):
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    with leases_engine.begin() as connection:  # what a takeover after an expiry leaves in the table
        connection.execute(sa.text("UPDATE run_leases SET holder = 'another', run_id = 'the-other-run'"))
    thread.join(120)
    assert not thread.is_alive()
    failed = outcome["failed"]
    assert "lost the source's lease" in str(failed) and failed.summary.status == "failed"
    assert failed.summary.tagged < IMAGES
    assert scalar(leases_engine, "SELECT run_id FROM run_leases") == "the-other-run", "the other's lease stays"
