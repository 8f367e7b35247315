"""Checks on the curated offline hashtag lexicon (tasks/resources/lexicon.json) and blocklist."""

import json
import re
from pathlib import Path

import pytest

import tasks

DATA = Path(tasks.__file__).parent / "resources"

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# X hashtag rule (ASCII only here): '#', then letters/digits/underscore, not digits only.
HASHTAG_RE = re.compile(r"^#(?=\w*[A-Za-z_])\w+$", re.ASCII)


def _cifar100():
    return json.loads((DATA / "cifar100-labels.json").read_text(encoding="utf-8"))


def _lexicon():
    return json.loads((DATA / "lexicon.json").read_text(encoding="utf-8"))


def _blocklist():
    entries = []
    for line in (DATA / "blocklist.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        entries.append(line)
    return entries


def _all_label_names():
    c100 = _cifar100()
    return set(CIFAR10) | set(c100["fine_names"]) | set(c100["coarse_names"])


def test_lexicon_shape():
    lex = _lexicon()
    assert lex["version"] == 1
    assert isinstance(lex["labels"], dict)
    for label, tags in lex["labels"].items():
        assert isinstance(tags, list), label
        assert all(isinstance(t, str) for t in tags), label


def test_every_label_is_covered_and_nothing_extra():
    labels = set(_lexicon()["labels"])
    expected = _all_label_names()
    assert expected - labels == set(), "labels missing from lexicon"
    assert labels - expected == set(), "lexicon has labels that are not CIFAR class names"


@pytest.mark.parametrize("label", sorted(_all_label_names()))
def test_label_has_6_to_10_valid_unique_hashtags(label):
    tags = _lexicon()["labels"][label]
    assert 6 <= len(tags) <= 10, f"{label}: {len(tags)} hashtags"
    for tag in tags:
        assert HASHTAG_RE.match(tag), f"{label}: {tag!r} breaks the hashtag rule"
    folded = [t.casefold() for t in tags]
    assert len(folded) == len(set(folded)), f"{label}: duplicate hashtags {tags}"


def test_hashtag_regex_sanity():
    for good in ["#cat", "#maple_tree", "#follow4", "#_", "#2024cars"]:
        assert HASHTAG_RE.match(good), good
    for bad in ["cat", "#", "#123", "#lawn-mower", "#lawn mower", "##cat", "#café"]:
        assert not HASHTAG_RE.match(bad), bad


def test_blocklist_parses():
    entries = _blocklist()
    assert entries, "blocklist is empty"
    for entry in entries:
        assert entry.startswith("#"), entry
        assert HASHTAG_RE.match(entry), entry
        assert entry == entry.lower(), entry
    assert len(entries) == len(set(entries)), "duplicate blocklist entries"


def test_no_lexicon_hashtag_is_blocked():
    blocked = {b.casefold() for b in _blocklist()}
    hits = {
        (label, tag)
        for label, tags in _lexicon()["labels"].items()
        for tag in tags
        if tag.casefold() in blocked
    }
    assert not hits, f"blocked hashtags in lexicon: {sorted(hits)}"
