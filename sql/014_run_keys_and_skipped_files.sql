-- 014: what a tagging run's record lacked. Portable: PostgreSQL and SQLite, except where a statement is
-- marked `-- only: <dialect>` (tasks/store/db.py).
--
-- not_images: the files a folder source skipped for their suffix (notes.txt, .xmp sidecars, ...), which
-- the CLI counted and printed but no table kept. A sharded run records them on its first shard, so the
-- shards' sum is the source's count.
--
-- run_key: the run people started, which a nightly DAG run splits into one tagging run per shard
-- (run ids '<key>-shard<i>of<n>', tasks/pipeline.py); a CLI run is its own key. Queries about "the last
-- run" read every tagging run of the last key (sql/queries/failures_of_last_run.sql read one shard).
--
-- status now also takes succeeded_with_failures (a run that finished with failed images):
-- running | succeeded | succeeded_with_failures | failed | interrupted.

ALTER TABLE tagging_runs ADD COLUMN not_images INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tagging_runs ADD COLUMN run_key TEXT;

-- only: postgresql
UPDATE tagging_runs
SET run_key = CASE WHEN substr(run_id, 1, 8) = 'nightly-' AND run_id ~ '-shard[0-9]+of[0-9]+$'
                   THEN regexp_replace(run_id, '-shard[0-9]+of[0-9]+$', '') ELSE run_id END;

-- only: sqlite
UPDATE tagging_runs
SET run_key = CASE WHEN substr(run_id, 1, 8) = 'nightly-' AND run_id GLOB '*-shard[0-9]*of[0-9]*'
                   THEN substr(run_id, 1, instr(run_id, '-shard') - 1)
                   ELSE run_id END;

-- Runs recorded before 014 with failed images said 'succeeded'; their record now says what happened.
UPDATE tagging_runs SET status = 'succeeded_with_failures' WHERE status = 'succeeded' AND failed > 0;

CREATE INDEX tagging_runs_run_key ON tagging_runs (run_key, started_at);
