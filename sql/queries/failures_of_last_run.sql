-- Failures of the last run: every file the most recently started run could not tag, and why. A nightly
-- run is one tagging run per shard (run ids '<key>-shard<i>of<n>'): all of its shards' failures are
-- listed (tagging_runs.run_key names the run a shard belongs to; a CLI run is its own key).
-- A file that failed in an earlier run on the same bytes is skipped, not failed again: for every
-- standing failure, drop the WHERE clause.
--   psql "$DB" -f failures_of_last_run.sql
SELECT f.image_uri, f.reason, f.failed_at, f.run_id
FROM failed_images f
JOIN tagging_runs r ON r.run_id = f.run_id
WHERE r.run_key = (SELECT last.run_key FROM tagging_runs last
                   ORDER BY last.started_at DESC, last.run_id DESC LIMIT 1)
ORDER BY f.image_uri;
