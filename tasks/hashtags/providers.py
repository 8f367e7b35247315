"""Which hashtag providers a run uses: X's cached hashtags where the results database has them, and the
offline lexicon always (alone for the labels the cache lacks). Tagging never calls X itself: `hashtagger
hashtags refresh` fills the cache, one X call per label."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa

from tasks.store import db
from tasks.store import results as store_results
from tasks.config import Settings
from tasks.hashtags import cache, lexicon
from tasks.hashtags.engine import HashtagEngine
from tasks.hashtags.rank import RankConfig
from tasks.hashtags.x_api import XConfig

log = logging.getLogger(__name__)


def engine_for(db_engine: sa.Engine | None = None, config: RankConfig = RankConfig(),
               x_config: XConfig = XConfig()) -> HashtagEngine:
    """A HashtagEngine for one run; without `db_engine`, the default results database if it exists."""
    blocked = set(lexicon.shipped_blocklist())
    providers: list = []
    results = db_engine if db_engine is not None else _existing_default_database()
    if results is not None:
        try:
            if _retrying(lambda: cache.has_cache(results)):
                blocked |= _retrying(lambda: cache.blocklist(results))
                providers.append(cache.CacheProvider(results, config, x_config))
        except (sa.exc.SQLAlchemyError, store_results.DatabaseUnavailable) as error:
            log.warning("the hashtag cache cannot be read (%s); hashtags come from the lexicon", error)
    providers.append(lexicon.LexiconProvider())
    return HashtagEngine(providers, config, frozenset(blocked))


def _retrying(read):
    """A start-up read of the cache, tried again on a refused or dropped connection for the cache's window."""
    return store_results.retrying(read, "reading the hashtag cache", window_s=cache.READ_RETRY_WINDOW_S)


def _existing_default_database() -> sa.Engine | None:
    """The default results database, without creating it: the `hashtag` command only reads."""
    url = Settings.from_env().database_url  # resolved here: db.engine(None) caches the first URL it saw
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if not database or database == ":memory:" or not Path(database).expanduser().is_file():
            return None
    try:
        return db.engine(url)
    except (sa.exc.SQLAlchemyError, ImportError) as error:
        log.info("the results database %s cannot be opened (%s)", url, error)
        return None
