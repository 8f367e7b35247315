-- 017: the batches each tagging run has committed, so that a batch written twice is counted once.
-- Portable: PostgreSQL and SQLite.
--
-- A COMMIT whose answer never came (a server or proxy that stops answering) leaves its outcome unknown:
-- the writer retries the batch, whose result rows are upserts (the same rows again), but the run's
-- counters were added with `seen = seen + n`. The batch's row is inserted in the batch's transaction and
-- the counters are added only when that insert is new (tasks/store/results.py write_batch).

CREATE TABLE run_batches (
    run_id TEXT NOT NULL,
    batch_no INTEGER NOT NULL,
    PRIMARY KEY (run_id, batch_no)
);
