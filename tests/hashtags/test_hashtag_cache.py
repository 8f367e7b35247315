"""The X hashtag cache on real PostgreSQL and SQLite: refresh (one request per label, none within the time to
live, every failure survived), tagging reads (posts outrank the lexicon, blocklists hold), and the commands.
X is `responses` intercepting tweepy's HTTP; the clock and sleep are injected, so nothing waits."""

from __future__ import annotations

import logging

import pytest
import responses
import sqlalchemy as sa
from responses import matchers

from fixtures.x_responses import TOKEN, FakeClock, body
from fixtures.x_responses import rate_headers as headers
from tasks.cli import main as cli
from tasks.store import db
from tasks.config import Settings
from tasks.hashtags import cache, providers, refresh, x_search
from tasks.hashtags.rank import RankConfig

SEARCH_URL = "https://api.twitter.com/2/tweets/search/recent"
TRENDS_V2_URL = "https://api.twitter.com/2/trends/by/woeid/1"
HOUR = 3600


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def x_http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def results(db_url):
    engine = db.engine(db_url)
    db.migrate(engine)
    yield engine
    engine.dispose()


def serve_search(mock, clock, label: str, fixture: str | None = None, status: int = 200, text: str | None = None,
                 reset_in: int = 900):
    """Answer X's recent search for one label's query."""
    match = [matchers.query_param_matcher({"query": x_search.search_query(label)}, strict_match=False)]
    answer = {"body": text} if text is not None else {"json": body(fixture)}
    mock.add(responses.GET, SEARCH_URL, status=status, headers=headers(clock, 0 if status == 429 else 449, reset_in),
             match=match, **answer)


def serve_trends(mock, clock, fixture: str = "trends_v2_woeid_1.json", status: int = 200):
    mock.add(responses.GET, TRENDS_V2_URL, json=body(fixture), status=status, headers=headers(clock))


def search_calls(mock, label: str | None = None) -> list:
    calls = [call for call in mock.calls if call.request.url.startswith(SEARCH_URL)]
    if label is not None:
        query = x_search.search_query(label)
        calls = [call for call in calls if call.request.params.get("query") == query]
    return calls


def run_refresh(results, clock, sleeps, labels, **kwargs) -> dict:
    return refresh.refresh(results, labels, bearer_token=TOKEN, clock=clock, sleep=sleeps.append, **kwargs)


def ranked(results, label: str, platform: str = "generic", probability: float = 0.9):
    return providers.engine_for(results, RankConfig(platform=platform)).hashtags([(label, probability)])


# ------------------------------------------------------------------------------------------ schema

def test_cache_tables_store_and_replace_a_labels_hashtags(results, clock):
    assert {"hashtag_cache", "hashtag_fetches", "hashtag_blocklist"} <= set(sa.inspect(results).get_table_names())
    now = cache.utc(clock())
    cache.store(results, "cat", "x-search", {"#Cat": 5, "#Caturday": 3}, now, posts=40)
    cache.store(results, "cat", "x-search", {"#Cat": 5, "#Caturday": 3}, now, posts=40)  # idempotent
    assert cache.read(results, "cat", "x-search", now) == {"#Cat": 5, "#Caturday": 3}
    later = cache.utc(clock() + 60)
    cache.store(results, "cat", "x-search", {"#Cat": 7}, later)  # a new fetch replaces the old rows
    assert cache.read(results, "cat", "x-search", now) == {"#Cat": 7}
    assert cache.read(results, "cat", "x-search", cache.utc(clock() + 61)) == {}  # older than asked for
    assert cache.fresh_labels(results, "x-search", now) == {"cat"}


# ------------------------------------------------------------------------------------------ refresh

def test_refresh_makes_one_request_per_label_and_none_within_the_ttl(results, x_http, clock, sleeps):
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    serve_search(x_http, clock, "dog", "search_dog_text_only.json")
    serve_search(x_http, clock, "flatfish", "search_empty.json")
    summary = run_refresh(results, clock, sleeps, ["cat", "dog", "flatfish"])
    assert [len(search_calls(x_http, label)) for label in ("cat", "dog", "flatfish")] == [1, 1, 1]
    assert summary.requests == {"recent search": 3, "trends (v2)": 1}
    assert (summary.fetched, summary.empty, summary.errors, summary.trends) == (2, 1, 0, "ok")

    clock.advance(HOUR / 2)  # within both times to live: no call at all, not even for the label with no hashtags
    again = run_refresh(results, clock, sleeps, ["cat", "dog", "flatfish"])
    assert len(x_http.calls) == 4 and again.fresh == 3 and again.requests == {}

    clock.advance(6 * HOUR)  # past the time to live: one request per label again
    run_refresh(results, clock, sleeps, ["cat", "dog", "flatfish"])
    assert [len(search_calls(x_http, label)) for label in ("cat", "dog", "flatfish")] == [2, 2, 2]
    assert sleeps == []


def test_tagging_reads_the_cache_and_posts_outrank_the_lexicon(results, x_http, clock, sleeps, monkeypatch):
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    run_refresh(results, clock, sleeps, ["cat"])
    calls_after_refresh = len(x_http.calls)
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)  # even with credentials, tagging never calls X

    reads = []
    sa.event.listen(results, "before_cursor_execute",
                    lambda conn, cursor, statement, *args: reads.append(statement) if "hashtag_cache" in statement
                    else None)
    engine = providers.engine_for(results, RankConfig())
    for _ in range(3):  # three images of cats and horses
        tags = engine.hashtags([("cat", 0.8), ("horse", 0.15)])
    assert len(x_http.calls) == calls_after_refresh
    assert len([s for s in reads if "SELECT" in s]) == 3  # once per label (cat, horse) and once for the trends

    sources = [tag.source for tag in tags]
    first_lexicon = sources.index("lexicon")
    assert set(sources[:first_lexicon]) == {"x-search", "x-trends"}
    assert not {"x-search", "x-trends"} & set(sources[first_lexicon:])
    by_tag = {tag.hashtag: tag for tag in tags}
    assert by_tag["#Caturday"].source == "x-trends"  # trending now and seen with cats: boosted
    assert by_tag["#CatsOfInstagram"].source == "x-search"  # X's most common spelling wins over the lexicon's
    assert "#follow4follow" not in by_tag  # shipped blocklist, although X's posts carry it
    assert "#giveaway" not in by_tag  # one post only: noise
    horse = providers.engine_for(results, RankConfig()).hashtags([("horse", 0.9)])
    assert {tag.source for tag in horse} == {"lexicon"}  # a label the cache lacks falls back to the lexicon


def test_instagram_preset_and_the_database_blocklist(results, x_http, clock, sleeps):
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    run_refresh(results, clock, sleeps, ["cat"])
    assert "#catlife" in [tag.hashtag.casefold() for tag in ranked(results, "cat")]
    assert cache.block(results, "#CatLife", reason="off-brand") == "#catlife"
    assert cache.block(results, "＃caturday") == "#caturday"
    tags = ranked(results, "cat", "instagram")
    assert len(tags) <= 5
    assert not {"#catlife", "#caturday", "#follow4follow"} & {tag.hashtag.casefold() for tag in tags}
    assert len(ranked(results, "cat", "x")) <= 3
    assert cache.unblock(results, "#CATLIFE") and not cache.unblock(results, "#catlife")
    assert "#catlife" in [tag.hashtag.casefold() for tag in ranked(results, "cat")]
    with pytest.raises(ValueError, match="not a hashtag"):
        cache.block(results, "#123")


def test_429_stops_calls_until_reset_and_the_run_completes(results, x_http, clock, sleeps, caplog):
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    serve_search(x_http, clock, "dog", "error_429.json", status=429, reset_in=600)
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"):
        summary = run_refresh(results, clock, sleeps, ["cat", "dog", "bird"])
    assert summary.fetched == 1 and summary.errors == 1 and summary.not_tried == 1
    assert summary.x.startswith("rate-limited until")
    assert len(search_calls(x_http)) == 2 and sleeps == []  # bird was not asked, nothing waited
    assert len(caplog.records) == 1 and "x-rate-limit-reset" in caplog.records[0].getMessage()
    assert {tag.source for tag in ranked(results, "dog")} == {"lexicon"}  # served meanwhile
    assert ranked(results, "cat")[0].source.startswith("x-")

    clock.advance(601)  # after the reset: the labels left are fetched, the fresh one is not
    serve_search(x_http, clock, "dog", "search_dog_text_only.json")
    serve_search(x_http, clock, "bird", "search_empty.json")
    run_refresh(results, clock, sleeps, ["cat", "dog", "bird"])
    assert [len(search_calls(x_http, label)) for label in ("cat", "dog", "bird")] == [1, 2, 1]
    assert ranked(results, "dog")[0].hashtag == "#DogsOfInstagram"


@pytest.mark.parametrize("failure", ["503", "garbage"])
def test_503_and_garbage_complete_on_the_cache_or_the_lexicon(results, x_http, clock, sleeps, failure):
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    run_refresh(results, clock, sleeps, ["cat"])
    clock.advance(7 * HOUR)
    x_http.reset()
    serve_trends(x_http, clock, "error_503.json", status=503)
    for label in ("cat", "dog"):
        if failure == "503":
            serve_search(x_http, clock, label, "error_503.json", status=503)
        else:
            serve_search(x_http, clock, label, text='{"data": [{"id": "1861779221345128704", "text": "Sunday')
    summary = run_refresh(results, clock, sleeps, ["cat", "dog"])
    assert summary.errors == 2 and summary.fetched == 0
    attempts = 3 if failure == "503" else 1  # 5xx: bounded retries with backoff; garbage: no retry
    assert [len(search_calls(x_http, label)) for label in ("cat", "dog")] == [attempts, attempts]
    assert summary.trends == "error"
    # the stale posts' hashtags still beat the lexicon for cats; dogs get the lexicon
    assert ranked(results, "cat")[0].source == "x-search"
    assert {tag.source for tag in ranked(results, "dog")} == {"lexicon"}
    statuses = {row.source: row.status for row in cache.fetches(results, "cat")}
    assert statuses["x-search"] == ("error" if failure == "503" else "malformed")
    clock.advance(60)  # a failed label is not fresh: the next refresh asks again
    serve_search(x_http, clock, "cat", "search_cat.json")
    assert run_refresh(results, clock, sleeps, ["cat"]).fetched == 1


def test_x_failing_label_after_label_is_turned_off(results, x_http, clock, sleeps):
    serve_trends(x_http, clock)
    for label in ("cat", "dog", "bird", "frog"):
        serve_search(x_http, clock, label, "error_503.json", status=503)
    summary = run_refresh(results, clock, sleeps, ["cat", "dog", "bird", "frog"])
    assert summary.errors == 3 and summary.not_tried == 1 and summary.x.startswith("off")
    assert len(search_calls(x_http)) == 9 and len(sleeps) == 6


@pytest.mark.parametrize("where", ["trends", "search"])
def test_401_turns_x_off_with_one_warning(results, x_http, clock, sleeps, caplog, where):
    if where == "trends":
        serve_trends(x_http, clock, "error_401.json", status=401)
    else:
        serve_trends(x_http, clock)
    for label in ("cat", "dog", "bird"):
        serve_search(x_http, clock, label, "error_401.json", status=401)
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"):
        summary = run_refresh(results, clock, sleeps, ["cat", "dog", "bird"])
    assert len(search_calls(x_http)) == (0 if where == "trends" else 1)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "401 Unauthorized" in warnings[0] and "X is off" in warnings[0]
    assert summary.x.startswith("off") and summary.fetched == 0
    assert [tag.source for tag in ranked(results, "cat", "instagram")] == ["lexicon"] * 5


def test_without_credentials_refresh_warns_once_and_calls_nothing(results, x_http, clock, sleeps, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.hashtags"):
        summary = refresh.refresh(results, ["cat", "dog"], clock=clock, sleep=sleeps.append)
    assert len(x_http.calls) == 0
    assert summary.x == "no credentials" and summary.not_tried == 2
    assert len(caplog.records) == 1 and "X_BEARER_TOKEN" in caplog.records[0].getMessage()


def test_the_token_argument_wins_over_the_environment(results, x_http, clock, sleeps, monkeypatch):
    monkeypatch.setenv("X_BEARER_TOKEN", "stale-env-token")
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    run_refresh(results, clock, sleeps, ["cat"])  # bearer_token=TOKEN, as the Airflow task passes it
    assert {call.request.headers["Authorization"] for call in x_http.calls} == {f"Bearer {TOKEN}"}


# ------------------------------------------------------------------------------------------ defaults and commands

def test_default_labels_are_the_dataset_class_names():
    assert refresh.default_labels("cifar10")[:3] == ["airplane", "automobile", "bird"]
    cifar100 = refresh.default_labels("cifar100")
    assert len(cifar100) == 120 and "maple_tree" in cifar100 and "trees" in cifar100
    with pytest.raises(ValueError, match="cifar100"):
        refresh.default_labels("mnist")


def test_the_hashtag_command_path_reads_the_default_database(x_http, clock, sleeps):
    """engine_for(None), as `hashtag IMAGE` calls it, uses the default results database when it has a cache."""
    default = db.ensure_schema(db.engine(Settings.from_env().database_url))
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    run_refresh(default, clock, sleeps, ["cat"])
    tags = providers.engine_for(None, RankConfig(platform="instagram")).hashtags([("cat", 0.9)], None)
    assert len(tags) == 5 and tags[0].source.startswith("x-")
    default.dispose()


def test_hashtags_commands(results, x_http, clock, monkeypatch, capsys):
    monkeypatch.setenv("HASHTAGGER_DB_URL", results.url.render_as_string(hide_password=False))
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    serve_search(x_http, clock, "dog", "search_dog_text_only.json")
    assert cli.main(["hashtags", "refresh", "--labels", "cat,dog"]) == 0
    out = capsys.readouterr().out
    assert "2 labels: 2 fetched" in out and "2 recent search" in out
    assert cli.main(["hashtags", "refresh", "--labels", "cat,dog"]) == 0
    assert "2 still fresh" in capsys.readouterr().out and len(search_calls(x_http)) == 2
    assert cli.main(["hashtags", "block", "#CatLife", "--reason", "off-brand"]) == 0
    assert cli.main(["hashtags", "block", "#123"]) == 2
    assert cli.main(["hashtags", "show", "cat", "--platform", "instagram"]) == 0
    out = capsys.readouterr().out
    assert "#CatsOfInstagram" in out and "(trending)" in out
    ranked_line = next(line for line in out.splitlines() if line.startswith("ranked:"))
    assert "#catlife" not in ranked_line.casefold() and ranked_line.count("#") == 5
    assert cli.main(["hashtags", "unblock", "#follow4follow"]) == 0
    assert "stays blocked" in capsys.readouterr().out


# ------------------------------------------------------------------ a refused connection (issue 21 item 9)

@pytest.fixture
def limited_role(pg_url):
    """A role allowed 2 connections (CONNECTION LIMIT 2) that may read the test's database; dropped after."""
    import uuid

    name = f"hashtagger_limited_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 2'))
    yield name, sa.engine.make_url(pg_url).set(username=name).render_as_string(hide_password=False)
    db.engine.cache_clear()
    with admin.connect() as connection:
        connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
                           {"n": name})
        connection.execute(sa.text(f'DROP OWNED BY "{name}"'))
        connection.execute(sa.text(f'DROP ROLE "{name}"'))
    admin.dispose()


def take_connections(url: str, count: int = 2) -> list:
    """`count` of the role's connections, held open (another worker's, say) until closed."""
    import psycopg2

    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return [psycopg2.connect(dsn) for _ in range(count)]


@pytest.mark.postgres
def test_a_refused_connection_costs_no_x_hashtags(pg_url, limited_role, x_http, clock, sleeps, monkeypatch):
    import threading
    import time

    import psycopg2

    from tasks.hashtags import lexicon
    from tasks.hashtags.engine import HashtagEngine

    admin = db.engine(pg_url)
    db.migrate(admin)
    serve_trends(x_http, clock)
    serve_search(x_http, clock, "cat", "search_cat.json")
    serve_search(x_http, clock, "dog", "search_dog_text_only.json")
    run_refresh(admin, clock, sleeps, ["cat", "dog"])
    role, role_url = limited_role
    with admin.begin() as connection:
        connection.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    held = take_connections(role_url)
    reads = db.engine(role_url)
    now = [0.0]
    hashtags = HashtagEngine([cache.CacheProvider(reads, RankConfig(), clock=clock), lexicon.LexiconProvider()],
                             RankConfig(), clock=lambda: now[0])

    # refused ("too many connections for role"), then a connection frees within the retry window
    threading.Timer(1.0, held.pop().close).start()
    assert "x-search" in {tag.source for tag in hashtags.hashtags([("cat", 0.9)])}

    # refused for longer than the window: the provider is paused, not dropped for the run
    monkeypatch.setattr(cache, "READ_RETRY_WINDOW_S", 1.5)
    reads.dispose()  # its pooled connection is closed: the next read must connect
    for _ in range(50):  # the server counts the closed connection until its backend has exited
        try:
            held += take_connections(role_url, 1)
            break
        except psycopg2.OperationalError:  # too many connections for role: not yet
            time.sleep(0.1)
    assert len(held) == 2
    assert {tag.source for tag in hashtags.hashtags([("dog", 0.9)])} == {"lexicon"}
    for connection in held:
        connection.close()
    now[0] += 61
    assert "x-search" in {tag.source for tag in hashtags.hashtags([("dog", 0.9)])}
