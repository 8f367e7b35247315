"""Reads of tagging runs and their results, for the run summaries people and the DAGs see.

Column names are the database's (`model_version` names the model there, a stable interface of the
views); what leaves this module says `model_id`, the code's name for the same thing.
"""

from __future__ import annotations

import sqlalchemy as sa

SHARD_RUNS = sa.text("""
SELECT run_id, model_version, status, seen, tagged, skipped, failed FROM tagging_runs
WHERE run_id IN :run_ids ORDER BY run_id
""").bindparams(sa.bindparam("run_ids", expanding=True))
RUN_IMAGES = sa.text("""
SELECT image_uri, content_hash, model_version, label, confidence FROM image_results
WHERE run_id = :run_id ORDER BY image_uri LIMIT :n
""")
RUN_FAILURES = sa.text("""
SELECT image_uri, reason FROM failed_images WHERE run_id = :run_id ORDER BY image_uri LIMIT :n
""")
IMAGE_HASHTAGS = sa.text("""
SELECT hashtag FROM image_hashtags
WHERE image_uri = :uri AND content_hash = :hash AND model_version = :model ORDER BY hashtag_rank LIMIT :n
""")


def runs(engine: sa.Engine, run_ids: list[str]) -> list[dict]:
    """The tagging_runs rows of these run ids (missing ones are left out), with `model_id`."""
    with engine.connect() as connection:
        rows = connection.execute(SHARD_RUNS, {"run_ids": run_ids}).mappings()
        return [_model_id(dict(row)) for row in rows]


def run_images(engine: sa.Engine, run_id: str, limit: int, hashtags: int = 5) -> list[dict]:
    """Up to `limit` images a run tagged, by URI: uri, label, confidence, model_id and their first hashtags."""
    with engine.connect() as connection:
        images = [_model_id(dict(row)) for row in
                  connection.execute(RUN_IMAGES, {"run_id": run_id, "n": limit}).mappings()]
        for image in images:
            image["hashtags"] = connection.execute(IMAGE_HASHTAGS, {
                "uri": image["image_uri"], "hash": image["content_hash"], "model": image["model_id"],
                "n": hashtags}).scalars().all()
    return images


def run_failures(engine: sa.Engine, run_id: str, limit: int) -> list[tuple[str, str]]:
    """Up to `limit` (uri, reason) of the images a run could not tag, by URI."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(RUN_FAILURES, {"run_id": run_id, "n": limit})]


def _model_id(row: dict) -> dict:
    row["model_id"] = row.pop("model_version")
    return row
