-- 004: why a tagging run failed (the source went away, the database stayed down), and an index for
-- queries by day. Portable: PostgreSQL and SQLite.

-- NULL unless status = 'failed'
ALTER TABLE tagging_runs ADD COLUMN error TEXT;

CREATE INDEX image_results_tagged_at ON image_results (tagged_at);
