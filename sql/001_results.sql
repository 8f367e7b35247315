-- 001: tagging results, failures and runs, and the two views people query.
-- Portable SQL: runs on PostgreSQL and on SQLite (the embedded default). Never edit once shipped;
-- corrections go forward in a new numbered file.

CREATE TABLE tagging_runs (
    run_id        TEXT PRIMARY KEY,
    source        TEXT NOT NULL,
    model_version TEXT NOT NULL,
    started_at    TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at   TIMESTAMP WITH TIME ZONE,
    seen          INTEGER NOT NULL DEFAULT 0,
    tagged        INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'running'  -- running | succeeded | failed
);

-- One row per image content and model: an image is its URI plus the hash of its bytes.
CREATE TABLE image_results (
    image_uri     TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    model_version TEXT NOT NULL,
    label         TEXT NOT NULL,              -- top-1 label
    confidence    DOUBLE PRECISION NOT NULL,  -- its probability
    top_labels    TEXT NOT NULL,              -- JSON list of [label, probability], best first
    run_id        TEXT NOT NULL,
    tagged_at     TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (image_uri, content_hash, model_version)
);

CREATE TABLE image_hashtags (
    image_uri      TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    model_version  TEXT NOT NULL,
    hashtag_rank   INTEGER NOT NULL,           -- 1 = best
    hashtag        TEXT NOT NULL,
    label          TEXT NOT NULL,              -- the predicted label the hashtag stands for
    confidence     DOUBLE PRECISION NOT NULL,  -- that label's probability
    score          DOUBLE PRECISION NOT NULL,  -- the ranking score
    hashtag_source TEXT NOT NULL,              -- lexicon | x-search | x-trends
    PRIMARY KEY (image_uri, content_hash, model_version, hashtag_rank)
);

CREATE TABLE image_failures (
    image_uri    TEXT NOT NULL,
    content_hash TEXT NOT NULL,  -- '' when the bytes could not be read at all
    reason       TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    failed_at    TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (image_uri, content_hash)
);

CREATE INDEX image_results_run ON image_results (run_id);
CREATE INDEX image_failures_run ON image_failures (run_id);

-- The stable interface: one row per (image, hashtag).
CREATE VIEW image_tags AS
SELECT h.image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank, h.hashtag_source,
       h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW failed_images AS
SELECT image_uri, reason, run_id, failed_at, content_hash
FROM image_failures;
