"""People's answers about images (sql/018_image_reviews.sql): the review queue, the append-only writes of
answers and retractions, and the reads the review app and the run page make.

The image key (image_uri) and content hash name an image as image_results does; a request's values
only ever reach the database as bind parameters, and a file is read only for a row found here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import sqlalchemy as sa

from tasks.store import db


class ReviewRefused(ValueError):
    """An answer that cannot be recorded: an image or model the results database does not hold, a label
    that is not one of the model's classes, or a retraction of something that is not a standing answer."""


class ReviewConflict(ReviewRefused):
    """A review id sent again with another answer: answers are never changed (undo, then answer again)."""


@dataclasses.dataclass(frozen=True)
class QueueFilter:
    """Which images the queue shows; None: any. `run` matches a run id or a nightly run's key."""
    run: str | None = None
    source: str | None = None  # the tagging run's source: a folder or s3://bucket/prefix
    label: str | None = None  # the model's label (abstentions have none)
    model: str | None = None  # the model version that tagged it


@dataclasses.dataclass(frozen=True)
class QueueItem:
    """One image to review, as the current model tagged it."""
    image_uri: str  # the key in image_results
    content_hash: str
    model_version: str
    label: str | None  # None: the model abstained
    confidence: float  # the top calibrated probability, in [0, 1]
    candidates: list[tuple[str, float]]  # (label, calibrated probability), best first
    text: str  # the name for people (uri_text of a hashed or escaped key, else the key)
    run_id: str
    margin: float  # top-1 minus top-2 probability: small is uncertain


_TEXT = sa.String()
QUEUE = sa.text("""
SELECT image_uri, content_hash, model_version, label, confidence, top_labels, uri_text, run_id, margin
FROM image_review_queue
WHERE reviewed = 0
  AND (:run IS NULL OR run_id = :run OR run_key = :run) AND (:source IS NULL OR source = :source)
  AND (:label IS NULL OR label = :label) AND (:model IS NULL OR model_version = :model)
ORDER BY abstained DESC, margin ASC, image_uri, content_hash
LIMIT :limit
""").bindparams(*(sa.bindparam(name, type_=_TEXT) for name in ("run", "source", "label", "model")))
# the row a picture is read through: its key, its exact name's text and the source of the run that tagged it
PICTURE = sa.text("""
SELECT r.image_uri, r.uri_text, t.source
FROM image_results r JOIN tagging_runs t ON t.run_id = r.run_id
WHERE r.image_uri = :uri AND r.content_hash = :hash
ORDER BY r.tagged_at DESC
LIMIT 1
""")
RESULT_EXISTS = sa.text("""
SELECT 1 FROM image_results WHERE image_uri = :uri AND content_hash = :hash AND model_version = :model
""")
MODEL_DATASETS = sa.text("SELECT model_id, dataset FROM models WHERE model_id IN :models").bindparams(
    sa.bindparam("models", expanding=True))
INSERT_REVIEW = sa.text("""
INSERT INTO image_reviews (review_id, image_uri, content_hash, model_version, label, retracts, reviewer, reviewed_at)
VALUES (:review_id, :uri, :hash, :model, :label, :retracts, :reviewer, :at)
ON CONFLICT (review_id) DO NOTHING
""")
# a standing answer: one that retracts nothing and that nothing has retracted yet
STANDING_ANSWER = sa.text("""
SELECT image_uri, content_hash, model_version FROM image_reviews a
WHERE a.review_id = :review_id AND a.retracts IS NULL
  AND NOT EXISTS (SELECT 1 FROM image_reviews x WHERE x.retracts = a.review_id)
""")
ANSWERS = sa.text("""
SELECT review_id, image_uri, content_hash, model_version, label, retracts, reviewer
FROM image_reviews ORDER BY review_seq
""")
# the answer that stands for each reviewed image (latest, not retracted), with the name people read
STANDING = sa.text("""
SELECT c.review_id, c.image_uri, c.content_hash, c.model_version, c.label, c.reviewer, c.reviewed_at,
       (SELECT r.uri_text FROM image_results r WHERE r.image_uri = c.image_uri AND r.content_hash = c.content_hash
        ORDER BY r.tagged_at DESC LIMIT 1) AS uri_text
FROM image_reviews_current c
ORDER BY c.image_uri, c.content_hash
""")
FILTER_CHOICES = sa.text("""
SELECT DISTINCT COALESCE(run_key, run_id) AS run, source, model_version FROM tagging_runs
""")


def queue(engine: sa.Engine, where: QueueFilter = QueueFilter(), limit: int = 200) -> list[QueueItem]:
    """Up to `limit` unreviewed images, the most instructive first: abstentions, then the smallest margin
    between the two best calibrated probabilities (ordered by the database, view image_review_queue)."""
    params = dict(dataclasses.asdict(where), limit=limit)
    with engine.connect() as connection:
        rows = connection.execute(QUEUE, params).all()
    return [QueueItem(row.image_uri, row.content_hash, row.model_version, row.label, float(row.confidence),
                      [(name, float(probability)) for name, probability in json.loads(row.top_labels or "[]")],
                      row.uri_text or row.image_uri, row.run_id, float(row.margin))
            for row in rows]


def picture_row(engine: sa.Engine, image_uri: str, content_hash: str) -> tuple[str, str | None, str] | None:
    """(key, uri_text, source) of an image the results database holds, or None when it holds none."""
    with engine.connect() as connection:
        row = connection.execute(PICTURE, {"uri": image_uri, "hash": content_hash}).first()
    return None if row is None else (row.image_uri, row.uri_text, row.source)


def model_datasets(engine: sa.Engine, model_versions: list[str]) -> dict[str, str]:
    """{model version: its dataset ('cifar10', 'cifar100')} for the versions the model registry knows."""
    if not model_versions:
        return {}
    with engine.connect() as connection:
        return dict(connection.execute(MODEL_DATASETS, {"models": sorted(set(model_versions))}).all())


def record_answer(engine: sa.Engine, review_id: str, image_uri: str, content_hash: str, model_version: str,
                  label: str | None, reviewer: str, at: dt.datetime | None = None) -> None:
    """Append a person's answer (label None: none of the model's classes). Idempotent on review_id: the
    same answer again changes nothing.

    ReviewRefused when image_results holds no such image for that model; ReviewConflict when `review_id`
    already holds another answer.
    """
    with engine.begin() as connection:
        known = connection.execute(RESULT_EXISTS, {"uri": image_uri, "hash": content_hash,
                                                   "model": model_version}).first()
        if known is None:
            raise ReviewRefused("the results database holds no such image for that model")
        connection.execute(INSERT_REVIEW, {"review_id": review_id, "uri": image_uri, "hash": content_hash,
                                           "model": model_version, "label": label, "retracts": None,
                                           "reviewer": reviewer, "at": at or db.utcnow()})
        stored = connection.execute(sa.text(
            "SELECT image_uri, content_hash, model_version, label, retracts FROM image_reviews "
            "WHERE review_id = :id"), {"id": review_id}).first()
        if tuple(stored) != (image_uri, content_hash, model_version, label, None):
            raise ReviewConflict(f"answer {review_id} is already recorded as {stored.label or 'none of these'!r} "
                                 f"for {stored.image_uri}: an answer never changes (undo it, then answer again)")


def retract(engine: sa.Engine, review_id: str, answer_id: str, reviewer: str,
            at: dt.datetime | None = None) -> tuple[str, str, str]:
    """Append a row `review_id` that retracts the standing answer `answer_id` (an undo); returns the
    answer's (image key, content hash, model version). Idempotent on review_id.

    ReviewRefused when `answer_id` is no standing answer (unknown, a retraction, or already retracted).
    """
    with engine.begin() as connection:
        if connection.execute(sa.text("SELECT 1 FROM image_reviews WHERE review_id = :id"),
                              {"id": review_id}).first():
            return _image_of(connection, answer_id)  # this very retraction was written before
        answer = connection.execute(STANDING_ANSWER, {"review_id": answer_id}).first()
        if answer is None:
            raise ReviewRefused(f"no standing answer {answer_id!r} to retract")
        connection.execute(INSERT_REVIEW, {"review_id": review_id, "uri": answer.image_uri,
                                           "hash": answer.content_hash, "model": answer.model_version,
                                           "label": None, "retracts": answer_id, "reviewer": reviewer,
                                           "at": at or db.utcnow()})
    return answer.image_uri, answer.content_hash, answer.model_version


def _image_of(connection, review_id: str) -> tuple[str, str, str]:
    row = connection.execute(sa.text("SELECT image_uri, content_hash, model_version FROM image_reviews "
                                     "WHERE review_id = :id"), {"id": review_id}).first()
    if row is None:
        raise ReviewRefused(f"no answer {review_id!r}")
    return row.image_uri, row.content_hash, row.model_version


def answers(engine: sa.Engine) -> list[dict]:
    """Every image_reviews row in the order written (answers and retractions alike)."""
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(ANSWERS).mappings()]


def standing_answers(engine: sa.Engine) -> list[dict]:
    """One row per reviewed image whose answer stands (the latest one not retracted; view
    image_reviews_current): review_id, image_uri, content_hash, model_version, label (None: none of
    the classes), reviewer, reviewed_at, uri_text (the name people read, None when the key is it)."""
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(STANDING).mappings()]


def filter_choices(engine: sa.Engine) -> dict[str, list[str]]:
    """The runs (nightly keys or run ids), sources and model versions tagging_runs holds, sorted."""
    with engine.connect() as connection:
        rows = connection.execute(FILTER_CHOICES).all()
    return {"run": sorted({row.run for row in rows}), "source": sorted({row.source for row in rows}),
            "model": sorted({row.model_version for row in rows})}


def reviewed_accuracy(engine: sa.Engine) -> list[dict]:
    """Per model version that tagged a reviewed image: reviewed (count), agreed, accuracy and the Wilson
    95% interval (wilson_low, wilson_high), all in [0, 1]; sql/queries/reviewed_accuracy.sql."""
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(sa.text(db.query_text("reviewed_accuracy"))).mappings()]
