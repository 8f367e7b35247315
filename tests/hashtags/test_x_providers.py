"""X providers at the HTTP level: tweepy's requests intercepted with `responses`, recorded-shaped bodies and
X's rate-limit headers. Nothing here touches the network (RequestsMock refuses unregistered URLs) or sleeps."""

from __future__ import annotations

import logging

import pytest
import requests
import responses
from responses import matchers

from fixtures.x_responses import FIXTURES, TOKEN, FakeClock, body, rate_headers
from tasks.hashtags import x_api, x_search, x_trends
from tasks.hashtags.x_api import XClient, XConfig, XUnavailable

SEARCH_URL = "https://api.twitter.com/2/tweets/search/recent"
TRENDS_V2_URL = "https://api.twitter.com/2/trends/by/woeid/1"
TRENDS_V1_URL = "https://api.twitter.com/1.1/trends/place.json"


@pytest.fixture
def x_http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(clock, sleeps):
    return XClient(TOKEN, XConfig(), clock=clock, sleep=sleeps.append)


def search_calls(mock) -> list:
    return [call for call in mock.calls if call.request.url.startswith(SEARCH_URL)]


# ------------------------------------------------------------------------------------------ search

def test_search_sends_one_request_with_the_label_query_and_counts_entity_hashtags(x_http, client, clock):
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"), headers=rate_headers(clock),
               match=[matchers.query_param_matcher({
                   "query": "(cat OR #cat) has:hashtags -is:retweet lang:en",
                   "max_results": "100", "tweet.fields": "entities"})])
    counts, posts = x_search.search_label(client, "cat")
    assert len(search_calls(x_http)) == 1
    assert x_http.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert posts == 7
    # case variants merge into the most common spelling; tags in fewer than 2 posts (#giveaway) are dropped
    assert counts == {"#CatsOfInstagram": 4, "#Caturday": 3, "#cat": 3, "#AdoptDontShop": 2,
                      "#catlife": 2, "#follow4follow": 2}


def test_query_reads_underscores_as_spaces_and_adds_synonyms():
    assert x_search.search_query("maple_tree") == \
        '("maple tree" OR "maple leaves" OR #mapletree) has:hashtags -is:retweet lang:en'
    assert x_search.search_query("pickup_truck", None) == '("pickup truck" OR #pickuptruck) has:hashtags -is:retweet'
    assert "vehicles" in x_search.search_query("vehicles_1")


def test_hashtags_come_from_the_text_when_entities_are_absent(x_http, client, clock):
    x_http.add(responses.GET, SEARCH_URL, json=body("search_dog_text_only.json"), headers=rate_headers(clock))
    counts, posts = x_search.search_label(client, "dog")
    assert posts == 3
    # '#2024' (digits only), the keycap emoji, '#puppy#love' and one-post tags are not counted
    assert counts == {"#DogsOfInstagram": 3, "#GoldenRetriever": 2}


@pytest.mark.parametrize("text, expected", [
    ("Love my #Cat and #猫", ["#Cat", "#猫"]),
    ("#1st place, not #123", ["#1st"]),
    ("café: #cafe\u0301", ["#café"]),  # NFC: a decomposed accent becomes one character
    ("a#b &#39; https://example.com/#fragment", []),
    ("#️⃣ #kitty#x ＃Caturday", ["#Caturday"]),
    ("#under_score_ok #_", ["#under_score_ok"]),  # twitter-text: at least one letter
    ("#_ #1_2 #〃 #__1 #1st #〃猫", ["#1st", "#〃猫"]),
    ("RT @cats: look at this #CatsOfX and #A…", ["#CatsOfX"]),  # X cut the retweet: '#A' is a fragment
    ("RT @cats: #Caturday #Ca…  ", ["#Caturday"]),
    ("not cut: #cat… and more", ["#cat"]),
    # twitter-text's conformance suite (conformance/extract.yml, v3.1.0): after an emoji, with or without
    # a variation selector or a skin tone, a hashtag starts...
    ("a \u270c#hashtag here", ["#hashtag"]),
    ("a \u270c\ufe0e#hashtag here", ["#hashtag"]),
    ("a \u270c\ufe0f#hashtag here", ["#hashtag"]),
    ("a \u270c\U0001f3ff#hashtag here", ["#hashtag"]),
    ("a \u270c\U0001f3ff\ufe0f#hashtag here", ["#hashtag"]),
    # ... and a '#' inside a link, with or without its scheme, is not one
    ("http://twitter.com/#hashtag twitter.com/#hashtag", []),
    ("http://example.com/#tag example.com/#tag see #real", ["#real"]),
    ("#http://twitter.com #https://twitter.com", []),
    ("end of a sentence.#tag and/#slash", ["#tag", "#slash"]),  # no link: hashtags
])
def test_text_hashtags_follow_x_rules(text, expected):
    assert x_search.hashtags_in_text(text) == expected


def test_pagination_stops_at_the_configured_cap(x_http, clock, sleeps):
    client = XClient(TOKEN, XConfig(max_posts=150), clock=clock, sleep=sleeps.append)
    first, second = body("search_maple_tree_page1.json"), body("search_maple_tree_page2.json")
    query = x_search.search_query("maple_tree")
    x_http.add(responses.GET, SEARCH_URL, json=first, headers=rate_headers(clock), match=[
        matchers.query_param_matcher({"query": query, "max_results": "100", "tweet.fields": "entities"})])
    x_http.add(responses.GET, SEARCH_URL, json=second, headers=rate_headers(clock), match=[
        matchers.query_param_matcher({"query": query, "max_results": "100", "tweet.fields": "entities",
                                      "next_token": first["meta"]["next_token"]})])
    counts, posts = x_search.search_label(client, "maple_tree")
    # two pages for a cap of 150 posts, although the second offers a next_token
    assert len(search_calls(x_http)) == 2 and posts == 5
    assert counts == {"#MapleTree": 5, "#fallfoliage": 3, "#autumnvibes": 2}


def test_an_empty_answer_is_no_hashtags_not_a_failure(x_http, client, clock):
    x_http.add(responses.GET, SEARCH_URL, json=body("search_empty.json"), headers=rate_headers(clock))
    assert x_search.search_label(client, "flatfish") == ({}, 0)


# ------------------------------------------------------------------------------------------ failures

def test_401_turns_x_off_with_one_warning_and_no_more_calls(x_http, client, clock, caplog):
    x_http.add(responses.GET, SEARCH_URL, json=body("error_401.json"), status=401, headers=rate_headers(clock))
    with caplog.at_level(logging.INFO, logger="tasks.hashtags"):
        for label in ("cat", "dog", "bird"):
            with pytest.raises(XUnavailable) as raised:
                x_search.search_label(client, label)
            assert raised.value.status == "denied"
    assert len(search_calls(x_http)) == 1
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "401 Unauthorized" in warnings[0].getMessage() and "bearer token" in warnings[0].getMessage()
    assert client.off and not client.available(x_api.SEARCH)


def test_403_client_not_enrolled_turns_x_off(x_http, client, clock, caplog):
    x_http.add(responses.GET, SEARCH_URL, json=body("error_403_client_forbidden.json"), status=403)
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"), pytest.raises(XUnavailable):
        x_search.search_label(client, "cat")
    assert client.off and "attached to a Project" in client.off_reason
    assert len(caplog.records) == 1


def test_429_pauses_until_the_reset_time_without_sleeping(x_http, client, clock, sleeps):
    x_http.add(responses.GET, SEARCH_URL, json=body("error_429.json"), status=429,
               headers=rate_headers(clock, remaining=0, reset_in=600))
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"), headers=rate_headers(clock))
    with pytest.raises(XUnavailable) as raised:
        x_search.search_label(client, "cat")
    assert raised.value.status == "rate-limited"
    assert client.paused_until[x_api.SEARCH] == clock() + 600
    with pytest.raises(XUnavailable):  # no call while paused
        x_search.search_label(client, "dog")
    assert len(search_calls(x_http)) == 1 and sleeps == []
    clock.advance(601)
    assert x_search.search_label(client, "cat")[1] == 7  # calls resume after x-rate-limit-reset
    assert len(search_calls(x_http)) == 2 and sleeps == []


def test_no_calls_left_in_the_window_pauses_before_a_429(x_http, client, clock):
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"),
               headers=rate_headers(clock, remaining=0, reset_in=300))
    x_search.search_label(client, "cat")
    assert not client.available(x_api.SEARCH) and not client.off
    with pytest.raises(XUnavailable):
        x_search.search_label(client, "dog")
    assert len(search_calls(x_http)) == 1


def test_503_is_retried_with_backoff_then_succeeds(x_http, client, clock, sleeps):
    for _ in range(2):
        x_http.add(responses.GET, SEARCH_URL, json=body("error_503.json"), status=503)
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"), headers=rate_headers(clock))
    assert x_search.search_label(client, "cat")[1] == 7
    assert len(search_calls(x_http)) == 3 and sleeps == [2.0, 4.0]


def test_503_retries_are_bounded(x_http, client, sleeps):
    x_http.add(responses.GET, SEARCH_URL, json=body("error_503.json"), status=503)
    with pytest.raises(XUnavailable) as raised:
        x_search.search_label(client, "cat")
    assert raised.value.status == "error" and "503" in str(raised.value)
    assert len(search_calls(x_http)) == 3 and sleeps == [2.0, 4.0]
    assert not client.off  # a bad moment, not a refusal: the next label may try again


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("Read timed out. (read timeout=10.0)"),
                                     requests.exceptions.ConnectionError("Connection reset by peer")])
def test_timeouts_and_dropped_connections_are_retried(x_http, client, clock, sleeps, failure):
    x_http.add(responses.GET, SEARCH_URL, body=failure)
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"), headers=rate_headers(clock))
    assert x_search.search_label(client, "cat")[1] == 7
    assert sleeps == [2.0]


def test_requests_carry_a_timeout(x_http, client, clock):
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"), headers=rate_headers(clock))
    x_search.search_label(client, "cat")
    assert x_http.calls[0].request.req_kwargs["timeout"] == XConfig().timeout_s


@pytest.mark.parametrize("garbage", [
    (FIXTURES / "search_cat.json").read_text()[:200],  # cut short
    "<html><body>Something went wrong</body></html>",
    '["not", "a", "search", "answer"]',
    '{"data": "nonsense"}',
])
def test_malformed_answers_fall_back_without_retrying(x_http, client, sleeps, garbage):
    x_http.add(responses.GET, SEARCH_URL, body=garbage, status=200, content_type="application/json")
    with pytest.raises(XUnavailable) as raised:
        x_search.search_label(client, "cat")
    assert raised.value.status == "malformed"
    assert len(search_calls(x_http)) == 1 and sleeps == []


# ------------------------------------------------------------------------------------------ trends

def test_v2_trends_are_read_through_the_same_session_and_token(x_http, client, clock):
    x_http.add(responses.GET, TRENDS_V2_URL, json=body("trends_v2_woeid_1.json"), headers=rate_headers(clock, limit=75),
               match=[matchers.query_param_matcher({"max_trends": "50", "trend.fields": "trend_name,tweet_count"})])
    trends = x_trends.fetch_trends(client)
    assert x_http.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    # hashtag trends as they are, phrases as the hashtag people write for them
    assert trends == {"#Caturday": 48213, "#BlackFriday": 512034, "#WorldCup2026": 120455, "#Thanksgiving": 0,
                      "#StJames": 5565}


def test_v1_trends_answer_when_v2_is_forbidden(x_http, client, clock, caplog):
    x_http.add(responses.GET, TRENDS_V2_URL, json=body("error_403_client_forbidden.json"), status=403)
    x_http.add(responses.GET, TRENDS_V1_URL, json=body("trends_v1_place_1.json"), headers=rate_headers(clock, limit=75),
               match=[matchers.query_param_matcher({"id": "1"})])
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"):
        trends = x_trends.fetch_trends(client)
    assert trends == {"#Caturday": 48213, "#BlackFriday": 512034, "#NationalCatDay": 0}
    assert caplog.records == [] and not client.off  # trends are a bonus: no alarm, search stays on


def test_v1_trends_403_on_low_tiers_is_skipped_quietly(x_http, client, clock, caplog):
    x_http.add(responses.GET, TRENDS_V2_URL, json=body("error_503.json"), status=503)
    x_http.add(responses.GET, TRENDS_V1_URL, json=body("error_403_v1_453.json"), status=403)
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"), pytest.raises(XUnavailable):
        x_trends.fetch_trends(client)
    assert caplog.records == [] and not client.off
    assert x_api.TRENDS_V1 in client.closed
    with pytest.raises(XUnavailable):  # closed for the run: not asked again
        client.trends_v1(1)
    assert len([call for call in x_http.calls if call.request.url.startswith(TRENDS_V1_URL)]) == 1


def test_v1_trends_timeouts_are_retried(x_http, client, clock, sleeps):
    x_http.add(responses.GET, TRENDS_V2_URL, json=body("error_403_client_forbidden.json"), status=403)
    x_http.add(responses.GET, TRENDS_V1_URL, body=requests.exceptions.ConnectTimeout("connect timeout"))
    x_http.add(responses.GET, TRENDS_V1_URL, json=body("trends_v1_place_1.json"), headers=rate_headers(clock))
    assert "#Caturday" in x_trends.fetch_trends(client)
    assert sleeps == [2.0]


def test_no_token_means_no_client():
    assert x_api.bearer_token(None) is None
    assert x_api.bearer_token("  ") is None
    assert x_api.bearer_token(" abc ") == "abc"


def test_bearer_token_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("X_BEARER_TOKEN", "from-env")
    assert x_api.bearer_token() == "from-env"
    assert x_api.bearer_token("from-airflow") == "from-airflow"


@pytest.mark.parametrize("post, expected", [
    ({"text": "RT @cats: #Caturday #A\u2026", "entities": {"hashtags": [
        {"start": 10, "end": 19, "tag": "Caturday"}, {"start": 20, "end": 22, "tag": "A"}]}}, ["#Caturday"]),
    ({"text": "RT @cats: #Caturday #A\u2026", "entities": {"hashtags": [{"tag": "Caturday"}, {"tag": "A"}]}},
     ["#Caturday"]),  # no offsets: the text says which one runs into the cut
    ({"text": "#_ and #1_2 #kitten", "entities": {"hashtags": [{"tag": "_"}, {"tag": "1_2"}, {"tag": "kitten"}]}},
     ["#kitten"]),
    ({"text": "entities win: #fromtext", "entities": {"hashtags": [{"tag": "FromEntities"}]}}, ["#FromEntities"]),
])
def test_post_hashtags_come_from_entities_by_x_rules_and_never_from_a_truncated_tail(post, expected):
    assert x_search.post_hashtags(post) == expected


def test_block_says_an_underscore_is_not_a_hashtag(sqlite_url, monkeypatch, capsys):
    from tasks.cli import main as cli

    monkeypatch.setenv("HASHTAGGER_DB_URL", sqlite_url)
    assert cli.main(["db", "migrate"]) == 0  # a configured database is migrated once, by `db migrate` (issue 10)
    capsys.readouterr()
    for text in ("#_", "#1_2", "#〃"):  # a usage error, through the CLI's one handler (tasks/errors.py)
        assert cli.main(["hashtags", "block", text]) == 2
        assert f"{text!r} is not a hashtag" in capsys.readouterr().err
    assert cli.main(["hashtags", "block", "#spam_2"]) == 0


def test_no_token_reaches_any_log_at_debug(x_http, clock, sleeps, caplog):
    x_http.add(responses.GET, SEARCH_URL, json=body("search_cat.json"), headers=rate_headers(clock))
    with caplog.at_level(logging.DEBUG):
        client = XClient(TOKEN, XConfig(), clock=clock, sleep=sleeps.append)
        x_search.search_label(client, "cat")
        logging.getLogger("some.other.module").debug("headers %s", {"Authorization": f"Bearer {TOKEN}"})
    assert "Making API request" in caplog.text, "tweepy did log the request at DEBUG"
    assert TOKEN not in caplog.text and "Bearer [redacted]" in caplog.text
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"ttl_hours": -1}, r"^ttl_hours -1: a time to live must be a number of hours, at least 0$"),
    ({"trends_ttl_hours": -0.5}, "^trends_ttl_hours -0.5: a time to live"),
    ({"woeid": -5}, "woeid must be a Where On Earth ID"),
    ({"woeid": 0}, "woeid"),
    ({"max_posts": 5}, "max_posts must be at least 10"),
    ({"ttl_hours": float("nan")}, "^ttl_hours nan: a time to live"), ({"serve_max_age_hours": float("inf")}, "^serve_max_age_hours inf"),
])
def test_settings_out_of_range_are_refused_before_any_request(settings, expected):
    """A fresh user's `hashtags refresh --ttl-hours -1 --woeid -5` ran as if they were fine."""
    with pytest.raises(ValueError, match=expected):
        XConfig(**settings)
