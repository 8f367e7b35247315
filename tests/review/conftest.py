"""Fixtures of the review app's tests: a results database tagged by the real CLI from samples/, and a real
`hashtagger review` server (a subprocess on a free port) over it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
HASHTAGGER = str(Path(sys.executable).parent / "hashtagger")


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`hashtagger ARGS` in a subprocess; fails the test with its stderr when it fails."""
    done = subprocess.run([HASHTAGGER, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"hashtagger {' '.join(args)}: {done.stderr}"
    return done


@pytest.fixture
def tagged(db_url, tmp_path, hashtagger_home):
    """(environment, database URL, folders): samples/ split into two folders, the first tagged by the
    bundled CIFAR-10 model and the second by the bundled CIFAR-100 model, through `hashtagger tag`."""
    env = {**os.environ, "HASHTAGGER_HOME": str(hashtagger_home), "HASHTAGGER_DB_URL": db_url}
    cli(env, "db", "migrate")  # also registers the bundled models, the first champions
    samples = sorted(SAMPLES.glob("*.jpg"))
    folders = {"cifar10": tmp_path / "photos10", "cifar100": tmp_path / "photos100"}
    for index, sample in enumerate(samples):
        folder = folders["cifar10" if index % 2 == 0 else "cifar100"]
        folder.mkdir(exist_ok=True)
        shutil.copy(sample, folder / sample.name)
    for dataset, folder in folders.items():
        cli(env, "tag", "--dataset", dataset, str(folder))
    return env, db_url, folders


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def outside_address() -> str | None:
    """An address of this machine that is not loopback (the one its default route leaves from), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


class Server:
    """A running `hashtagger review`: its base URL, what it printed, and the process (ours to stop)."""

    def __init__(self, env: dict, db_url: str, *args: str, host: str = "127.0.0.1"):
        self.port = free_port()
        self.process = subprocess.Popen(
            [HASHTAGGER, "review", "--db", db_url, "--port", str(self.port), "--host", host, "--reviewer", "ana",
             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.printed = self.process.stdout.readline()  # "reviewing as ana: open http://..."
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"hashtagger review did not start: {self.process.stderr.read()}")
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def serve():
    """serve(env, db_url, *args, host=...) -> a started Server, stopped after the test."""
    started = []

    def start(env: dict, db_url: str, *args: str, host: str = "127.0.0.1") -> Server:
        started.append(Server(env, db_url, *args, host=host))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def client():
    """An HTTP client that keeps cookies, follows no redirects on its own."""
    with httpx.Client(timeout=30) as session:
        yield session
