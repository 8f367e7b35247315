-- 012: "no confident label". An image a model is not sure about (its maximum calibrated probability,
-- the out-of-distribution score, is below the model's threshold) is a result with a NULL label and no
-- label hashtags, never a failure. `confidence` holds that score for every result, so a new threshold
-- re-decides from stored rows without running the model again; top_labels keeps the candidates.
-- Portable: PostgreSQL and SQLite. SQLite cannot drop a NOT NULL constraint, so image_results is
-- rebuilt (same columns, keys and indexes) and the views that read it are created again as in 010.

DROP VIEW image_tags;
DROP VIEW image_labels;
DROP VIEW image_results_current;
DROP VIEW image_tags_all;
DROP VIEW image_labels_all;

CREATE TABLE image_results_012 (
    image_uri     TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    model_version TEXT NOT NULL,
    label         TEXT,                       -- top-1 label; NULL: no confident label (abstained)
    confidence    DOUBLE PRECISION NOT NULL,  -- the top-1 calibrated probability: the OOD score
    top_labels    TEXT NOT NULL,              -- JSON list of [label, probability], best first
    run_id        TEXT NOT NULL,
    tagged_at     TIMESTAMP WITH TIME ZONE NOT NULL,
    uri_text      TEXT,
    PRIMARY KEY (image_uri, content_hash, model_version)
);
INSERT INTO image_results_012 (image_uri, content_hash, model_version, label, confidence, top_labels, run_id,
                               tagged_at, uri_text)
SELECT image_uri, content_hash, model_version, label, confidence, top_labels, run_id, tagged_at, uri_text
FROM image_results;
DROP TABLE image_results;
ALTER TABLE image_results_012 RENAME TO image_results;
CREATE INDEX image_results_run ON image_results (run_id);
CREATE INDEX image_results_tagged_at ON image_results (tagged_at);

ALTER TABLE tagging_runs ADD COLUMN abstained INTEGER NOT NULL DEFAULT 0;

CREATE VIEW image_tags_all AS
SELECT COALESCE(r.uri_text, h.image_uri) AS image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank,
       h.hashtag_source, h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_labels_all AS
SELECT COALESCE(uri_text, image_uri) AS image_uri, label, confidence, top_labels, model_version, run_id,
       tagged_at, content_hash
FROM image_results;

CREATE VIEW image_results_current AS
SELECT r.image_uri, r.content_hash, r.model_version, r.label, r.confidence, r.top_labels, r.run_id, r.tagged_at,
       r.uri_text
FROM image_results r
WHERE r.model_version = (
    SELECT other.model_version
    FROM image_results other
    LEFT JOIN models m ON m.model_id = other.model_version AND m.status = 'champion'
    WHERE other.image_uri = r.image_uri AND other.content_hash = r.content_hash
    ORDER BY CASE WHEN m.model_id IS NULL THEN 1 ELSE 0 END, other.tagged_at DESC, other.model_version
    LIMIT 1);

CREATE VIEW image_tags AS
SELECT COALESCE(r.uri_text, h.image_uri) AS image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank,
       h.hashtag_source, h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results_current r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_labels AS
SELECT COALESCE(uri_text, image_uri) AS image_uri, label, confidence, top_labels, model_version, run_id,
       tagged_at, content_hash
FROM image_results_current;
