"""Reads of tagging runs and their results, for the run summaries people and the DAGs see.

Column names are the database's (`model_version` names the model there, a stable interface of the
views); what leaves this module says `model_id`, the code's name for the same thing.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from tasks.store import counts

SHARD_RUNS = sa.text(f"""
SELECT run_id, model_version, status, {counts.COLUMNS} FROM tagging_runs
WHERE run_id IN :run_ids ORDER BY run_id
""").bindparams(sa.bindparam("run_ids", expanding=True))
RUN_IMAGES = sa.text("""
SELECT image_uri, content_hash, model_version, label, confidence, COALESCE(uri_text, image_uri) AS image_text,
       hashtags
FROM image_results WHERE run_id = :run_id ORDER BY image_uri LIMIT :n
""")
RUN_FAILURES = sa.text("""
SELECT image_uri, reason FROM failed_images WHERE run_id = :run_id ORDER BY image_uri LIMIT :n
""")
# The run page's reads (tasks/tag/report.py): every row of the runs, with the escaped text of hashed keys.
PAGE_RUNS = sa.text(f"""
SELECT run_id, source, model_version, started_at, finished_at, {counts.COLUMNS}, status, error
FROM tagging_runs WHERE run_id IN :ids
""").bindparams(sa.bindparam("ids", expanding=True))
PAGE_IMAGES = sa.text("""
SELECT image_uri, label, confidence, model_version, hashtags, uri_text, top_labels FROM image_results
WHERE run_id IN :ids ORDER BY image_uri
""").bindparams(sa.bindparam("ids", expanding=True))
PAGE_FAILURES = sa.text("""
SELECT COALESCE(uri_text, image_uri), reason FROM image_failures WHERE run_id IN :ids ORDER BY image_uri
""").bindparams(sa.bindparam("ids", expanding=True))


def overall_status(statuses: list[str]) -> str:
    """One status for several runs (a nightly run's shards): succeeded when all did, succeeded_with_failures
    when all finished and some had failed images, else every distinct status, comma-separated."""
    distinct = set(statuses)
    if distinct <= {"succeeded"}:
        return "succeeded"
    if distinct <= {"succeeded", "succeeded_with_failures"}:
        return "succeeded_with_failures"
    return ",".join(sorted(distinct))


def page_runs(engine: sa.Engine, run_ids: list[str]) -> dict[str, dict]:
    """{run_id: its tagging_runs row} of the runs that exist (columns as in the table)."""
    with engine.connect() as connection:
        return {row["run_id"]: dict(row) for row in connection.execute(PAGE_RUNS, {"ids": run_ids}).mappings()}


def page_images(engine: sa.Engine, run_ids: list[str], hashtags: int) -> list[tuple]:
    """(image_uri, label, confidence, model_version, [hashtag, ...], uri_text, [(candidate label,
    probability), ...]) of every image the runs tagged, by key; at most `hashtags` ranked hashtags each."""
    with engine.connect() as connection:
        rows = connection.execute(PAGE_IMAGES, {"ids": run_ids}).all()
    return [(uri, label, confidence, model, ranked_hashtags(stored, hashtags), text,
             [(name, float(probability)) for name, probability in json.loads(top or "[]")])
            for uri, label, confidence, model, stored, text, top in rows]


def page_failures(engine: sa.Engine, run_ids: list[str]) -> list[tuple[str, str]]:
    """(readable URI, reason) of every image the runs could not tag, by key."""
    with engine.connect() as connection:
        return [(uri, reason) for uri, reason in connection.execute(PAGE_FAILURES, {"ids": run_ids})]


def runs(engine: sa.Engine, run_ids: list[str]) -> list[dict]:
    """The tagging_runs rows of these run ids (missing ones are left out), with `model_id`."""
    if not run_ids:  # an empty IN list: PostgreSQL cannot type it (a night with no work has no runs)
        return []
    with engine.connect() as connection:
        rows = connection.execute(SHARD_RUNS, {"run_ids": run_ids}).mappings()
        return [_model_id(dict(row)) for row in rows]


def run_images(engine: sa.Engine, run_id: str, limit: int, hashtags: int = 5) -> list[dict]:
    """Up to `limit` images a run tagged, by key: image_uri (the key), image_text (the readable name),
    label, confidence, model_id, their first `hashtags` hashtags and hashtags_stored (how many the image has)."""
    with engine.connect() as connection:
        images = [_model_id(dict(row)) for row in
                  connection.execute(RUN_IMAGES, {"run_id": run_id, "n": limit}).mappings()]
    for image in images:
        image["hashtags_stored"] = len(json.loads(image["hashtags"] or "[]"))
        image["hashtags"] = ranked_hashtags(image["hashtags"], hashtags)
    return images


def run_failures(engine: sa.Engine, run_id: str, limit: int) -> list[tuple[str, str]]:
    """Up to `limit` (uri, reason) of the images a run could not tag, by URI."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(RUN_FAILURES, {"run_id": run_id, "n": limit})]


def ranked_hashtags(stored: str | None, count: int) -> list[str]:
    """The first `count` hashtags of an image_results.hashtags array (JSON text, best first)."""
    ranked = sorted(json.loads(stored or "[]"), key=lambda tag: tag["rank"])
    return [tag["hashtag"] for tag in ranked[:count]]


def _model_id(row: dict) -> dict:
    row["model_id"] = row.pop("model_version")
    return row
