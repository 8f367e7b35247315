"""Which hashtag providers a run uses: the offline lexicon always; X's cached hashtags when present."""

from __future__ import annotations

from tasks.hashtags import lexicon
from tasks.hashtags.engine import HashtagEngine
from tasks.hashtags.rank import RankConfig


def engine_for(db_engine=None, config: RankConfig = RankConfig()) -> HashtagEngine:
    """A HashtagEngine for one run: lexicon only until the X cache (tasks.hashtags.cache) has data."""
    return HashtagEngine([lexicon.LexiconProvider()], config)
