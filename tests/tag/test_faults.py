"""Fault drills: the process killed mid-run, the database connection dropped mid-batch.

(The S3 server failing or gone is drilled in test_s3.py, beside its server.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from fixtures import hostile
from tasks.store import db
from tasks.tag import predictor
from tasks.store import results
from tasks.tag import tag
from tasks.hashtags.engine import HashtagEngine

IMAGES = 600


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return hostile.photo_folder(tmp_path_factory.mktemp("photos"), IMAGES)


def scalar(engine, sql: str, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def assert_whole(engine, images: int) -> None:
    """Exactly one result per image, none missing, each with its hashtags (labelled ones), the views whole."""
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == images
    assert scalar(engine, "SELECT COUNT(DISTINCT image_uri) FROM image_results") == images
    assert scalar(engine, "SELECT COUNT(*) FROM image_results r WHERE r.label IS NOT NULL AND NOT EXISTS "
                          "(SELECT 1 FROM image_hashtags h WHERE h.image_uri = r.image_uri "
                          "AND h.content_hash = r.content_hash)") == 0
    assert scalar(engine, "SELECT COUNT(*) FROM image_tags") == scalar(engine, "SELECT COUNT(*) FROM image_hashtags")


def test_killed_with_sigkill_mid_run_then_rerun_gives_one_result_per_image(photos, model_dir, db_url, bin_dir):
    engine = db.ensure_schema(db.engine(db_url))
    env = {**os.environ, "HASHTAGGER_DB_URL": db_url}
    command = [str(bin_dir / "hashtagger"), "tag", str(photos), "--model", str(model_dir), "--batch-size", "10",
               "--workers", "1", "--quiet"]
    killed_at = []
    for _ in range(3):  # kill three times, each once another batch is in, then let it finish
        before = scalar(engine, "SELECT COUNT(*) FROM image_results")
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while scalar(engine, "SELECT COUNT(*) FROM image_results") < before + 10:  # a batch more is in
            assert process.poll() is None, f"the run ended before it was killed: {process.stderr.read()!r}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(scalar(engine, "SELECT COUNT(*) FROM image_results"))
        assert killed_at[-1] % 10 == 0, "only whole batches are ever committed"
    assert killed_at[-1] < IMAGES, "the drill needs a run still going when it is killed"
    # each run marked the one killed before it; the last killed one waits for the next run
    assert scalar(engine, "SELECT COUNT(*) FROM tagging_runs WHERE status = 'interrupted'") == 2
    assert scalar(engine, "SELECT COUNT(*) FROM tagging_runs WHERE status = 'running'") == 1

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{IMAGES - killed_at[-1]:,} tagged" in finished.stdout
    assert_whole(engine, IMAGES)
    assert scalar(engine, "SELECT COUNT(*) FROM tagging_runs WHERE status = 'interrupted' AND error LIKE "
                          "'interrupted: process % is gone%'") == 3


def drop_connection_during(engine, statement_start: str, times: int, admin_url: str | None) -> list:
    """Make the connection drop when a statement starting with `statement_start` is sent, `times` times.

    On PostgreSQL the server itself kills the backend (pg_terminate_backend from another connection);
    on SQLite, which has no server, the driver's OperationalError is raised at the same point.
    """
    dropped = []
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT") if admin_url else None

    @sa.event.listens_for(engine, "before_cursor_execute")
    def before(connection, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().startswith(statement_start) or len(dropped) >= times:
            return
        dropped.append(statement_start)
        if admin is not None:
            with admin.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"),
                              {"pid": cursor.connection.get_backend_pid()})
        else:
            import sqlite3

            raise sa.exc.OperationalError(statement, parameters, sqlite3.OperationalError("injected: disk I/O error"))

    return dropped


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(results, "RETRY_PAUSE", 0.01)
    monkeypatch.setattr(results, "RETRY_MAX_PAUSE", 0.05)
    monkeypatch.setattr(results, "RETRY_WINDOW_S", 0.5)


def test_connection_dropped_mid_batch_the_batch_is_retried_whole(tmp_path, model_dir, db_url, fast_retries):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(25):
        (folder / f"{index}.jpg").write_bytes(hostile.jpeg(colour=(index * 10, 50, 50)))
    engine = db.ensure_schema(db.engine(db_url))
    # between the results and the run's counters: the worst place, the batch's rows already sent
    dropped = drop_connection_during(engine, "UPDATE tagging_runs SET seen = seen +", 2,
                                     db_url if db_url.startswith("postgresql") else None)
    summary = tag.run(str(folder), predictor.load(model_dir), HashtagEngine(), engine, tag.TagConfig(batch_size=10))
    assert len(dropped) == 2
    assert (summary.status, summary.tagged, summary.seen) == ("succeeded", 25, 25)
    assert_whole(engine, 25)
    assert scalar(engine, "SELECT tagged FROM tagging_runs WHERE run_id = :run_id", run_id=summary.run_id) == 25, \
        "a retried batch is counted once"


def test_connection_that_keeps_dropping_fails_the_run_with_nothing_half_written(tmp_path, model_dir, db_url,
                                                                              fast_retries):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(25):
        (folder / f"{index}.jpg").write_bytes(hostile.jpeg(colour=(index * 10, 50, 50)))
    engine = db.ensure_schema(db.engine(db_url))
    model = predictor.load(model_dir)
    attempts = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count_attempts(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("INSERT INTO image_results"):
            attempts.append(statement)

    drop_connection_during(engine, "UPDATE tagging_runs SET seen = seen +", 1000,
                           db_url if db_url.startswith("postgresql") else None)
    with pytest.raises(tag.RunFailed) as raised:
        tag.run(str(folder), model, HashtagEngine(), engine, tag.TagConfig(batch_size=10))
    summary = raised.value.summary
    assert summary.status == "failed"
    assert "the database did not answer while writing a batch of 10 images" in summary.error
    assert 3 <= len(attempts) < 100, "retried with backoff for RETRY_WINDOW_S, then given up"
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == 0
    assert scalar(engine, "SELECT status FROM tagging_runs WHERE run_id = :run_id",
                  run_id=summary.run_id) == "failed"
    assert scalar(engine, "SELECT error FROM tagging_runs WHERE run_id = :run_id", run_id=summary.run_id)


def photo_folder(tmp_path, count: int) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(count):
        (folder / f"{index:03d}.jpg").write_bytes(hostile.jpeg(colour=(index * 5 % 250, 50, 50)))
    return folder


def test_a_run_that_loses_its_database_reports_exactly_what_it_committed(tmp_path, model_dir, db_url, fast_retries):
    """The database goes away for good after three batches (the run's end cannot be recorded either):
    the printed summary is what was committed, not what was handed to the writer."""
    folder = photo_folder(tmp_path, 60)
    engine = db.ensure_schema(db.engine(db_url))
    admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT") if db_url.startswith("postgresql") else None
    batches = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def gone_after_three_batches(connection, cursor, statement, parameters, context, executemany):
        if len(batches) < 3:
            if statement.lstrip().startswith("UPDATE tagging_runs SET seen = seen +"):
                batches.append(statement)  # the last statement of a batch's transaction
            return
        if admin is not None:
            with admin.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"),
                              {"pid": cursor.connection.get_backend_pid()})
        else:
            import sqlite3

            raise sa.exc.OperationalError(statement, parameters, sqlite3.OperationalError("injected: disk I/O error"))

    with pytest.raises(tag.RunFailed, match="the database did not answer") as raised:
        tag.run(str(folder), predictor.load(model_dir), HashtagEngine(), engine, tag.TagConfig(batch_size=10))
    sa.event.remove(engine, "before_cursor_execute", gone_after_three_batches)
    summary = raised.value.summary
    assert summary.status == "failed"
    assert summary.tagged == summary.seen == scalar(engine, "SELECT COUNT(*) FROM image_results") == 30
    assert scalar(engine, "SELECT status FROM tagging_runs") == "running", "its end could not be recorded"


def test_retries_back_off_with_jitter_for_about_the_window(monkeypatch):
    sleeps = []
    monkeypatch.setattr(results.time, "sleep", sleeps.append)
    clock = iter(range(0, 10_000))  # each look at the clock: one second later
    monkeypatch.setattr(results.time, "monotonic", lambda: float(next(clock)))
    import sqlite3

    def dropped():
        raise sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("server closed the connection"))

    with pytest.raises(results.DatabaseUnavailable, match=r"the database did not answer while testing: \d+ tries"):
        results.retrying(dropped, "testing", window_s=60)
    assert 5 <= len(sleeps) <= 60
    assert all(0 < pause <= results.RETRY_MAX_PAUSE for pause in sleeps)
    assert sleeps[0] <= results.RETRY_PAUSE and max(sleeps) > 2, "pauses grow"
    assert len(set(sleeps)) == len(sleeps), "jittered"


# ------------------------------------------------------------------ drills on a throwaway PostgreSQL
# Its own cluster (initdb, pg_ctl on a free port), stopped, frozen and restarted at will; the shared
# server on 5432 is never touched.

class ThrowawayPostgres:
    def __init__(self):
        import socket
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="hashtagger-drill-"))
        os.chown(self.folder, *_postgres_ids())
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.data = self.folder / "data"
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60", "-o",
                          f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def processes(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def signal(self, number: int) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def throwaway_pg():
    import shutil

    server = ThrowawayPostgres()
    yield server
    server.signal(signal.SIGCONT)
    try:
        server.stop()
    finally:
        db.engine.cache_clear()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def short_timeouts(monkeypatch):
    """The production timeouts, scaled down so that a drill takes seconds, not minutes."""
    monkeypatch.setitem(db.PG_CONNECT_ARGS, "connect_timeout", 2)
    monkeypatch.setattr(db, "STATEMENT_TIMEOUT_S", 3)
    monkeypatch.setattr(db, "WATCHDOG_GRACE_S", 2)
    monkeypatch.setattr(db, "PING_TIMEOUT_S", 3)
    monkeypatch.setattr(results, "RETRY_WINDOW_S", 20.0)
    monkeypatch.setattr(results, "RETRY_MAX_PAUSE", 2.0)


def run_in_thread(folder: Path, engine, model_dir: Path) -> tuple:
    import threading

    outcome: dict = {}

    def work():
        try:
            outcome["summary"] = tag.run(str(folder), predictor.load(model_dir), HashtagEngine(), engine,
                                         tag.TagConfig(batch_size=10, workers=1))
        except tag.RunFailed as failed:
            outcome["failed"] = failed

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 60
    while scalar(engine, "SELECT COUNT(*) FROM image_results") < 20:  # two batches are in
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.02)
    return thread, outcome


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_frozen_for_good_ends_the_run_with_a_clear_message(tmp_path, model_dir, throwaway_pg,
                                                                      short_timeouts):
    folder = photo_folder(tmp_path, 300)
    engine = db.ensure_schema(db.engine(throwaway_pg.url))
    thread, outcome = run_in_thread(folder, engine, model_dir)
    throwaway_pg.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    thread.join(120)
    waited = time.monotonic() - frozen_at
    throwaway_pg.signal(signal.SIGCONT)
    assert not thread.is_alive(), "the run hung on a frozen database"
    assert waited < 60, f"gave up after {waited:.0f} s: the watchdog, then the retry window"
    failed = outcome["failed"]
    assert "the database did not answer" in str(failed)
    committed = scalar(engine, "SELECT COUNT(*) FROM image_results")
    assert failed.summary.tagged == committed, "the summary says what was written"
    again = tag.run(str(folder), predictor.load(model_dir), HashtagEngine(), engine, tag.TagConfig(batch_size=50))
    assert again.tagged == 300 - committed and again.status == "succeeded"
    assert_whole(engine, 300)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("outage", ["frozen for 6 s", "restarted with crash recovery"])
def test_a_database_back_within_the_retry_window_costs_the_run_nothing(tmp_path, model_dir, throwaway_pg,
                                                                         short_timeouts, outage):
    folder = photo_folder(tmp_path, 300)
    engine = db.ensure_schema(db.engine(throwaway_pg.url))
    thread, outcome = run_in_thread(folder, engine, model_dir)
    if outage.startswith("frozen"):
        throwaway_pg.signal(signal.SIGSTOP)
        time.sleep(6)
        throwaway_pg.signal(signal.SIGCONT)
    else:
        throwaway_pg.stop("immediate")  # as a crash: the next start replays the WAL
        time.sleep(1)
        throwaway_pg.start()
    thread.join(120)
    assert not thread.is_alive()
    assert "summary" in outcome, outcome.get("failed")
    summary = outcome["summary"]
    assert (summary.status, summary.tagged) == ("succeeded", 300)
    assert_whole(engine, 300)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_tag_processes_on_one_folder_the_second_says_another_run_is_active(photos, model_dir, db_url, bin_dir):
    engine = db.ensure_schema(db.engine(db_url))
    env = {**os.environ, "HASHTAGGER_DB_URL": db_url}
    # batches of one: the first run lasts long enough for the second to start beside it
    command = [str(bin_dir / "hashtagger"), "tag", str(photos), "--model", str(model_dir), "--batch-size", "1",
               "--workers", "1", "--quiet"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not scalar(engine, "SELECT COUNT(*) FROM image_results"):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the drill needs the first run still going"
        assert second.returncode == 1 and "another run is active on this source" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert f"{IMAGES:,} tagged" in out
    assert scalar(engine, "SELECT COUNT(*) FROM tagging_runs") == 1, "the refused run recorded nothing"
    assert_whole(engine, IMAGES)


@pytest.mark.postgres
def test_postgres_connections_carry_timeouts_and_a_statement_past_its_deadline_is_cut(pg_url, monkeypatch):
    engine = db.engine(pg_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SHOW statement_timeout")).scalar() == f"{db.STATEMENT_TIMEOUT_S // 60}min"
        info = connection.connection.dbapi_connection.get_dsn_parameters()
    assert info["connect_timeout"] == str(db.CONNECT_TIMEOUT_S) and info["keepalives"] == "1"
    # a server that stops answering: here a sleep longer than the client-side deadline, in a transaction
    # begun under the production statement timeout, so that the server's own timeout cannot end it first
    started = None
    with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
        monkeypatch.setattr(db, "STATEMENT_TIMEOUT_S", 1)
        monkeypatch.setattr(db, "WATCHDOG_GRACE_S", 1)
        started = time.monotonic()
        connection.execute(sa.text("SELECT pg_sleep(30)"))
    assert raised.value.connection_invalidated, "a disconnect: the retry helper takes a fresh connection"
    assert time.monotonic() - started < 10
    with engine.connect() as connection:  # the pool recovers by itself
        assert connection.execute(sa.text("SELECT 1")).scalar() == 1
