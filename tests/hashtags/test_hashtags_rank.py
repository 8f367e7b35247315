"""Ranking and normalisation of hashtags: plain functions on small, made-up candidates."""

from __future__ import annotations

import logging

import pytest

from tasks.hashtags import lexicon, providers, rank
from tasks.hashtags.engine import HashtagEngine
from tasks.hashtags.rank import Candidate, RankConfig


def lexicon_candidates(label):
    return lexicon.LexiconProvider().candidates(label)


@pytest.mark.parametrize("raw, expected", [
    ("#Cat", "#Cat"), ("cat", "#Cat".lower()), ("  #maple_tree ", "#maple_tree"), ("＃Caturday", "#Caturday"),
    ("#cafe\u0301", "#caf\u00e9"),  # NFC
    ("#猫", "#猫"), ("#हिन्दी", "#हिन्दी"),  # combining vowel signs are hashtag characters on X
    ("#2024cars", "#2024cars"), ("#_", None), ("#1_2", None), ("#〃", None),  # X: at least one letter
    ("#123", None), ("#", None), ("#lawn-mower", None), ("#lawn mower", None), ("#a" + "b" * 100, None),
])
def test_normalise_follows_x_rules(raw, expected):
    assert rank.normalise(raw) == expected


def test_case_variants_merge_into_the_most_common_spelling():
    candidates = {"cat": [Candidate("#CatsOfInstagram", "cat", 30, "x-search"),
                          Candidate("#catsofinstagram", "cat", 8, "lexicon"),
                          Candidate("#CATSOFINSTAGRAM", "cat", 2, "x-search")]}
    ranked = rank.rank([("cat", 0.9)], candidates)
    assert [tag.hashtag for tag in ranked] == ["#CatsOfInstagram"]
    assert ranked[0].source == "x-search" and ranked[0].label == "cat" and ranked[0].confidence == 0.9


def test_blocklisted_hashtags_never_appear_whatever_their_case():
    candidates = {"cat": [Candidate("#Follow4Follow", "cat", 500, "x-search"), Candidate("#cat", "cat", 5, "x-search")]}
    ranked = rank.rank([("cat", 1.0)], candidates, blocklist=frozenset({"#follow4follow"}))
    assert [tag.hashtag for tag in ranked] == ["#cat"]


def test_shipped_blocklist_is_case_folded():
    blocked = lexicon.shipped_blocklist()
    assert "#follow4follow" in blocked and "#nsfw" in blocked
    assert all(tag == tag.casefold() and tag.startswith("#") for tag in blocked)


@pytest.mark.parametrize("platform, limit", [("instagram", 5), ("x", 3), ("generic", 10)])
def test_platform_presets_cap_the_list(platform, limit):
    many = {"cat": [Candidate(f"#tag{index}", "cat", index + 1, "x-search") for index in range(30)]}
    assert len(rank.rank([("cat", 1.0)], many, RankConfig(platform=platform))) == limit


def test_unknown_platform_is_a_clear_error():
    with pytest.raises(ValueError, match="instagram"):
        RankConfig(platform="myspace").limit


def test_hashtags_from_posts_outrank_plain_lexicon_entries():
    candidates = {"cat": [Candidate("#catnap", "cat", 2, "x-search"),  # rare in posts still beats the lexicon
                          Candidate("#Caturday", "cat", 40, "x-search")] + lexicon_candidates("cat")}
    ranked = rank.rank([("cat", 0.8)], candidates)
    sources = [tag.source for tag in ranked]
    first_lexicon = sources.index("lexicon")
    assert set(sources[:first_lexicon]) == {"x-search"} and "x-search" not in sources[first_lexicon:]
    assert [tag.hashtag for tag in ranked[:2]] == ["#Caturday", "#catnap"]


def test_frequency_is_log_scaled():
    assert rank.frequency(1, 1000) == pytest.approx(0.1003, abs=1e-3)
    assert rank.frequency(1000, 1000) == 1.0 and rank.frequency(0, 10) == 0.0
    half = rank.score(Candidate("#a", "cat", 31, "x-search"), 1.0, peak_count=1023)
    assert half == pytest.approx(1.0 + 0.5, abs=1e-2)  # log1p(31) / log1p(1023) = 0.5


def test_trend_boost_lifts_a_hashtag():
    plain = Candidate("#cat", "cat", 10, "x-search")
    trending = Candidate("#Caturday", "cat", 10, "x-trends", trend_boost=0.5)
    ranked = rank.rank([("cat", 1.0)], {"cat": [plain, trending]})
    assert [(tag.hashtag, tag.source) for tag in ranked] == [("#Caturday", "x-trends"), ("#cat", "x-search")]
    assert ranked[0].score == pytest.approx(1.5 * ranked[1].score)


def test_label_probability_weighs_each_label():
    candidates = {"cat": [Candidate("#cat", "cat", 5, "x-search")], "dog": [Candidate("#dog", "dog", 5, "x-search")]}
    ranked = rank.rank([("cat", 0.7), ("dog", 0.2)], candidates)
    assert [tag.hashtag for tag in ranked] == ["#cat", "#dog"]
    assert ranked[1].confidence == 0.2


def test_a_hashtag_shared_by_labels_adds_up():
    candidates = {"cat": [Candidate("#pets", "cat", 5, "x-search"), Candidate("#cat", "cat", 6, "x-search")],
                  "dog": [Candidate("#pets", "dog", 5, "x-search")]}
    ranked = rank.rank([("cat", 0.5), ("dog", 0.4)], candidates)
    assert ranked[0].hashtag == "#pets" and ranked[0].label == "cat"


def test_top_k_labels_above_the_threshold_plus_the_coarse_label():
    config = RankConfig(top_k_labels=3, min_probability=0.1)
    top = [("maple_tree", 0.6), ("oak_tree", 0.3), ("willow_tree", 0.05), ("pine_tree", 0.04)]
    assert rank.labels_to_use(top, config, [("trees", 0.99)]) == [
        ("maple_tree", 0.6), ("oak_tree", 0.3), ("trees", 0.99 * config.coarse_weight)]
    # the best label always counts, however unsure the model is
    assert rank.labels_to_use([("cat", 0.02)], config) == [("cat", 0.02)]


def test_cifar100_fine_and_coarse_labels_both_contribute():
    engine = HashtagEngine([lexicon.LexiconProvider()], RankConfig())
    ranked = engine.hashtags([("maple_tree", 0.7), ("oak_tree", 0.2)], [("trees", 0.95)])
    assert {"maple_tree", "trees"} <= {tag.label for tag in ranked}


class _Broken:
    source = "x-search"
    optional = True

    def candidates(self, label):
        raise RuntimeError("database went away")


def test_a_failing_optional_provider_degrades_to_the_lexicon_with_one_warning(caplog):
    engine = HashtagEngine([_Broken(), lexicon.LexiconProvider()], RankConfig(platform="instagram"))
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"):
        first = engine.hashtags([("cat", 0.9)])
        second = engine.hashtags([("dog", 0.9)])
    assert [tag.source for tag in first + second] == ["lexicon"] * 10
    assert len(caplog.records) == 1


class _Refusing:
    """An optional provider whose database refuses connections until `refusing` is cleared."""
    source = "x-search"
    optional = True

    def __init__(self):
        self.refusing, self.asked = True, []

    def candidates(self, label):
        self.asked.append(label)
        if self.refusing:
            raise RuntimeError("too many connections for role")
        return [Candidate("#CatsOfX", label, 500, "x-search")]


def test_a_failing_optional_provider_is_paused_then_asked_again_not_dropped_for_the_run():
    now = [0.0]
    provider = _Refusing()
    engine = HashtagEngine([provider, lexicon.LexiconProvider()], RankConfig(), clock=lambda: now[0])
    assert {tag.source for tag in engine.hashtags([("cat", 0.9)])} == {"lexicon"}
    now[0] += 30  # within the pause: the provider is not asked, images keep the lexicon's hashtags
    provider.refusing = False
    assert {tag.source for tag in engine.hashtags([("cat", 0.9)])} == {"lexicon"}
    assert provider.asked == ["cat"]
    now[0] += 31  # the pause is over: the label's candidates are asked again, and the X hashtag is back
    top = engine.hashtags([("cat", 0.9)])
    assert top[0].hashtag == "#CatsOfX" and provider.asked == ["cat", "cat"]
    engine.hashtags([("cat", 0.9)])
    assert provider.asked == ["cat", "cat"], "once complete, a label is asked once per run again"


def test_without_a_database_engine_for_is_the_lexicon_as_before(hashtagger_home):
    engine = providers.engine_for(None, RankConfig(platform="instagram"))
    before = HashtagEngine([lexicon.LexiconProvider()], RankConfig(platform="instagram"))
    top = [("cat", 0.8), ("dog", 0.15)]
    assert engine.hashtags(top) == before.hashtags(top)
    assert [tag.hashtag for tag in engine.hashtags(top)] == ["#cat", "#cats", "#catsofinstagram", "#catstagram",
                                                            "#kitty"]
    assert not hashtagger_home.exists()  # reading the default database never creates it
