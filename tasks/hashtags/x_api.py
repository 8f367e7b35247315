"""One run's access to X: tweepy's clients behind a failure policy that never lets X fail a run.

- 401 (and 403 or 402 on search): X is off for the rest of the run, with one clear warning.
- 403 on a trends endpoint: that endpoint is skipped for the run (low access tiers lack it).
- 429, or a response saying no calls remain: no calls to that endpoint until `x-rate-limit-reset`;
  the run never waits for it.
- 5xx, timeouts, connection errors: bounded retries with exponential backoff, then give up on the call.
- Malformed JSON: give up on the call.
Every give-up raises XUnavailable; callers serve from the cache or the lexicon instead.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import math
import os
import re
import time
import urllib.parse
from typing import Any, Callable

import requests
import tweepy

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "X_BEARER_TOKEN"
SEARCH, TRENDS_V2, TRENDS_V1 = "recent search", "trends (v2)", "trends (v1.1)"
OPTIONAL_ENDPOINTS = {TRENDS_V2, TRENDS_V1}  # a 403 here closes the endpoint, not X
DEFAULT_PAUSE_S = 15 * 60  # a 429 without x-rate-limit-reset: X's rate-limit windows are 15 minutes


@dataclasses.dataclass(frozen=True)
class XConfig:
    """How hashtags are fetched from X and how long they stay good."""

    lang: str | None = "en"  # posts' language (X's `lang:` operator); None: any language
    max_posts: int = 100  # posts read per label per refresh, in pages of 100 at most: 100 is one request
    woeid: int = 1  # Yahoo! Where On Earth ID of the place whose trends boost hashtags; 1 = worldwide
    max_trends: int = 50  # trends asked for (X's v2 maximum)
    ttl_hours: float = 6.0  # a label fetched this recently is not fetched again
    trends_ttl_hours: float = 1.0  # trends move faster than a label's hashtags (75 requests / 15 min allowed)
    serve_max_age_hours: float = 7 * 24.0  # cached hashtags older than this are not served (search covers 7 days)
    min_count: int = 2  # hashtags seen in fewer posts of a label are noise (spam, one-offs): not cached
    keep_per_label: int = 50  # the most frequent hashtags kept per label
    timeout_s: float = 10.0  # per HTTP request; tweepy's Client sets none, so a silent server would hang a run
    retries: int = 2  # extra attempts after a 5xx or a timeout
    backoff_s: float = 2.0  # wait before retry n is backoff_s * 2**(n-1)
    max_failed_labels: int = 3  # this many labels failing in a row turns X off for the run
    v1_trends: bool = True  # fall back to v1.1 trends/place when v2 trends give nothing

    def __post_init__(self):
        if not 10 <= self.max_posts:
            raise ValueError(f"max_posts must be at least 10 (X's smallest page), not {self.max_posts}")
        if self.retries < 0 or self.backoff_s < 0 or self.timeout_s <= 0:
            raise ValueError("retries and backoff_s must be >= 0 and timeout_s > 0")
        hours = {"ttl_hours": self.ttl_hours, "trends_ttl_hours": self.trends_ttl_hours,
                 "serve_max_age_hours": self.serve_max_age_hours}
        wrong = [f"{name} {value}" for name, value in hours.items() if not (math.isfinite(value) and value >= 0)]
        if wrong:  # argparse's float takes nan and inf
            raise ValueError(f"{', '.join(wrong)}: a time to live must be a number of hours, at least 0")
        if self.woeid < 1:  # 1 is the world; places have larger ids
            raise ValueError(f"woeid must be a Where On Earth ID (1: worldwide), not {self.woeid}")

    @property
    def ttl(self) -> dt.timedelta:
        return dt.timedelta(hours=self.ttl_hours)

    @property
    def trends_ttl(self) -> dt.timedelta:
        return dt.timedelta(hours=self.trends_ttl_hours)

    @property
    def serve_max_age(self) -> dt.timedelta:
        return dt.timedelta(hours=self.serve_max_age_hours)


class XUnavailable(Exception):
    """X gave no usable answer to this call; serve from the cache or the lexicon instead."""

    def __init__(self, message: str, status: str = "error"):
        super().__init__(message)
        self.status = status  # denied | rate-limited | error | malformed (recorded in the fetch log)


# Loggers that see request headers: tweepy logs "Headers: {'Authorization': 'Bearer <token>'}" at DEBUG
# (Airflow's logging_level = DEBUG turns that on for every task).
REDACTED_LOGGERS = ("tweepy", "tweepy.client", "tweepy.api", "tweepy.auth", "tweepy.asynchronous.client",
                    "requests_oauthlib", "oauthlib", "urllib3.connectionpool", "requests")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9%._~+/=-]{16,}")  # an Authorization header's value


class RedactSecrets(logging.Filter):
    """Replaces bearer tokens, and every secret registered with `add`, by '[redacted]' in log records."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str) -> None:
        # as sent and as URL-encoded (X's tokens hold '%' escapes; a logged URL may hold either form)
        self.secrets |= {form for form in (secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe=""))
                         if len(form) >= 8}

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
        return _BEARER.sub(r"\1[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  a malformed record is logging's problem, not a reason to leak
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


REDACTION = RedactSecrets()


def protect(token: str) -> None:
    """Keep `token` out of every log: on each logger that may print it, at any level."""
    REDACTION.add(token)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTION not in logger.filters:
            logger.addFilter(REDACTION)
    log_filter_root()


def log_filter_root() -> None:
    """The same filter on the root logger's handlers: records of other loggers that carry a token."""
    for handler in logging.getLogger().handlers:
        if REDACTION not in handler.filters:
            handler.addFilter(REDACTION)


def bearer_token(explicit: str | None = None) -> str | None:
    """The token passed in (the Airflow connection `x_api`), else $X_BEARER_TOKEN, else None."""
    token = explicit if explicit is not None else os.environ.get(TOKEN_VARIABLE)
    return token.strip() or None if token else None


class _TimeoutSession(requests.Session):
    """A session whose requests time out by default: tweepy's Client passes no timeout."""

    def __init__(self, timeout_s: float):
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, **kwargs)


class XClient:
    """tweepy's v2 Client and v1.1 API for one run, plus what the run learnt: off, paused, closed."""

    def __init__(self, token: str, config: XConfig = XConfig(), *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.clock, self.sleep = clock, sleep
        protect(token)
        # return_type=Response keeps the rate-limit headers; wait_on_rate_limit=False: we never block a run
        self.client = tweepy.Client(bearer_token=token, return_type=requests.Response, wait_on_rate_limit=False)
        self.client.session = _TimeoutSession(config.timeout_s)
        self.api = tweepy.API(tweepy.OAuth2BearerHandler(token), parser=tweepy.parsers.RawParser(),
                              timeout=config.timeout_s, retry_count=0, wait_on_rate_limit=False)
        self.off_reason: str | None = None
        self.closed: dict[str, str] = {}  # endpoint -> why it is skipped for the rest of the run
        self.paused_until: dict[str, float] = {}  # endpoint -> epoch seconds of x-rate-limit-reset
        self.requests: collections.Counter[str] = collections.Counter()  # HTTP requests sent, by endpoint

    # ------------------------------------------------------------------------------------------ endpoints

    def search_recent(self, query: str, max_results: int, next_token: str | None = None) -> dict:
        """One page of GET /2/tweets/search/recent with each post's entities."""
        return self.call(SEARCH, lambda: self.client.search_recent_tweets(
            query, max_results=max_results, next_token=next_token, tweet_fields=["entities"]))

    def trends_v2(self, woeid: int) -> Any:
        """GET /2/trends/by/woeid/:id (tweepy has no method: same bearer token, session and error mapping)."""
        return self.call(TRENDS_V2, lambda: self.client.request(
            "GET", f"/2/trends/by/woeid/{int(woeid)}",
            params={"max_trends": self.config.max_trends, "trend.fields": "trend_name,tweet_count"}))

    def trends_v1(self, woeid: int) -> Any:
        """GET 1.1/trends/place.json through tweepy's API.get_place_trends (403 on low access tiers)."""
        def send():
            self.api.get_place_trends(int(woeid))  # the raw text: the response itself is read below
            return self.api.last_response
        return self.call(TRENDS_V1, send)

    # ------------------------------------------------------------------------------------------ the policy

    @property
    def off(self) -> bool:
        return self.off_reason is not None

    def available(self, endpoint: str) -> bool:
        """Whether a call to the endpoint would be sent now."""
        return (not self.off and endpoint not in self.closed
                and self.clock() >= self.paused_until.get(endpoint, 0.0))

    def turn_off(self, reason: str) -> None:
        """No more calls to X this run; says so once."""
        if self.off_reason is None:
            self.off_reason = reason
            log.warning("%s: X is off for the rest of this run; hashtags come from the cache and the lexicon",
                        reason)

    def call(self, endpoint: str, send: Callable[[], requests.Response]) -> Any:
        """Send one request (retrying 5xx and timeouts) and return its decoded JSON, or raise XUnavailable."""
        if self.off:
            raise XUnavailable(f"X is off: {self.off_reason}", "denied")
        if endpoint in self.closed:
            raise XUnavailable(f"{endpoint} is skipped: {self.closed[endpoint]}", "denied")
        if self.clock() < self.paused_until.get(endpoint, 0.0):
            until = format_utc(self.paused_until[endpoint])
            raise XUnavailable(f"{endpoint} is rate-limited until {until}", "rate-limited")
        for attempt in range(self.config.retries + 1):
            self.requests[endpoint] += 1
            try:
                response = send()
            except tweepy.TooManyRequests as error:
                self._pause(endpoint, error.reset_time, warn=True)
                raise XUnavailable(f"{endpoint}: 429 Too Many Requests", "rate-limited") from error
            except (tweepy.Unauthorized, tweepy.Forbidden) as error:
                self._deny(endpoint, error)
                raise XUnavailable(f"{endpoint}: {_describe(error)}", "denied") from error
            except (tweepy.TwitterServerError, requests.RequestException, tweepy.TweepyException) as error:
                if not _transient(error):
                    if _status(error) == 402:  # payment required: the account has no credits left
                        self._deny(endpoint, error)
                        raise XUnavailable(f"{endpoint}: {_describe(error)}", "denied") from error
                    # 400, 404, a v1.1 body tweepy cannot parse: retrying would get the same answer
                    raise XUnavailable(f"{endpoint}: {_describe(error)}", "error") from error
                if attempt == self.config.retries:
                    raise XUnavailable(f"{endpoint}: {_describe(error)} after {attempt + 1} attempts",
                                       "error") from error
                delay = self.config.backoff_s * 2 ** attempt
                log.info("%s: %s; retrying in %.0f s", endpoint, _describe(error), delay)
                self.sleep(delay)
                continue
            self._note_rate_limit(endpoint, response)
            try:
                return response.json()
            except ValueError as error:
                raise XUnavailable(f"{endpoint}: the answer is not JSON ({error})", "malformed") from error
        raise AssertionError("unreachable: the loop returns or raises")

    def _deny(self, endpoint: str, error: tweepy.TweepyException) -> None:
        if endpoint in OPTIONAL_ENDPOINTS and isinstance(error, tweepy.Forbidden):
            # trends are a bonus that low access tiers lack: skip them without alarming anyone
            self.closed[endpoint] = _describe(error)
            log.info("%s is not available to this account (%s); skipping it", endpoint, _describe(error))
            return
        if isinstance(error, tweepy.Unauthorized):
            hint = "check the bearer token"
        elif _status(error) == 402:
            hint = "the account has no API credits left"
        else:
            hint = "the account's access level does not include this endpoint"
        self.turn_off(f"X refused {endpoint} ({_describe(error)}; {hint})")

    def _pause(self, endpoint: str, reset_time: int | None, warn: bool) -> None:
        until = float(reset_time) if reset_time else self.clock() + DEFAULT_PAUSE_S
        self.paused_until[endpoint] = max(until, self.paused_until.get(endpoint, 0.0))
        (log.warning if warn else log.info)(
            "X rate limit reached for %s: no calls to it until %s (x-rate-limit-reset); the labels left keep "
            "their cached hashtags", endpoint, format_utc(until))

    def _note_rate_limit(self, endpoint: str, response: requests.Response) -> None:
        """When X says no calls remain in the window, stop before it answers 429."""
        try:
            remaining = int(response.headers["x-rate-limit-remaining"])
            reset_time = int(response.headers["x-rate-limit-reset"])
        except (KeyError, ValueError, TypeError, AttributeError):
            return
        if remaining <= 0:
            self._pause(endpoint, reset_time, warn=False)


def _status(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _transient(error: Exception) -> bool:
    """5xx, timeouts and dropped connections (tweepy's API wraps the latter in a TweepyException)."""
    if isinstance(error, (tweepy.TwitterServerError, requests.Timeout, requests.ConnectionError)):
        return True
    return isinstance(error, tweepy.TweepyException) and isinstance(
        error.__context__, (requests.Timeout, requests.ConnectionError))


def _describe(error: Exception) -> str:
    """'401 Unauthorized: <X's message>' for HTTP errors, the exception text otherwise."""
    response = getattr(error, "response", None)
    if response is None:
        return f"{type(error).__name__}: {error}"
    messages = "; ".join(getattr(error, "api_messages", []) or [])
    detail = messages or _problem_detail(response)
    head = f"{response.status_code} {response.reason or ''}".strip()
    return f"{head}: {detail}" if detail else head


def _problem_detail(response: requests.Response) -> str:
    """v2 errors are RFC 7807 problems ({"title", "detail", "type"}); tweepy only reads "errors"."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("detail") or body.get("title") or "") if isinstance(body, dict) else ""


def format_utc(epoch_seconds: float) -> str:
    """'2026-11-27 12:00:00 UTC' for an epoch time such as x-rate-limit-reset."""
    return dt.datetime.fromtimestamp(epoch_seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
