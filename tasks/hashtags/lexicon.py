"""The curated offline hashtags (tasks/resources/lexicon.json) and the shipped blocklist: always available."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tasks.hashtags.rank import Candidate, fold

DATA = Path(__file__).resolve().parent.parent / "resources"
SOURCE = "lexicon"


@functools.lru_cache(maxsize=1)
def entries() -> dict[str, tuple[str, ...]]:
    """Label -> its curated hashtags, the most common first."""
    labels = json.loads((DATA / "lexicon.json").read_text(encoding="utf-8"))["labels"]
    return {label: tuple(tags) for label, tags in labels.items()}


@functools.lru_cache(maxsize=1)
def shipped_blocklist() -> frozenset[str]:
    """Hashtags never to suggest (case-folded, with '#'); '//' starts a comment line."""
    lines = (DATA / "blocklist.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(fold(line) for line in lines if line.strip() and not line.strip().startswith("//"))


class LexiconProvider:
    """Candidates from the lexicon; an entry's place in its list stands in for popularity."""

    source = SOURCE

    def candidates(self, label: str) -> list[Candidate]:
        tags = entries().get(label, ())
        # earlier entries are the more common tags: a pseudo-count that falls with the position
        return [Candidate(tag, label, len(tags) - position, SOURCE) for position, tag in enumerate(tags)]
