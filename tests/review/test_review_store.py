"""The answers' tables and views (sql/018_image_reviews.sql) and their SQL (tasks/store/reviews_sql.py), on
PostgreSQL and SQLite: append-only, undo as a retraction row, the queue's order, reviewed accuracy."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
import sqlalchemy as sa

from tasks.store import db, reviews_sql

MODEL = "airbench-cifar10-test"
AT = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.timezone.utc)


def add_result(engine, name: str, label: str | None, top: list[tuple[str, float]], model: str = MODEL) -> None:
    """One tagged image, as tagging writes it (the columns of image_results), in run 'run-1'."""
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO tagging_runs (run_id, run_key, source, model_version, started_at, status) "
            "VALUES ('run-1', 'run-1', '/photos', :model, :at, 'succeeded') ON CONFLICT (run_id) DO NOTHING"),
            {"model": model, "at": AT})
        connection.execute(sa.text(
            "INSERT INTO image_results (image_uri, content_hash, model_version, label, confidence, top_labels, "
            "run_id, tagged_at) VALUES (:uri, :hash, :model, :label, :confidence, :top, 'run-1', :at)"),
            {"uri": f"/photos/{name}.jpg", "hash": f"sha-{name}", "model": model, "label": label,
             "confidence": top[0][1], "top": json.dumps(top), "at": AT})


@pytest.fixture
def engine(results_db_url):
    engine = db.engine(results_db_url)
    add_result(engine, "sure", "cat", [("cat", 0.95), ("dog", 0.03)])
    add_result(engine, "torn", "dog", [("dog", 0.48), ("cat", 0.46)])
    add_result(engine, "blank", None, [("frog", 0.30), ("ship", 0.10)])
    add_result(engine, "close", "ship", [("ship", 0.60), ("airplane", 0.30)])
    return engine


def current(engine) -> dict[str, str | None]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT image_uri, label FROM image_reviews_current")).all()
    return {uri.split("/")[-1][:-4]: label for uri, label in rows}


def test_migration_018_applies_after_016_and_017(results_db_url):
    """The review table's migration comes after the run leases (016) and batch keys (017) of issue 21."""
    recorded = db.applied(db.engine(results_db_url))
    assert sorted(name for name in recorded if name[:3] in ("015", "016", "017", "018")) == [
        "015_name_texts_and_cut_reads", "016_run_leases", "017_run_batch_keys", "018_image_reviews"]
    assert db.require_schema(db.engine(results_db_url))


def test_the_queue_asks_first_what_teaches_most(engine):
    """Abstentions first, then the smallest margin between the two best calibrated probabilities."""
    assert [item.image_uri for item in reviews_sql.queue(engine)] == [
        "/photos/blank.jpg", "/photos/torn.jpg", "/photos/close.jpg", "/photos/sure.jpg"]
    torn = reviews_sql.queue(engine)[1]
    assert torn.margin == pytest.approx(0.02) and torn.candidates == [("dog", 0.48), ("cat", 0.46)]
    assert [item.label for item in reviews_sql.queue(engine, reviews_sql.QueueFilter(label="ship"))] == ["ship"]
    assert reviews_sql.queue(engine, reviews_sql.QueueFilter(run="run-1", source="/photos", model=MODEL), 2)[0] \
        .image_uri == "/photos/blank.jpg"
    assert reviews_sql.queue(engine, reviews_sql.QueueFilter(source="/elsewhere")) == []


def test_answers_are_appended_and_an_undo_is_a_retraction_row(engine):
    reviews_sql.record_answer(engine, "answer-torn-1", "/photos/torn.jpg", "sha-torn", MODEL, "cat", "ana")
    reviews_sql.record_answer(engine, "answer-torn-1", "/photos/torn.jpg", "sha-torn", MODEL, "cat", "ana")  # resent
    with pytest.raises(reviews_sql.ReviewConflict, match="already recorded as 'cat'"):  # resent, changed
        reviews_sql.record_answer(engine, "answer-torn-1", "/photos/torn.jpg", "sha-torn", MODEL, "dog", "ana")
    reviews_sql.record_answer(engine, "answer-blank", "/photos/blank.jpg", "sha-blank", MODEL, None, "ana")
    reviews_sql.record_answer(engine, "answer-torn-2", "/photos/torn.jpg", "sha-torn", MODEL, "deer", "ana")
    assert current(engine) == {"torn": "deer", "blank": None}
    assert reviews_sql.retract(engine, "undo-torn-2", "answer-torn-2", "ana")[0] == "/photos/torn.jpg"
    assert current(engine) == {"torn": "cat", "blank": None}, "the earlier answer stands again"
    with pytest.raises(reviews_sql.ReviewRefused):
        reviews_sql.retract(engine, "undo-again", "answer-torn-2", "ana")  # already retracted
    rows = [(row["review_id"], row["label"], row["retracts"]) for row in reviews_sql.answers(engine)]
    assert rows == [("answer-torn-1", "cat", None), ("answer-blank", None, None), ("answer-torn-2", "deer", None),
                    ("undo-torn-2", None, "answer-torn-2")]
    # reviewed images leave the queue
    assert [item.image_uri for item in reviews_sql.queue(engine)] == ["/photos/close.jpg", "/photos/sure.jpg"]
    for statement in ("UPDATE image_reviews SET label = 'cat'", "DELETE FROM image_reviews"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(sa.text(statement))
    assert len(reviews_sql.answers(engine)) == 4


def test_an_answer_for_an_image_the_database_lacks_is_refused(engine):
    with pytest.raises(reviews_sql.ReviewRefused):
        reviews_sql.record_answer(engine, "answer-x", "/etc/passwd", "sha-x", MODEL, "cat", "ana")
    with pytest.raises(reviews_sql.ReviewRefused):
        reviews_sql.record_answer(engine, "answer-y", "/photos/torn.jpg", "sha-torn", "other-model", "cat", "ana")
    assert reviews_sql.answers(engine) == []


def test_the_reviewed_label_shows_over_the_models_with_its_source(engine):
    reviews_sql.record_answer(engine, "answer-torn", "/photos/torn.jpg", "sha-torn", MODEL, "cat", "ana")
    reviews_sql.record_answer(engine, "answer-close", "/photos/close.jpg", "sha-close", MODEL, None, "ana")
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT image_uri, label, label_source, model_label, reviewer FROM image_labels_reviewed "
            "ORDER BY image_uri")).all()
    assert [tuple(row) for row in rows] == [
        ("/photos/blank.jpg", None, "model", None, None), ("/photos/close.jpg", None, "review", "ship", "ana"),
        ("/photos/sure.jpg", "cat", "model", "cat", None), ("/photos/torn.jpg", "cat", "review", "dog", "ana")]


def wilson(agreed: int, count: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval, from its textbook formula."""
    p = agreed / count
    centre, spread = p + z * z / (2 * count), z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count))
    return (centre - spread) / (1 + z * z / count), (centre + spread) / (1 + z * z / count)


def test_reviewed_accuracy_per_model_with_a_wilson_interval(engine):
    for name, label in (("sure", "cat"), ("torn", "cat"), ("blank", None), ("close", "ship")):
        reviews_sql.record_answer(engine, f"answer-{name}", f"/photos/{name}.jpg", f"sha-{name}", MODEL, label, "ana")
    [row] = reviews_sql.reviewed_accuracy(engine)
    # sure and close agree, blank's abstention agrees with "none", torn (dog) does not
    assert (row["model_version"], row["reviewed"], row["agreed"]) == (MODEL, 4, 3)
    assert row["accuracy"] == pytest.approx(0.75)
    assert (row["wilson_low"], row["wilson_high"]) == pytest.approx(wilson(3, 4), abs=1e-4)
