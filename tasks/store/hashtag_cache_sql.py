"""SQL of the X hashtag cache and the users' blocklist (sql/003_hashtag_cache.sql), run by
tasks/hashtags/cache.py."""

from __future__ import annotations

import sqlalchemy as sa

UPSERT_HASHTAG = sa.text("""
INSERT INTO hashtag_cache (label, hashtag, count, source, fetched_at)
VALUES (:label, :hashtag, :count, :source, :fetched_at)
ON CONFLICT (label, hashtag, source) DO UPDATE SET count = excluded.count, fetched_at = excluded.fetched_at
""")
# typed: PostgreSQL must compare an empty list as text too
DROP_UNSEEN = sa.text("""
DELETE FROM hashtag_cache WHERE label = :label AND source = :source AND hashtag NOT IN :kept
""").bindparams(sa.bindparam("kept", expanding=True, type_=sa.String))
UPSERT_FETCH = sa.text("""
INSERT INTO hashtag_fetches (label, source, fetched_at, status, posts, detail)
VALUES (:label, :source, :fetched_at, :status, :posts, :detail)
ON CONFLICT (label, source) DO UPDATE SET
  fetched_at = excluded.fetched_at, status = excluded.status, posts = excluded.posts, detail = excluded.detail
""")
FRESH_LABELS = sa.text("""
SELECT label FROM hashtag_fetches
WHERE source = :source AND status IN ('ok', 'empty') AND fetched_at >= :since
""")
READ_LABEL = sa.text("""
SELECT hashtag, count FROM hashtag_cache
WHERE label = :label AND source = :source AND fetched_at >= :since
ORDER BY count DESC, hashtag
""")
READ_FETCHES = sa.text("""
SELECT source, fetched_at, status, posts, detail FROM hashtag_fetches WHERE label = :label ORDER BY source
""")
READ_BLOCKLIST = sa.text("SELECT hashtag FROM hashtag_blocklist")
BLOCK = sa.text("""
INSERT INTO hashtag_blocklist (hashtag, added_at, reason) VALUES (:hashtag, :added_at, :reason)
ON CONFLICT (hashtag) DO UPDATE SET reason = excluded.reason
""")
UNBLOCK = sa.text("DELETE FROM hashtag_blocklist WHERE hashtag = :hashtag")
