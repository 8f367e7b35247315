"""Ranking: label probability x source weight x log-scaled frequency (x trend boost), de-duplicated."""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections import defaultdict

# Platform presets: how many hashtags a post should carry.
PLATFORM_LIMITS = {"generic": 10, "instagram": 5, "x": 3}

# How much one occurrence counts, by source: hashtags seen in real posts beat the curated fallback.
SOURCE_WEIGHTS = {"x-search": 1.0, "x-trends": 1.0, "lexicon": 0.5}

# X's hashtag rule: letters, digits, underscore (Unicode letters and marks too), not digits only.
HASHTAG_BODY = re.compile(r"^(?=\w*[^\W\d])\w{1,100}$", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class Candidate:
    hashtag: str
    label: str
    count: int  # how often the hashtag occurs with the label (posts seen, or the lexicon's pseudo-count)
    source: str  # lexicon | x-search | x-trends
    trend_boost: float = 0.0  # > 0 when the hashtag is trending now


@dataclasses.dataclass(frozen=True)
class RankedHashtag:
    rank: int
    hashtag: str
    label: str
    confidence: float  # probability of the label it came from
    score: float
    source: str


@dataclasses.dataclass(frozen=True)
class RankConfig:
    platform: str = "generic"  # generic (10), instagram (5) or x (3)
    top_k_labels: int = 3  # labels considered per image
    min_probability: float = 0.05  # labels below this are not turned into hashtags (the top one always is)
    coarse_weight: float = 0.5  # CIFAR-100 superclass labels count at half their summed probability

    @property
    def limit(self) -> int:
        if self.platform not in PLATFORM_LIMITS:
            raise ValueError(f"unknown platform {self.platform!r}; choose one of {', '.join(PLATFORM_LIMITS)}")
        return PLATFORM_LIMITS[self.platform]


def normalise(hashtag: str) -> str | None:
    """'#Cat' / 'cat' -> '#Cat' in NFC, or None when it breaks X's hashtag rules."""
    body = unicodedata.normalize("NFC", hashtag.strip()).lstrip("#＃")
    return f"#{body}" if HASHTAG_BODY.match(body) else None


def score(candidate: Candidate, probability: float) -> float:
    weight = SOURCE_WEIGHTS.get(candidate.source, 0.5)
    return probability * weight * math.log1p(max(candidate.count, 0)) * (1.0 + candidate.trend_boost)


def rank(label_probabilities: list[tuple[str, float]], candidates: dict[str, list[Candidate]],
         config: RankConfig = RankConfig(), blocklist: frozenset[str] = frozenset()) -> list[RankedHashtag]:
    """Ranked hashtags for one image from its (label, probability) pairs, best first."""
    totals: dict[str, float] = defaultdict(float)
    best: dict[str, tuple[float, Candidate, float]] = {}  # key -> (score, candidate, probability)
    spellings: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for label, probability in label_probabilities:
        for candidate in candidates.get(label, ()):
            tag = normalise(candidate.hashtag)
            if tag is None or tag.lower() in blocklist:
                continue
            key = tag.casefold()
            value = score(candidate, probability)
            totals[key] += value
            spellings[key][tag] += max(candidate.count, 1)
            if key not in best or value > best[key][0]:
                best[key] = (value, candidate, probability)
    ordered = sorted(totals, key=lambda key: (-totals[key], key))[: config.limit]
    ranked = []
    for position, key in enumerate(ordered, start=1):
        _, candidate, probability = best[key]
        spelling = max(spellings[key].items(), key=lambda item: (item[1], item[0]))[0]  # most common
        ranked.append(RankedHashtag(position, spelling, candidate.label, probability, totals[key],
                                    candidate.source))
    return ranked


def labels_to_use(top_labels: list[tuple[str, float]], config: RankConfig,
                  coarse: list[tuple[str, float]] | None = None) -> list[tuple[str, float]]:
    """Top-k labels above the probability floor (the best one always), plus weighted coarse labels."""
    chosen = [pair for index, pair in enumerate(top_labels[: config.top_k_labels])
              if index == 0 or pair[1] >= config.min_probability]
    for label, probability in (coarse or [])[:1]:
        chosen.append((label, probability * config.coarse_weight))
    return chosen
