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

from fixtures import hostile, tiny_model
from tasks.store import db
from tasks.tag import predictor
from tasks.store import results
from tasks.tag import tag
from tasks.hashtags.engine import HashtagEngine

IMAGES = 600


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """600 photo-like 640x480 JPEGs (20 distinct pictures), slow enough to decode to be killed mid-run."""
    folder = tmp_path_factory.mktemp("photos")
    pictures = [hostile.noisy_jpeg(seed=seed) for seed in range(20)]
    for index in range(IMAGES):
        (folder / f"photo {index:03d}.jpg").write_bytes(pictures[index % 20])
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model.build(tmp_path_factory.mktemp("model") / "tiny")


def scalar(engine, sql: str, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def assert_whole(engine, images: int) -> None:
    """Exactly one result per image, none missing, none without its hashtags, no stray hashtags."""
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == images
    assert scalar(engine, "SELECT COUNT(DISTINCT image_uri) FROM image_results") == images
    assert scalar(engine, "SELECT COUNT(*) FROM image_results r WHERE NOT EXISTS (SELECT 1 FROM image_hashtags h "
                          "WHERE h.image_uri = r.image_uri AND h.content_hash = r.content_hash)") == 0
    assert scalar(engine, "SELECT COUNT(*) FROM image_hashtags h WHERE NOT EXISTS (SELECT 1 FROM image_results r "
                          "WHERE h.image_uri = r.image_uri AND h.content_hash = r.content_hash)") == 0
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
    # between the results and their hashtags: the worst place, half of the batch already sent
    dropped = drop_connection_during(engine, "INSERT INTO image_hashtags", 2,
                                     db_url if db_url.startswith("postgresql") else None)
    summary = tag.run(str(folder), predictor.load(model_dir), HashtagEngine(), engine, tag.TagConfig(batch_size=10))
    assert len(dropped) == 2
    assert (summary["status"], summary["tagged"], summary["seen"]) == ("succeeded", 25, 25)
    assert_whole(engine, 25)
    assert scalar(engine, "SELECT tagged FROM tagging_runs WHERE run_id = :run_id", run_id=summary["run_id"]) == 25, \
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

    drop_connection_during(engine, "INSERT INTO image_hashtags", 1000,
                           db_url if db_url.startswith("postgresql") else None)
    with pytest.raises(tag.RunFailed) as raised:
        tag.run(str(folder), model, HashtagEngine(), engine, tag.TagConfig(batch_size=10))
    summary = raised.value.summary
    assert summary["status"] == "failed"
    assert "the database did not answer while writing a batch of 10 images" in summary["error"]
    assert 3 <= len(attempts) < 100, "retried with backoff for RETRY_WINDOW_S, then given up"
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == 0
    assert scalar(engine, "SELECT status FROM tagging_runs WHERE run_id = :run_id",
                  run_id=summary["run_id"]) == "failed"
    assert scalar(engine, "SELECT error FROM tagging_runs WHERE run_id = :run_id", run_id=summary["run_id"])


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
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": cursor.connection.get_backend_pid()})
        else:
            import sqlite3

            raise sa.exc.OperationalError(statement, parameters, sqlite3.OperationalError("injected: disk I/O error"))

    with pytest.raises(tag.RunFailed, match="the database did not answer") as raised:
        tag.run(str(folder), predictor.load(model_dir), HashtagEngine(), engine, tag.TagConfig(batch_size=10))
    sa.event.remove(engine, "before_cursor_execute", gone_after_three_batches)
    summary = raised.value.summary
    assert summary["status"] == "failed"
    assert summary["tagged"] == summary["seen"] == scalar(engine, "SELECT COUNT(*) FROM image_results") == 30
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
