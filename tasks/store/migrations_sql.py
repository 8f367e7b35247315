"""SQL of the migration bookkeeping table `schema_migrations` (tasks/store/db.py runs it)."""

from __future__ import annotations

import sqlalchemy as sa

CREATE_BOOKKEEPING = sa.text(
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version TEXT PRIMARY KEY, applied_at TIMESTAMP WITH TIME ZONE NOT NULL)")
IS_APPLIED = sa.text("SELECT 1 FROM schema_migrations WHERE version = :v")
RECORD = sa.text("INSERT INTO schema_migrations (version, applied_at) VALUES (:v, :t)")
# Only fills a missing checksum: a recorded one is what the file was when it was applied.
FILL_CHECKSUM = sa.text("UPDATE schema_migrations SET checksum = :c WHERE version = :v AND checksum IS NULL")
APPLIED = sa.text("SELECT version, checksum FROM schema_migrations")
APPLIED_NO_CHECKSUM = sa.text("SELECT version, NULL AS checksum FROM schema_migrations")
LOCK = sa.text("SELECT pg_advisory_xact_lock(:id)")
