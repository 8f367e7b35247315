-- 006: the sha256 of each applied migration file, so that a shipped migration edited afterwards is
-- refused (tasks/store/db.py) instead of silently disagreeing with the schema it built. Migrations
-- applied before this one get the checksum of their file as it is when 006 is applied.
-- Portable: PostgreSQL and SQLite.

ALTER TABLE schema_migrations ADD COLUMN checksum TEXT;
