"""One object a tagging run asks for hashtags: providers queried once per label per run."""

from __future__ import annotations

import logging
import time
from typing import Callable

from tasks.hashtags import lexicon, rank

log = logging.getLogger(__name__)


PAUSE_S = 60.0  # a failing optional provider is left out this long, then asked again


class HashtagEngine:
    """Turns a prediction into ranked hashtags; remembers each label's candidates for the run.

    A provider marked `optional` (the X cache) that fails is paused for PAUSE_S seconds with one warning:
    hashtags then come from the others, and the run goes on. The labels answered without it are asked
    again once the pause is over, so a passing fault (a refused connection) does not cost the X hashtags
    of the rest of the run. `clock`: monotonic seconds, injectable for tests.
    """

    def __init__(self, providers=None, config: rank.RankConfig = rank.RankConfig(),
                 blocklist: frozenset[str] | None = None, clock: Callable[[], float] = time.monotonic):
        self.providers = list(providers) if providers is not None else [lexicon.LexiconProvider()]
        self.config = config
        self.blocklist = lexicon.shipped_blocklist() if blocklist is None else blocklist
        self.clock = clock
        self._blocked = frozenset(rank.fold(tag) for tag in self.blocklist)
        self._candidates: dict[str, list[rank.Candidate]] = {}
        self._prepared: dict[str, tuple[rank.Weighted, ...]] = {}  # each label's candidates, ready to rank
        self._paused_until: dict[int, float] = {}  # id(provider) -> clock time it is asked again
        self._without: dict[str, set[int]] = {}  # label -> the paused providers its candidates lack

    def candidates(self, label: str) -> list[rank.Candidate]:
        """Every provider's candidates for a label, asked once per run (again when a provider that was
        paused when it was asked is back)."""
        if label in self._candidates and not self._stale(label):
            return self._candidates[label]
        found: list[rank.Candidate] = []
        without: set[int] = set()
        for provider in self.providers:
            if self._paused_until.get(id(provider), float("-inf")) > self.clock():
                without.add(id(provider))
                continue
            try:
                found.extend(provider.candidates(label))
            except Exception as error:  # noqa: BLE001 - an optional provider must never fail a run
                if not getattr(provider, "optional", False):
                    raise
                self._paused_until[id(provider)] = self.clock() + PAUSE_S
                without.add(id(provider))
                log.warning("hashtag provider %s failed (%s: %s); using the others for %.0f s, then asking it again",
                            getattr(provider, "source", type(provider).__name__), type(error).__name__, error,
                            PAUSE_S)
        self._candidates[label], self._without[label] = found, without
        self._prepared.pop(label, None)
        return found

    def _stale(self, label: str) -> bool:
        """Whether a provider missing from the label's candidates is no longer paused."""
        now = self.clock()
        return any(self._paused_until.get(provider, float("-inf")) <= now for provider in self._without.get(label, ()))

    def hashtags(self, top_labels: list[tuple[str, float]],
                 coarse: list[tuple[str, float]] | None = None) -> list[rank.RankedHashtag]:
        """Ranked hashtags for one image from its top labels (and CIFAR-100 superclasses)."""
        labels = rank.labels_to_use(top_labels, self.config, coarse)
        for label, _ in labels:
            if label not in self._prepared or self._stale(label):  # once per label and run (and provider pause)
                self._prepared[label] = rank.prepare(self.candidates(label), self._blocked)
        return rank.rank_prepared(labels, self._prepared, self.config)
