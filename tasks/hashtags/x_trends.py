"""The x-trends provider's fetch: what is trending now for a place, as hashtags with their post volume."""

from __future__ import annotations

import re

from tasks.hashtags import rank
from tasks.hashtags.x_api import TRENDS_V1, TRENDS_V2, XClient, XUnavailable

SOURCE = "x-trends"


def place_label(woeid: int) -> str:
    """Trends are cached under a pseudo-label per place: 'woeid:1' for worldwide."""
    return f"woeid:{int(woeid)}"


def trend_hashtag(name: str) -> str | None:
    """'#Caturday' -> '#Caturday'; 'Black Friday' -> '#BlackFriday'; None when no hashtag can stand for it."""
    return rank.normalise(re.sub(r"\s+", "", name or ""))


def parse_v2(payload: object) -> dict[str, int]:
    """{"data": [{"trend_name": ..., "tweet_count": ...}]} -> {'#Tag': volume (0 when unknown)}."""
    if not isinstance(payload, dict) or not ("data" in payload or "errors" in payload):
        raise XUnavailable(f"{TRENDS_V2}: unexpected answer {str(payload)[:80]!r}", "malformed")
    try:
        return _collect((item["trend_name"], item.get("tweet_count")) for item in payload.get("data") or [])
    except (AttributeError, KeyError, TypeError) as error:
        raise XUnavailable(f"{TRENDS_V2}: unexpected answer ({error})", "malformed") from error


def parse_v1(payload: object) -> dict[str, int]:
    """[{"trends": [{"name": ..., "tweet_volume": ...}], "locations": ...}] -> {'#Tag': volume}."""
    if not isinstance(payload, list):
        raise XUnavailable(f"{TRENDS_V1}: unexpected answer {str(payload)[:80]!r}", "malformed")
    try:
        return _collect((item["name"], item.get("tweet_volume"))
                        for place in payload for item in place.get("trends") or [])
    except (AttributeError, KeyError, TypeError) as error:
        raise XUnavailable(f"{TRENDS_V1}: unexpected answer ({error})", "malformed") from error


def _collect(pairs) -> dict[str, int]:
    trends: dict[str, int] = {}
    for name, volume in pairs:
        tag = trend_hashtag(name)
        if tag is not None:
            trends[tag] = max(trends.get(tag, 0), int(volume or 0))
    return trends


def fetch_trends(x: XClient) -> dict[str, int]:
    """Trending hashtags for the client's configured place: v2 first, then v1.1 where the account may use it."""
    config = x.config
    try:
        return parse_v2(x.trends_v2(config.woeid))
    except XUnavailable as error:
        if not config.v1_trends or x.off:
            raise
        first = error
    try:
        return parse_v1(x.trends_v1(config.woeid))
    except XUnavailable:
        raise first from None
