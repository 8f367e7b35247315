-- Failures of the last run: every file the most recently started tagging run could not tag, and why.
-- A file that failed in an earlier run on the same bytes is skipped, not failed again: for every
-- standing failure, drop the WHERE clause.
--   psql "$DB" -f failures_of_last_run.sql
SELECT f.image_uri, f.reason, f.failed_at, f.run_id
FROM failed_images f
WHERE f.run_id = (SELECT r.run_id FROM tagging_runs r ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1)
ORDER BY f.image_uri;
