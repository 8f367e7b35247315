"""One object a tagging run asks for hashtags: providers queried once per label per run."""

from __future__ import annotations

import logging

from tasks.hashtags import lexicon, rank

log = logging.getLogger(__name__)


class HashtagEngine:
    """Turns a prediction into ranked hashtags; remembers each label's candidates for the run.

    A provider marked `optional` (the X cache) that fails is dropped for the rest of the run with one
    warning: hashtags then come from the others, and the run goes on.
    """

    def __init__(self, providers=None, config: rank.RankConfig = rank.RankConfig(),
                 blocklist: frozenset[str] | None = None):
        self.providers = list(providers) if providers is not None else [lexicon.LexiconProvider()]
        self.config = config
        self.blocklist = lexicon.shipped_blocklist() if blocklist is None else blocklist
        self._blocked = frozenset(rank.fold(tag) for tag in self.blocklist)
        self._candidates: dict[str, list[rank.Candidate]] = {}
        self._prepared: dict[str, tuple[rank.Weighted, ...]] = {}  # each label's candidates, ready to rank

    def candidates(self, label: str) -> list[rank.Candidate]:
        """Every provider's candidates for a label, asked once per run."""
        if label not in self._candidates:
            found: list[rank.Candidate] = []
            for provider in list(self.providers):
                try:
                    found.extend(provider.candidates(label))
                except Exception as error:  # noqa: BLE001 - an optional provider must never fail a run
                    if not getattr(provider, "optional", False):
                        raise
                    self.providers.remove(provider)
                    log.warning("hashtag provider %s failed (%s: %s); using the others for the rest of the run",
                                getattr(provider, "source", type(provider).__name__), type(error).__name__, error)
            self._candidates[label] = found
        return self._candidates[label]

    def hashtags(self, top_labels: list[tuple[str, float]],
                 coarse: list[tuple[str, float]] | None = None) -> list[rank.RankedHashtag]:
        """Ranked hashtags for one image from its top labels (and CIFAR-100 superclasses)."""
        labels = rank.labels_to_use(top_labels, self.config, coarse)
        for label, _ in labels:
            if label not in self._prepared:  # once per label and run: normalising, blocking, weighting
                self._prepared[label] = rank.prepare(self.candidates(label), self._blocked)
        return rank.rank_prepared(labels, self._prepared, self.config)
