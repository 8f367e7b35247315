-- 003: hashtags fetched from X, the log of those fetches, and the blocklist users edit.
-- Portable SQL: runs on PostgreSQL and on SQLite. Never edit once shipped; corrections go forward in a
-- new numbered file.

-- Hashtags seen with a label in recent posts (source x-search), and what trends for a place (source
-- x-trends, label 'woeid:<id>'). count: posts of the label carrying the hashtag, or the trend's post
-- volume (0 when X does not say). hashtag keeps the spelling seen on X, in NFC, with its '#'.
CREATE TABLE hashtag_cache (
    label      TEXT NOT NULL,
    hashtag    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    source     TEXT NOT NULL,
    fetched_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (label, hashtag, source)
);

-- One row per label and source: the last call to X for it, even one that found nothing or failed, so
-- that a refresh within the time to live calls X for no label twice. status: ok | empty (fetched, no
-- hashtags) | denied | rate-limited | error | malformed (failed: the cached rows were kept).
CREATE TABLE hashtag_fetches (
    label      TEXT NOT NULL,
    source     TEXT NOT NULL,
    fetched_at TIMESTAMP WITH TIME ZONE NOT NULL,
    status     TEXT NOT NULL,
    posts      INTEGER NOT NULL DEFAULT 0,
    detail     TEXT,
    PRIMARY KEY (label, source)
);

-- Hashtags never suggested, on top of tasks/data/blocklist.txt: case-folded, with the '#'.
CREATE TABLE hashtag_blocklist (
    hashtag  TEXT PRIMARY KEY,
    added_at TIMESTAMP WITH TIME ZONE NOT NULL,
    reason   TEXT
);
