"""The review app's one config object: where it listens, who reviews, and how much it shows."""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or 'localhost') is reachable from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    """How `hashtagger review` runs; overridden from its flags."""

    reviewer: str  # stored with every answer: the --reviewer flag or the login name, never a form field
    host: str = "127.0.0.1"  # loopback: only this machine reaches it; any other bind needs `token`
    port: int = 8765  # TCP port (8765: free on a stock machine, above the privileged range)
    db_url: str | None = None  # SQLAlchemy URL of the results database; None: HASHTAGGER_DB_URL or the default
    # The secret a browser on another host must present once (?token=...); printed at start. 32 random
    # bytes: not guessable in any number of tries a server survives.
    token: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(32))
    # Signs the session cookie (which holds the CSRF token); new at every start, so old cookies lapse.
    session_secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(32))
    queue_size: int = 200  # cards fetched at a time: a reviewer's sitting, without a long first load
    picture_px: int = 256  # longest side of a served picture, pixels (CIFAR models saw 32x32)
    max_read_bytes: int = 50 * 2**20  # a bigger file gets no picture (as the run page's thumbnails)

    def __post_init__(self):
        if not self.reviewer.strip():
            raise ValueError("a review needs a reviewer's name (--reviewer)")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port} is no TCP port (1 to 65535)")

    @property
    def needs_token(self) -> bool:
        """Whether every browser must present the token: the app listens beyond this machine."""
        return not is_loopback(self.host)

    def url(self, with_token: bool | None = None) -> str:
        """The address to open; with ?token=... where the token is needed (or asked for)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        token = self.needs_token if with_token is None else with_token
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if token else "")


@dataclasses.dataclass(frozen=True)
class RetrainTrigger:
    """When the `reviewed_dataset` DAG prepares a new version of the reviewed dataset, whose Asset event
    (hashtagger://datasets/reviewed) `train_models` is scheduled on; overridden from the DAG's params."""

    name: str = "cifar10-reviewed"  # the dataset prepared from reviews (hashtagger data prepare NAME --from-reviews)
    base: str = "cifar10"  # the prepared dataset it extends
    # Answers given since the latest version was prepared (not in its reviews.json) before a new one:
    # 200 is an evening of reviewing at a few seconds a card, and adds about 40 images to the reviewed
    # slice at its default 0.2, enough to move its confidence interval; a retraining costs CPU-hours.
    min_new_answers: int = 200
