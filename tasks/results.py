"""Writes of tagging results: upserts keyed on natural keys, with bind parameters, one batch a transaction."""

from __future__ import annotations

import dataclasses
import json

import sqlalchemy as sa

from tasks.db import utcnow
from tasks.hashtags.rank import RankedHashtag


@dataclasses.dataclass(frozen=True)
class Tagged:
    uri: str
    content_hash: str
    top_labels: list[tuple[str, float]]
    hashtags: list[RankedHashtag]


@dataclasses.dataclass(frozen=True)
class Failed:
    uri: str
    content_hash: str  # '' when the bytes could not be read
    reason: str


UPSERT_RESULT = sa.text("""
INSERT INTO image_results (image_uri, content_hash, model_version, label, confidence, top_labels, run_id, tagged_at)
VALUES (:uri, :hash, :model, :label, :confidence, :top_labels, :run_id, :at)
ON CONFLICT (image_uri, content_hash, model_version) DO UPDATE SET
  label = excluded.label, confidence = excluded.confidence, top_labels = excluded.top_labels,
  run_id = excluded.run_id, tagged_at = excluded.tagged_at
""")
UPSERT_HASHTAG = sa.text("""
INSERT INTO image_hashtags (image_uri, content_hash, model_version, hashtag_rank, hashtag, label, confidence,
                            score, hashtag_source)
VALUES (:uri, :hash, :model, :rank, :hashtag, :label, :confidence, :score, :source)
ON CONFLICT (image_uri, content_hash, model_version, hashtag_rank) DO UPDATE SET
  hashtag = excluded.hashtag, label = excluded.label, confidence = excluded.confidence,
  score = excluded.score, hashtag_source = excluded.hashtag_source
""")
TRIM_HASHTAGS = sa.text("""
DELETE FROM image_hashtags
WHERE image_uri = :uri AND content_hash = :hash AND model_version = :model AND hashtag_rank > :keep
""")
UPSERT_FAILURE = sa.text("""
INSERT INTO image_failures (image_uri, content_hash, reason, run_id, failed_at)
VALUES (:uri, :hash, :reason, :run_id, :at)
ON CONFLICT (image_uri, content_hash) DO UPDATE SET
  reason = excluded.reason, run_id = excluded.run_id, failed_at = excluded.failed_at
""")
DONE_KEYS = sa.text("""
SELECT image_uri, content_hash FROM image_results
WHERE (model_version = :model OR NOT :retag) AND image_uri IN :uris
UNION
SELECT image_uri, content_hash FROM image_failures
WHERE content_hash <> '' AND image_uri IN :uris
""").bindparams(sa.bindparam("uris", expanding=True))
UPSERT_RUN = sa.text("""
INSERT INTO tagging_runs (run_id, source, model_version, started_at, status)
VALUES (:run_id, :source, :model, :at, 'running')
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL
""")
ADD_COUNTS = sa.text("""
UPDATE tagging_runs SET seen = seen + :seen, tagged = tagged + :tagged, skipped = skipped + :skipped,
                        failed = failed + :failed
WHERE run_id = :run_id
""")
FINISH_RUN = sa.text("""
UPDATE tagging_runs SET status = :status, finished_at = :at WHERE run_id = :run_id
""")
RESET_COUNTS = sa.text("""
UPDATE tagging_runs SET seen = 0, tagged = 0, skipped = 0, failed = 0 WHERE run_id = :run_id
""")


def done_keys(connection, model_version: str, uris: list[str], retag: bool) -> set[tuple[str, str]]:
    """(uri, content hash) pairs needing no work: already tagged (by this model, when re-tagging),
    or failed on these very bytes (a decode failure does not change until the bytes do)."""
    if not uris:
        return set()
    rows = connection.execute(DONE_KEYS, {"model": model_version, "uris": uris, "retag": retag})
    return {(row[0], row[1]) for row in rows}


def start_run(engine: sa.Engine, run_id: str, source: str, model_version: str) -> None:
    """Record the run; starting the same run id again resets its counters (a rerun counts afresh)."""
    with engine.begin() as connection:
        connection.execute(UPSERT_RUN, {"run_id": run_id, "source": source, "model": model_version,
                                        "at": utcnow()})
        connection.execute(RESET_COUNTS, {"run_id": run_id})


def write_batch(engine: sa.Engine, run_id: str, model_version: str, tagged: list[Tagged],
                failed: list[Failed], skipped: int) -> None:
    """One transaction: results, hashtags, failures and the run's counters, all or nothing."""
    now = utcnow()
    result_rows, hashtag_rows, trims = [], [], []
    for item in tagged:
        label, confidence = item.top_labels[0]
        result_rows.append({"uri": item.uri, "hash": item.content_hash, "model": model_version,
                            "label": label, "confidence": confidence,
                            "top_labels": json.dumps([[name, round(p, 6)] for name, p in item.top_labels]),
                            "run_id": run_id, "at": now})
        trims.append({"uri": item.uri, "hash": item.content_hash, "model": model_version,
                      "keep": len(item.hashtags)})
        hashtag_rows.extend({"uri": item.uri, "hash": item.content_hash, "model": model_version,
                             "rank": tag.rank, "hashtag": tag.hashtag, "label": tag.label,
                             "confidence": tag.confidence, "score": tag.score, "source": tag.source}
                            for tag in item.hashtags)
    failure_rows = [{"uri": item.uri, "hash": item.content_hash, "reason": item.reason, "run_id": run_id,
                     "at": now} for item in failed]
    with engine.begin() as connection:
        if result_rows:
            connection.execute(UPSERT_RESULT, result_rows)
            connection.execute(TRIM_HASHTAGS, trims)
        if hashtag_rows:
            connection.execute(UPSERT_HASHTAG, hashtag_rows)
        if failure_rows:
            connection.execute(UPSERT_FAILURE, failure_rows)
        connection.execute(ADD_COUNTS, {"run_id": run_id, "seen": len(tagged) + len(failed) + skipped,
                                        "tagged": len(tagged), "skipped": skipped, "failed": len(failed)})


def finish_run(engine: sa.Engine, run_id: str, status: str) -> dict:
    with engine.begin() as connection:
        connection.execute(FINISH_RUN, {"run_id": run_id, "status": status, "at": utcnow()})
        row = connection.execute(sa.text("SELECT * FROM tagging_runs WHERE run_id = :run_id"),
                                 {"run_id": run_id}).mappings().one()
    return dict(row)
