"""The X hashtag cache in the results database: written by refresh, read by tagging; the users' blocklist.

Tables from sql/003_hashtag_cache.sql. Writes are upserts keyed on natural keys, with bind parameters
(the statements are in tasks/store/hashtag_cache_sql.py).
Timestamps are bound as UTC datetimes and compared in SQL against bound cut-offs, which works on PostgreSQL
(timestamptz) and on SQLite (ISO strings of one format, which sort as they compare).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Callable

import sqlalchemy as sa

from tasks.hashtags import rank, x_search, x_trends
from tasks.store.hashtag_cache_sql import (
    BLOCK, DROP_UNSEEN, FRESH_LABELS, READ_BLOCKLIST, READ_FETCHES, READ_LABEL, UNBLOCK, UPSERT_FETCH, UPSERT_HASHTAG)
from tasks.hashtags.x_api import XConfig
from tasks.store import results  # the write path's retry policy (a shorter window here)

log = logging.getLogger(__name__)

FRESH_STATUSES = ("ok", "empty")  # fetches that count for the time to live; failures are retried

def utc(epoch_seconds: float) -> dt.datetime:
    """A whole-second UTC datetime: one string format on SQLite, so that comparisons stay correct."""
    return dt.datetime.fromtimestamp(int(epoch_seconds), dt.timezone.utc)


def has_cache(engine: sa.Engine) -> bool:
    """Whether migration 003 has been applied to this database."""
    return sa.inspect(engine).has_table("hashtag_cache")


def store(engine: sa.Engine, label: str, source: str, counts: dict[str, int], fetched_at: dt.datetime,
          posts: int = 0) -> str:
    """Replace a label's cached hashtags from one source and log the fetch, in one transaction."""
    status = "ok" if counts else "empty"
    with engine.begin() as connection:
        if counts:
            connection.execute(UPSERT_HASHTAG, [
                {"label": label, "hashtag": tag, "count": int(count), "source": source, "fetched_at": fetched_at}
                for tag, count in counts.items()])
        connection.execute(DROP_UNSEEN, {"label": label, "source": source, "kept": list(counts)})
        connection.execute(UPSERT_FETCH, {"label": label, "source": source, "fetched_at": fetched_at,
                                          "status": status, "posts": posts, "detail": None})
    return status


def record_failure(engine: sa.Engine, label: str, source: str, fetched_at: dt.datetime, status: str,
                   detail: str) -> None:
    """Log a failed fetch; the label's cached hashtags stay and are still served."""
    with engine.begin() as connection:
        connection.execute(UPSERT_FETCH, {"label": label, "source": source, "fetched_at": fetched_at,
                                          "status": status, "posts": 0, "detail": detail[:500]})


def fresh_labels(engine: sa.Engine, source: str, since: dt.datetime) -> set[str]:
    """Labels fetched successfully (hashtags or none) from `source` at or after `since`."""
    with engine.connect() as connection:
        return {row.label for row in connection.execute(FRESH_LABELS, {"source": source, "since": since})}


def read(engine: sa.Engine, label: str, source: str, since: dt.datetime) -> dict[str, int]:
    """A label's cached {'#Tag': count} from one source, fetched at or after `since`, most frequent first."""
    with engine.connect() as connection:
        rows = connection.execute(READ_LABEL, {"label": label, "source": source, "since": since})
        return {hashtag: count for hashtag, count in rows}  # not row.count: that is tuple.count


def fetches(engine: sa.Engine, label: str) -> list[sa.Row]:
    """The fetch log of a label: one row per source."""
    with engine.connect() as connection:
        return list(connection.execute(READ_FETCHES, {"label": label}))


def blocklist(engine: sa.Engine) -> frozenset[str]:
    """The users' blocked hashtags (case-folded, with '#')."""
    with engine.connect() as connection:
        return frozenset(rank.fold(row.hashtag) for row in connection.execute(READ_BLOCKLIST))


def _blocklist_key(hashtag: str) -> str:
    tag = rank.normalise(hashtag)
    if tag is None:
        raise ValueError(f"{hashtag!r} is not a hashtag: on X a hashtag is letters, digits or '_' after '#', "
                         f"with at least one letter")
    return tag.casefold()


def block(engine: sa.Engine, hashtag: str, reason: str | None = None, now: dt.datetime | None = None) -> str:
    """Add a hashtag to the users' blocklist (a second call updates the reason); returns the stored key."""
    key = _blocklist_key(hashtag)
    with engine.begin() as connection:
        connection.execute(BLOCK, {"hashtag": key, "added_at": now or utc(time.time()), "reason": reason})
    return key


def unblock(engine: sa.Engine, hashtag: str) -> bool:
    """Remove a hashtag from the users' blocklist; False when it was not there."""
    with engine.begin() as connection:
        return connection.execute(UNBLOCK, {"hashtag": _blocklist_key(hashtag)}).rowcount > 0


# A read refused or cut (a role at its CONNECTION LIMIT, a restart) is tried again for this long, with
# jittered backoff (tasks.store.results.retrying), before the provider fails and the engine pauses it
READ_RETRY_WINDOW_S = 10.0


def read_retrying(engine: sa.Engine, label: str, source: str, since: dt.datetime) -> dict[str, int]:
    """`read`, tried again on a dropped or refused connection for READ_RETRY_WINDOW_S seconds; then
    tasks.store.results.DatabaseUnavailable."""
    return results.retrying(lambda: read(engine, label, source, since), f"reading the X hashtags of {label!r}",
                            window_s=READ_RETRY_WINDOW_S)


class CacheProvider:
    """Candidates from the X cache: a label's hashtags from posts (x-search), those trending now boosted
    and recorded as x-trends. Reads the database once per label and once for the trends, each read retried
    for READ_RETRY_WINDOW_S seconds; a read that still fails raises (HashtagEngine pauses the provider)."""

    source = x_search.SOURCE
    optional = True  # a failure here degrades to the lexicon instead of failing the run

    def __init__(self, engine: sa.Engine, rank_config: rank.RankConfig = rank.RankConfig(),
                 x_config: XConfig = XConfig(), clock: Callable[[], float] = time.time):
        self.engine = engine
        self.rank_config, self.x_config = rank_config, x_config
        self.now = utc(clock())
        self._trending: frozenset[str] | None = None

    def trending(self) -> frozenset[str]:
        """Case-folded hashtags trending at the configured place, from a fetch within the time to live."""
        if self._trending is None:
            trends = read_retrying(self.engine, x_trends.place_label(self.x_config.woeid), x_trends.SOURCE,
                          self.now - self.x_config.ttl)
            self._trending = frozenset(tag.casefold() for tag in trends)
        return self._trending

    def candidates(self, label: str) -> list[rank.Candidate]:
        counts = read_retrying(self.engine, label, x_search.SOURCE, self.now - self.x_config.serve_max_age)
        if not counts:
            return []
        trending = self.trending()
        found = []
        for tag, count in counts.items():
            if tag.casefold() in trending:
                found.append(rank.Candidate(tag, label, count, x_trends.SOURCE, self.rank_config.trend_boost))
            else:
                found.append(rank.Candidate(tag, label, count, x_search.SOURCE))
        return found
