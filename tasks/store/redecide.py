"""A new abstention threshold applied to stored results (`hashtagger tag --min-confidence`): decided again
from the stored scores and candidates, without running the model. Moved out of tasks/store/results.py
(which writes the results) so that each module stays one concern of a few hundred lines.
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from tasks.store.results import hashtags_json, retrying

log = logging.getLogger(__name__)

# This model's stored results under one source whose decision a threshold changes: no label but a score
# at or above it, or a label with a score below it. `confidence` is the score (the top calibrated
# probability); a blank picture is stored with a score of 0 and never gains a label. The source is the
# readable URI (uri_text for hashed keys): the source's URI itself (a single file) or under its prefix.
REDECIDE_ROWS = sa.text("""
SELECT image_uri, content_hash, confidence, top_labels, uri_text FROM image_results
WHERE model_version = :model
  AND ((label IS NULL AND confidence >= :threshold AND confidence > 0)
       OR (label IS NOT NULL AND confidence < :threshold))
  AND (COALESCE(uri_text, image_uri) = :source
       OR substr(COALESCE(uri_text, image_uri), 1, :prefix_length) = :prefix)
""")
# The decision changes in place: the row keeps its run_id and tagged_at, the record of which run tagged
# the image and when (a threshold applied later is not a new tagging of the image).
REDECIDE_ONE = sa.text("""
UPDATE image_results SET label = :label, hashtags = :hashtags
WHERE image_uri = :uri AND content_hash = :hash AND model_version = :model
""")
REDECIDE_PAGE = 500  # rows per transaction


def source_prefix(source_uri: str) -> str:
    """What the keys of a source's images start with: a bucket's prefix as S3 lists it, a folder's path
    and a slash (so /photos is not /photos2)."""
    if source_uri.startswith("s3://") or source_uri.endswith("/"):
        return source_uri
    return source_uri + "/"


def redecide(engine: sa.Engine, predictor, hashtags, min_confidence: float, source_uri: str,
             keep=lambda key: True) -> int:
    """Apply a new abstention threshold to the stored results of `predictor`'s model under `source_uri`
    whose key `keep(key)` accepts (a run's shard) and whose decision it changes, from the stored scores and
    candidates: no model call. An image that gains a label gets its hashtags (from its stored top labels;
    CIFAR-100 superclasses are not stored, so none of theirs); one that loses it loses them. Results of
    other sources are left alone, and every result keeps the run that tagged it. Returns how many changed."""
    prefix = source_prefix(source_uri)

    def read() -> list:
        with engine.connect() as connection:
            return connection.execute(REDECIDE_ROWS, {
                "model": predictor.model_id, "threshold": min_confidence, "source": source_uri,
                "prefix": prefix, "prefix_length": len(prefix)}).mappings().all()

    changed = []
    for row in retrying(read, "reading stored scores"):
        if not keep(row["image_uri"]):
            continue
        top = [(name, float(probability)) for name, probability in json.loads(row["top_labels"])]
        abstained = row["confidence"] < min_confidence
        changed.append({"uri": row["image_uri"], "hash": row["content_hash"], "model": predictor.model_id,
                        "label": None if abstained else top[0][0],
                        "hashtags": hashtags_json([] if abstained else hashtags.hashtags(top))})
    for start in range(0, len(changed), REDECIDE_PAGE):
        page = changed[start:start + REDECIDE_PAGE]

        def transaction(page=page) -> None:
            with engine.begin() as connection:
                connection.execute(REDECIDE_ONE, page)

        retrying(transaction, f"re-deciding {len(page)} stored results")
    if changed:
        log.info("re-decided %d stored results of %s under %s at min confidence %.3f", len(changed),
                 predictor.model_id, source_uri, min_confidence)
    return len(changed)
