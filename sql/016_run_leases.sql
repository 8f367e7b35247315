-- 016: one lease row per source (and shard) that a tagging run holds while it runs. Portable: PostgreSQL
-- and SQLite.
--
-- Replaces the session advisory lock, which PgBouncer in transaction pooling (how managed PostgreSQL is
-- reached) leaves on an idle pooled server connection, and which a role's idle_session_timeout drops
-- while the run is alive. A lease is a row: it lives in the database whatever the connections do.
--
-- source: the run's lock key (the source's URI, with ' shard i/n' for a shard). holder: a token new for
-- each run attempt (two processes running the same run id, an Airflow retry beside a zombie attempt, are
-- two holders); run_id, host, pid: who that is, for people and for taking over from a dead process.
-- expires_at: epoch seconds by the database's clock (not the workers'), moved forward by the holder's
-- heartbeat; a lease past it may be taken over by another run (tasks/store/leases.py).

CREATE TABLE run_leases (
    source TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    run_id TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    acquired_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
