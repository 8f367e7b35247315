"""A server that stops answering at COMMIT (issue 21 item 5): the run goes on within a bound, its counts
are not doubled when the lost COMMIT had taken effect, and no image is lost. The stall is a TCP proxy
(tests/fixtures/pgproxy.py) in front of the shared server; the batch key is checked on SQLite too."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from fixtures import hostile
from fixtures.pgproxy import PgProxy
from tasks.hashtags.engine import HashtagEngine
from tasks.store import db, results
from tasks.tag import predictor, tag

IMAGES, BATCH = 60, 10


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for index in range(IMAGES):
        (folder / f"photo {index:02d}.jpg").write_bytes(hostile.noisy_jpeg((96, 72), seed=index))
    return folder


@pytest.fixture
def proxy():
    server = PgProxy()
    yield server
    server.close()
    db.engine.cache_clear()


@pytest.fixture
def short_timeouts(monkeypatch):
    """The production deadlines scaled down, so that a stalled COMMIT is cut after 5 s, not 135 s."""
    monkeypatch.setattr(db, "STATEMENT_TIMEOUT_S", 3)
    monkeypatch.setattr(db, "WATCHDOG_GRACE_S", 2)
    monkeypatch.setattr(db, "PING_TIMEOUT_S", 3)
    monkeypatch.setattr(results, "RETRY_WINDOW_S", 20.0)
    monkeypatch.setattr(results, "RETRY_MAX_PAUSE", 2.0)


def scalar(engine, sql: str):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql)).scalar()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["answer_lost", "never_sent"])
def test_a_commit_that_never_answers_costs_the_run_seconds_and_no_image_or_count(
        pg_url, proxy, short_timeouts, photos, model_dir, mode):
    direct = db.ensure_schema(db.engine(pg_url))
    engine = db.engine(proxy.url(sa.engine.make_url(pg_url).database))
    # the first batch's COMMIT: after it, the server holds it (answer_lost) or never saw it (never_sent)
    proxy.arm(mode, "INSERT INTO image_results", times=1)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=tag.run(
        str(photos), predictor.load(model_dir), HashtagEngine(), engine, tag.TagConfig(batch_size=BATCH, workers=1))))
    started = time.monotonic()
    thread.start()
    thread.join(90)
    took = time.monotonic() - started
    assert not thread.is_alive(), "the run hung at a COMMIT that never answered"
    assert proxy.stalled == 1
    summary = outcome["summary"]
    assert (summary.status, summary.seen, summary.tagged) == ("succeeded", IMAGES, IMAGES)
    assert took < 60, f"{took:.0f} s: one COMMIT deadline (5 s) and a retry"
    assert scalar(direct, "SELECT seen FROM tagging_runs") == IMAGES, "counts added once per batch"
    assert scalar(direct, "SELECT tagged FROM tagging_runs") == IMAGES
    assert scalar(direct, "SELECT COUNT(DISTINCT image_uri) FROM image_results") == IMAGES, "no image lost"
    assert scalar(direct, "SELECT COUNT(*) FROM image_results") == IMAGES
    assert scalar(direct, "SELECT COUNT(*) FROM run_batches") == 0, "the batch keys are forgotten once the run ended"


def test_a_batch_written_again_under_its_key_is_counted_once(results_db_url):
    """The retry after a COMMIT whose outcome was unknown, and which had taken effect."""
    engine = db.engine(results_db_url)
    results.start_run(engine, "run-1", "/photos", "tiny")
    tagged = [results.Tagged(f"/photos/{index}.jpg", f"sha256:{index}", [("cat", 0.9)], []) for index in range(3)]
    failed = [results.Failed("/photos/broken.jpg", "sha256:b", "truncated")]
    for _ in range(2):
        results.write_batch(engine, "run-1", "tiny", tagged, failed, skipped=2, batch_no=0)
    results.write_batch(engine, "run-1", "tiny", tagged[:1], [], skipped=0, batch_no=1)
    run = results.finish_run(engine, "run-1", "succeeded")
    assert (run["seen"], run["tagged"], run["failed"], run["skipped"]) == (7, 4, 1, 2)
    assert scalar(engine, "SELECT COUNT(*) FROM image_results") == 3
    results.start_run(engine, "run-1", "/photos", "tiny")  # the same run id again counts afresh
    results.write_batch(engine, "run-1", "tiny", tagged, [], skipped=0, batch_no=0)
    assert scalar(engine, "SELECT seen FROM tagging_runs") == 3
