"""`hashtagger data prepare NAME --from-reviews` on what a real `hashtagger review` server recorded (its
HTTP endpoints, as the page calls them), and its refusals: one line each, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import sqlalchemy as sa

from tasks.data import dataset, reviewed
from tasks.store import db

HASHTAGGER = str(Path(sys.executable).parent / "hashtagger")


def hashtagger(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HASHTAGGER, *args], env=env, capture_output=True, text=True, timeout=300)


def answer_over_http(server, client, labels: dict[str, str | None]) -> None:
    """POST /api/answers for the images whose file names are `labels`' keys, with the page's CSRF token."""
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get(server.base + "/").text).group(1)
    cards = client.get(server.base + "/api/queue", params={"limit": 100}).json()["cards"]
    for card in cards:
        name = Path(card["image_uri"]).name
        if name in labels:
            response = client.post(server.base + "/api/answers", headers={"X-CSRF-Token": csrf}, json={
                "review_id": uuid.uuid4().hex, "image_uri": card["image_uri"], "content_hash": card["content_hash"],
                "model_version": card["model_version"], "label": labels[name]})
            assert response.status_code == 200, response.text


def test_answers_given_over_http_become_a_dataset(tagged, serve, client, tiny_cifar, hashtagger_home):
    """The CIFAR-10 answers go in (the 'none' one as an outlier or in the slice); a CIFAR-100 label is
    skipped with its reason; a second prepare of the same answers finds the same version."""
    env, db_url, folders = tagged
    server = serve(env, db_url)
    labels = {"airplane.jpg": "airplane", "bird.jpg": "bird", "dog.jpg": None, "horse.jpg": "horse",
              "automobile.jpg": "apple"}  # automobile.jpg went to the CIFAR-100 model: "apple" is its class
    answer_over_http(server, client, labels)
    engine = db.engine(db_url)
    assert reviewed.new_answers(engine, "mine") == len(labels)

    first = hashtagger(env, "data", "prepare", "mine", "--from-reviews", "--base", "cifar10", "--db", db_url)
    assert first.returncode == 0, first.stderr
    assert "plus 5 reviewed images" in first.stdout and "1 skipped" in first.stdout, first.stdout
    assert "automobile.jpg: label 'apple' is not a class of cifar10" in first.stdout
    entries = {Path(entry["name"]).name: entry for entry in
               json.loads((dataset.find("mine") / "reviews.json").read_text())}
    assert {name: entry["label"] for name, entry in entries.items()} == labels
    assert all(entry["reviewer"] == "ana" for entry in entries.values())
    assert entries["dog.jpg"]["split"] in ("outliers", "slice")
    assert reviewed.new_answers(engine, "mine") == 0  # all in the version now

    again = hashtagger(env, "data", "prepare", "mine", "--from-reviews", "--base", "cifar10", "--db", db_url)
    version = re.search(r"mine version (\w+)", first.stdout).group(1)
    assert f"mine version {version}:" in again.stdout


def test_refusals_are_one_line(results_sqlite_url, tiny_cifar, hashtagger_home):
    import os

    env = {**os.environ, "HASHTAGGER_HOME": str(hashtagger_home)}
    for args, says in (
            (["cifar10", "--from-reviews"], "a name of its own, not the base's 'cifar10'"),
            (["mine", "--from-reviews"], "no reviewed images: answer some in `hashtagger review` first"),
            (["mine", "--from-reviews", "--base", "cifar100"], "dataset 'cifar100' is not prepared"),
            (["mine", "--from-reviews", "--slice-fraction", "1.5"], "slice fraction 1.5 is not in [0, 1)"),
            (["mine", "--from-reviews", "--source", "/tmp"], "--from-reviews reads the results database"),
            # a name is one folder under datasets/: no way out of it (a user's trial wrote ../evil, /tmp/x)
            (["../evil", "--from-reviews"], "dataset name '../evil': use letters, digits"),
            (["/tmp/abs", "--from-reviews"], "dataset name '/tmp/abs': use letters, digits"),
            (["", "--from-reviews"], "dataset name '': use letters, digits"),
            ([".hidden", "--source", "/tmp"], "dataset name '.hidden': use letters, digits")):
        done = hashtagger(env, "data", "prepare", *args, "--db", results_sqlite_url)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    with db.engine(results_sqlite_url).connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM image_reviews")).scalar() == 0
    assert not (hashtagger_home / "evil").exists() and not Path("/tmp/abs").exists()
