"""Hashtags: refresh the X cache, a label's ranked hashtags, the blocklist."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tasks.pipeline.common import results_engine

if TYPE_CHECKING:
    from tasks.hashtags.refresh import RefreshSummary

log = logging.getLogger(__name__)


def refresh_hashtags(db_url: str | None = None, bearer_token: str | None = None, dataset: str = "cifar10",
                     labels: list[str] | None = None, lang: str | None = "en", woeid: int = 1,
                     max_posts: int = 100, ttl_hours: float = 6.0, force: bool = False,
                     progress=None) -> RefreshSummary:
    """Refresh the X hashtag cache for `labels` (default: the dataset's); never raises because of X.

    ValueError for settings out of range. Returns what it did (tasks/hashtags/refresh.py RefreshSummary:
    labels by outcome, the requests sent, X's state).
    `progress(done, total)`, when given, is told how many labels are done (a progress bar).
    """
    from tasks.hashtags import refresh
    from tasks.hashtags.x_api import XConfig

    config = XConfig(lang=lang, woeid=woeid, max_posts=max_posts, ttl_hours=ttl_hours)
    return refresh.refresh(results_engine(db_url), labels, dataset=dataset, bearer_token=bearer_token,
                           config=config, force=force, progress=progress)


def hashtag_report(label: str, platform: str = "generic", db_url: str | None = None) -> dict:
    """What the cache holds for a label: the X query, the fetch log, cached counts (trending marked), and
    the ranked hashtags tagging would give it."""
    import time

    from tasks.hashtags import cache, providers, x_search, x_trends
    from tasks.hashtags.rank import RankConfig
    from tasks.hashtags.x_api import XConfig

    engine, config = results_engine(db_url), XConfig()
    now = cache.utc(time.time())
    trending = {tag.casefold() for tag in cache.read(engine, x_trends.place_label(config.woeid),
                                                      x_trends.SOURCE, now - config.ttl)}
    counts = cache.read(engine, label, x_search.SOURCE, now - config.serve_max_age)
    ranked = providers.engine_for(engine, RankConfig(platform=platform)).hashtags([(label, 1.0)])
    return {"query": x_search.search_query(label, config.lang),
            "fetches": [dict(row._mapping) for row in cache.fetches(engine, label)],
            "counts": [(tag, count, tag.casefold() in trending) for tag, count in counts.items()],
            "ranked": [(tag.hashtag, tag.source) for tag in ranked]}


def known_labels() -> list[str]:
    """The labels the shipped lexicon knows (class names such as cat or maple_tree)."""
    from tasks.hashtags import lexicon

    return list(lexicon.entries())


def block_hashtag(hashtag: str, reason: str | None = None, db_url: str | None = None) -> str:
    """Never suggest `hashtag` again; returns the stored key. ValueError when it is not a hashtag."""
    from tasks.hashtags import cache

    return cache.block(results_engine(db_url), hashtag, reason)


def unblock_hashtag(hashtag: str, db_url: str | None = None) -> tuple[str, bool, bool]:
    """Remove a hashtag from the database blocklist: (key, whether it was there, whether it stays blocked
    because the shipped blocklist has it). ValueError when it is not a hashtag."""
    from tasks.hashtags import cache, lexicon, rank

    removed = cache.unblock(results_engine(db_url), hashtag)
    key = rank.fold(hashtag)
    return key, removed, key in lexicon.shipped_blocklist()
