"""One object a tagging run asks for hashtags: providers queried once per label per run."""

from __future__ import annotations

from tasks.hashtags import lexicon, rank


class HashtagEngine:
    """Turns a prediction into ranked hashtags; remembers each label's candidates for the run."""

    def __init__(self, providers=None, config: rank.RankConfig = rank.RankConfig(),
                 blocklist: frozenset[str] | None = None):
        self.providers = list(providers) if providers is not None else [lexicon.LexiconProvider()]
        self.config = config
        self.blocklist = lexicon.shipped_blocklist() if blocklist is None else blocklist
        self._candidates: dict[str, list[rank.Candidate]] = {}

    def candidates(self, label: str) -> list[rank.Candidate]:
        if label not in self._candidates:
            found: list[rank.Candidate] = []
            for provider in self.providers:
                found.extend(provider.candidates(label))
            self._candidates[label] = found
        return self._candidates[label]

    def hashtags(self, top_labels: list[tuple[str, float]],
                 coarse: list[tuple[str, float]] | None = None) -> list[rank.RankedHashtag]:
        labels = rank.labels_to_use(top_labels, self.config, coarse)
        return rank.rank(labels, {label: self.candidates(label) for label, _ in labels},
                         self.config, self.blocklist)
