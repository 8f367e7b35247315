"""Ranking: label probability x (source base + log-scaled frequency) x trend boost, de-duplicated, filtered."""

from __future__ import annotations

import dataclasses
import functools
import math
import unicodedata
from collections import defaultdict

# Platform presets: how many hashtags a post should carry (Instagram allows 5 since December 2025).
PLATFORM_LIMITS = {"generic": 10, "instagram": 5, "x": 3}

# A candidate's score starts from its source's base and adds its frequency (0..1, log-scaled, relative to the
# label's most frequent hashtag of the same family). Hashtags seen in real posts start at 1, the curated
# lexicon at 0: with X answering, a label's hashtags from posts outrank its plain lexicon entries.
SOURCE_BASE = {"x-search": 1.0, "x-trends": 1.0, "lexicon": 0.0}
# Sources whose counts are comparable: X counts posts, the lexicon counts list positions.
SOURCE_FAMILY = {"x-search": "x", "x-trends": "x", "lexicon": "lexicon"}

MAX_HASHTAG_LENGTH = 100  # characters after '#'; longer strings are junk, not tags
# Characters X accepts inside a hashtag besides letters, combining marks, decimal digits and '_'
# (twitter-text's hashtag set): joiners and a few Hebrew, CJK and Tibetan punctuation marks.
HASHTAG_EXTRA_CHARACTERS = frozenset("\u200c\u200d\ua67e\u05be\u05f3\u05f4\uff5e\u301c\u309b\u309c"
                                     "\u30a0\u30fb\u3003\u0f0b\u0f0c\u00b7")
HASH_SIGNS = "#\uff03"  # '#' and the full-width '＃' both start a hashtag on X


@dataclasses.dataclass(frozen=True)
class Candidate:
    hashtag: str
    label: str
    count: int  # how often the hashtag occurs with the label (posts seen, or the lexicon's pseudo-count)
    source: str  # lexicon | x-search | x-trends
    trend_boost: float = 0.0  # > 0 when the hashtag is trending now (score multiplied by 1 + boost)


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
    trend_boost: float = 0.5  # a hashtag trending now and seen with the label scores 1.5 times as much
    # rank by the confidence of the label a hashtag came from first, its score second: for lists merged
    # from several models (hashtag --dataset both), whose labels would otherwise interleave
    by_label: bool = False

    @property
    def limit(self) -> int:
        if self.platform not in PLATFORM_LIMITS:
            raise ValueError(f"unknown platform {self.platform!r}; choose one of {', '.join(PLATFORM_LIMITS)}")
        return PLATFORM_LIMITS[self.platform]


def is_hashtag_character(character: str) -> bool:
    """Letters, combining marks, decimal digits, '_' and X's few extra characters."""
    if character == "_" or character in HASHTAG_EXTRA_CHARACTERS:
        return True
    category = unicodedata.category(character)
    return category[0] in "LM" or category == "Nd"


def is_hashtag_body(body: str) -> bool:
    """X's rule for what follows '#' (twitter-text): hashtag characters only, at least one of them a
    letter or mark ('#1_2', '#_' and '#〃' are not hashtags, '#1st' is)."""
    return (0 < len(body) <= MAX_HASHTAG_LENGTH and all(map(is_hashtag_character, body))
            and any(unicodedata.category(character)[0] in "LM" for character in body))


@functools.lru_cache(maxsize=65_536)  # a run ranks the same few hundred tags for every image
def normalise(hashtag: str) -> str | None:
    """'#Cat' / 'cat' -> '#Cat' in NFC, or None when it breaks X's hashtag rules."""
    body = unicodedata.normalize("NFC", hashtag.strip()).lstrip(HASH_SIGNS)
    return f"#{body}" if is_hashtag_body(body) else None


@functools.lru_cache(maxsize=65_536)
def fold(hashtag: str) -> str:
    """The case-insensitive key of a hashtag ('#Cat' and '#CAT' are one tag); blocklists hold these."""
    return (normalise(hashtag) or hashtag.strip()).casefold()


def frequency(count: int, peak_count: int) -> float:
    """How often a hashtag occurs with a label, log-scaled into 0..1 against the label's most frequent one."""
    if count <= 0 or peak_count <= 0:
        return 0.0
    return min(1.0, math.log1p(count) / math.log1p(peak_count))


def score(candidate: Candidate, probability: float, peak_count: int | None = None) -> float:
    """Label probability x (source base + frequency) x (1 + trend boost)."""
    peak = candidate.count if peak_count is None else peak_count
    base = SOURCE_BASE.get(candidate.source, 0.0)
    return probability * (base + frequency(candidate.count, peak)) * (1.0 + candidate.trend_boost)


@dataclasses.dataclass(frozen=True)
class Weighted:
    """One candidate of a label as the ranker uses it: its case-folded key, normalised spelling and
    weight, so that its score for an image is the label's probability times `weight`."""

    key: str
    tag: str
    weight: float
    candidate: Candidate
    seen_on_x: float  # the source's base: 1 for X's spellings, 0 for the lexicon's
    posts: int


def prepare(candidates: list[Candidate], blocked: frozenset[str]) -> tuple[Weighted, ...]:
    """A label's candidates, normalised, weighted and without the blocked ones (`blocked`: folded
    hashtags). The same for every image: HashtagEngine prepares each label once per run."""
    peaks: dict[str, int] = defaultdict(int)
    for candidate in candidates:
        family = SOURCE_FAMILY.get(candidate.source, candidate.source)
        peaks[family] = max(peaks[family], candidate.count)
    prepared = []
    for candidate in candidates:
        tag = normalise(candidate.hashtag)
        if tag is None or tag.casefold() in blocked:
            continue
        weight = score(candidate, 1.0, peaks[SOURCE_FAMILY.get(candidate.source, candidate.source)])
        prepared.append(Weighted(tag.casefold(), tag, weight, candidate, SOURCE_BASE.get(candidate.source, 0.0),
                                 max(candidate.count, 1)))
    return tuple(prepared)


def rank(label_probabilities: list[tuple[str, float]], candidates: dict[str, list[Candidate]],
         config: RankConfig = RankConfig(), blocklist: frozenset[str] = frozenset()) -> list[RankedHashtag]:
    """Ranked hashtags for one image from its (label, probability) pairs, best first.

    A hashtag found for several labels or by several sources adds up its scores; it is reported with the
    label and source of its best single contribution and in its most common spelling (X's before the lexicon's).
    """
    blocked = frozenset(fold(tag) for tag in blocklist)
    return rank_prepared(label_probabilities,
                         {label: prepare(candidates.get(label, ()), blocked) for label, _ in label_probabilities},
                         config)


def rank_prepared(label_probabilities: list[tuple[str, float]], prepared: dict[str, tuple[Weighted, ...]],
                  config: RankConfig = RankConfig()) -> list[RankedHashtag]:
    """rank() on candidates already prepared per label (`prepare`): the per-image work only."""
    totals: dict[str, float] = defaultdict(float)
    best: dict[str, tuple[float, Candidate, float]] = {}  # key -> (score, candidate, probability)
    # spelling -> (seen on X, posts): X's spellings win over the lexicon's, whose counts are only positions
    spellings: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    for label, probability in label_probabilities:
        for entry in prepared.get(label, ()):
            key = entry.key
            value = probability * entry.weight
            totals[key] += value
            seen_on_x, posts = spellings[key].get(entry.tag, (0.0, 0))
            spellings[key][entry.tag] = (max(seen_on_x, entry.seen_on_x), posts + entry.posts)
            if key not in best or value > best[key][0]:
                best[key] = (value, entry.candidate, probability)
    if config.by_label:
        ordered = sorted(totals, key=lambda key: (-best[key][2], -totals[key], key))[: config.limit]
    else:
        ordered = sorted(totals, key=lambda key: (-totals[key], key))[: config.limit]
    ranked = []
    for position, key in enumerate(ordered, start=1):
        _, candidate, probability = best[key]
        spelling = max(spellings[key].items(), key=lambda item: (item[1], item[0]))[0]  # most common on X
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
