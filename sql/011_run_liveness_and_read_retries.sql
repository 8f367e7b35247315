-- 011: who runs a tagging run and whether it still lives; read failures tried again. Portable:
-- PostgreSQL and SQLite.
--
-- A run records the host and process id that run it and refreshes heartbeat_at while it works (at
-- every batch, and at least every minute). The next run on any host marks a 'running' run
-- 'interrupted' when its heartbeat is stale, or when it ran on the same host under a process id that
-- no longer exists (killed with SIGKILL, the machine lost power). status: running | succeeded |
-- failed | interrupted.

ALTER TABLE tagging_runs ADD COLUMN host TEXT;
ALTER TABLE tagging_runs ADD COLUMN pid INTEGER;
ALTER TABLE tagging_runs ADD COLUMN heartbeat_at TIMESTAMP WITH TIME ZONE;

CREATE INDEX tagging_runs_status ON tagging_runs (status, source);

-- Read failures of S3 objects (403, deleted or changed after the listing) were stored under the listed
-- ETag, which made them count as done for ever. A read failure is now stored without a content hash
-- and tried again by the next run; these rows go, so that the next run reads those objects again.
-- (substr, not LIKE: a percent sign would be read as a driver placeholder)
DELETE FROM image_failures WHERE substr(content_hash, 1, 5) = 'etag:' AND substr(reason, 1, 12) = 'cannot read:';
