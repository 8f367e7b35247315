-- 011: who runs a tagging run and whether it still lives. Portable: PostgreSQL and SQLite.
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
