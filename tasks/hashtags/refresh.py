"""Refresh stage of the hashtag cache: for each label not fetched within the time to live, one X search;
once per refresh, the trends of a place. Never raises because of X: what X does not answer keeps its
cached rows, and tagging falls back to the lexicon for labels with none.

Airflow passes the bearer token from the connection `x_api`; on the command line it comes from
$X_BEARER_TOKEN.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Callable

import sqlalchemy as sa

from tasks.config import BUNDLED_DATASETS
from tasks.hashtags import cache, x_api, x_search, x_trends
from tasks.hashtags.x_api import XClient, XConfig, XUnavailable

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = ("error", "malformed")  # failures that count towards turning X off for the run


def default_labels(dataset: str = "cifar10") -> list[str]:
    """Every class name of a dataset: CIFAR-100's fine labels and then its coarse ones."""
    from tasks.data import prepare  # numpy and the dataset code, only when the labels are not given

    if dataset == "cifar10":
        return list(prepare.CIFAR10_CLASSES)
    if dataset == "cifar100":
        names = prepare.cifar100_labels()
        return list(names["fine_names"]) + list(names["coarse_names"])
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(BUNDLED_DATASETS)}")


@dataclasses.dataclass(frozen=True)
class RefreshSummary:
    """What one refresh did: labels by outcome (fetched + empty + fresh + errors + not_tried == labels), the
    trends' outcome, the requests sent by endpoint, and X's state at the end."""

    labels: int
    fetched: int = 0  # hashtags cached for the label
    empty: int = 0  # X answered with no hashtags
    fresh: int = 0  # fetched within the time to live: not asked again
    errors: int = 0  # X failed for the label; its cached hashtags stay
    not_tried: int = 0  # X off, rate-limited or without credentials: the next refresh tries these first
    trends: str = "not tried"  # ok | fresh | empty | error | not tried
    requests: dict[str, int] = dataclasses.field(default_factory=dict)  # {endpoint: requests sent}
    x: str = "on"  # on | no credentials | rate-limited until ... | off (why)

    def as_dict(self) -> dict:
        """Its JSON (an Airflow task's return value)."""
        return dataclasses.asdict(self)


def refresh(db_engine: sa.Engine, labels: list[str] | None = None, *, dataset: str = "cifar10",
            bearer_token: str | None = None, config: XConfig = XConfig(), force: bool = False,
            clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
            progress: Callable[[int, int], None] | None = None) -> RefreshSummary:
    """Fill the hashtag cache from X; returns what it did (RefreshSummary).

    The database must be migrated already (tasks.pipeline checks). `labels` default to the dataset's class
    names; `force` ignores the time to live; `clock` (epoch seconds) and `sleep` are injectable so that
    tests neither wait nor depend on the time of day. `progress(done, total)`, when given, is told how many
    labels are done, before each and at the end (a progress bar).
    """
    labels = _clean(labels) if labels is not None else default_labels(dataset)
    token = x_api.bearer_token(bearer_token)
    if token is None:
        log.warning("no X credentials (%s, or the Airflow connection x_api): the X providers are off; "
                    "tagging uses the cached hashtags and the lexicon", x_api.TOKEN_VARIABLE)
        return RefreshSummary(labels=len(labels), not_tried=len(labels), x="no credentials")
    x = XClient(token, config, clock=clock, sleep=sleep)
    now = cache.utc(clock())
    trends = _refresh_trends(db_engine, x, config, now, force)
    fresh = set() if force else cache.fresh_labels(db_engine, x_search.SOURCE, now - config.ttl)
    outcomes: collections.Counter[str] = collections.Counter()
    failed_in_row = 0
    for done, label in enumerate(labels):
        if progress is not None:
            progress(done, len(labels))
        if label in fresh:
            outcomes["fresh"] += 1
            continue
        if not x.available(x_api.SEARCH):
            outcomes["not_tried"] += 1  # no fetch logged: the next refresh tries it first
            continue
        try:
            counts, posts = x_search.search_label(x, label)
        except XUnavailable as error:
            cache.record_failure(db_engine, label, x_search.SOURCE, now, error.status, str(error))
            outcomes["errors"] += 1
            log.info("%s: no hashtags from X (%s); its cached hashtags stay", label, error)
            failed_in_row = failed_in_row + 1 if error.status in TRANSIENT_STATUSES else 0
            if failed_in_row >= config.max_failed_labels:
                x.turn_off(f"X failed {failed_in_row} labels in a row (last: {error})")
            continue
        failed_in_row = 0
        status = cache.store(db_engine, label, x_search.SOURCE, counts, now, posts)
        outcomes["fetched" if status == "ok" else "empty"] += 1
    if progress is not None:
        progress(len(labels), len(labels))
    summary = RefreshSummary(labels=len(labels), **outcomes, trends=trends, requests=dict(x.requests), x=_state(x))
    log.info("hashtag refresh: %s", summary)
    return summary


def _refresh_trends(db_engine: sa.Engine, x: XClient, config: XConfig, now, force: bool) -> str:
    place = x_trends.place_label(config.woeid)
    if not force and place in cache.fresh_labels(db_engine, x_trends.SOURCE, now - config.trends_ttl):
        return "fresh"
    try:
        trends = x_trends.fetch_trends(x)
    except XUnavailable as error:
        cache.record_failure(db_engine, place, x_trends.SOURCE, now, error.status, str(error))
        log.info("no trends from X (%s); hashtags get no trend boost until a refresh finds some", error)
        return error.status
    return cache.store(db_engine, place, x_trends.SOURCE, trends, now)


def _state(x: XClient) -> str:
    if x.off:
        return f"off: {x.off_reason}"
    if not x.available(x_api.SEARCH):
        return f"rate-limited until {x_api.format_utc(x.paused_until[x_api.SEARCH])}"
    return "on"


def _clean(labels: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(label.strip() for label in labels if label and label.strip()))
    if not cleaned:
        raise ValueError("no labels to refresh: give class names such as cat,dog")
    return cleaned
