-- 019: a night with nothing new costs nothing (issue 24). Portable: PostgreSQL and SQLite.
--
-- image_files: what the listing said about each image's bytes when they were last read and hashed, so
-- that the next run knows the content hash without reading them. `signature` is the one text compared
-- (tasks/tag/refs.py ImageRef.signature): 'file:' size, mtime_ns, inode, device for a local file (what
-- rsync and restic compare), 's3:' ETag, size, LastModified for an object. The parts are kept in their
-- own columns for people; inode and device are unsigned 64-bit numbers, stored as signed BIGINT (a value
-- of 2^63 or more as itself minus 2^64). A row is written only for bytes read in full (a decode failure
-- included, a read failure not). `hashtagger tag --verify` reads every file again and rewrites these rows.

CREATE TABLE image_files (
    image_uri     TEXT PRIMARY KEY,
    content_hash  TEXT NOT NULL,
    signature     TEXT NOT NULL,
    size          BIGINT,
    mtime_ns      BIGINT,
    inode         BIGINT,
    device        BIGINT,
    etag          TEXT,
    last_modified TEXT,
    run_id        TEXT NOT NULL,
    checked_at    TIMESTAMP WITH TIME ZONE NOT NULL
);

-- A file renamed or hard-linked keeps its signature under its new name: found by it, its results are
-- copied to the new name without reading it (tasks/store/files.py).
CREATE INDEX image_files_signature ON image_files (signature);

-- A night's manifest: the nightly DAG's first task lists the source once and writes here the entries
-- that need work (new, changed, or not yet tagged by the night's model), each with its shard; every
-- shard reads its part instead of listing the source again. status: listing (being written) | ready.
-- listed: images listed; work: entries written; other_files: sidecars and system files skipped (a run's
-- not_images).
CREATE TABLE night_manifests (
    run_key       TEXT PRIMARY KEY,
    source        TEXT NOT NULL,
    model_version TEXT NOT NULL,
    shards        INTEGER NOT NULL,
    verify        INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL,
    listed        INTEGER NOT NULL DEFAULT 0,
    work          INTEGER NOT NULL DEFAULT 0,
    other_files   INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at   TIMESTAMP WITH TIME ZONE
);

-- One entry of work: the ImageRef as listed (tasks/store/manifest.py writes and reads it). `location`
-- is the exact name when it differs from the key, escaped like uri_text (a non-UTF-8 file name).
CREATE TABLE night_work (
    run_key       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    shard         INTEGER NOT NULL,
    image_uri     TEXT NOT NULL,
    location      TEXT,
    uri_text      TEXT,
    size          BIGINT,
    mtime_ns      BIGINT,
    inode         BIGINT,
    device        BIGINT,
    etag          TEXT,
    last_modified TEXT,
    stored_hash   TEXT,
    error         TEXT,
    PRIMARY KEY (run_key, seq)
);

CREATE INDEX night_work_shard ON night_work (run_key, shard, seq);
