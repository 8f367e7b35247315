"""`hashtagger review` is safe by default: loopback only, the token beyond it, CSRF on every POST, pictures
only of images in the results database, the reviewer from the command line. Against a real server."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.parse
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa


def first_card(client, base: str) -> dict:
    """The first card of the queue the app at `base` serves."""
    return client.get(f"{base}/api/queue", params={"limit": 1}).json()["cards"][0]


def csrf_of(page_html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page_html).group(1)


def review_rows(db_url: str) -> list[tuple]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(
                "SELECT image_uri, label, reviewer, retracts FROM image_reviews ORDER BY review_seq"))]
    finally:
        engine.dispose()


def test_it_listens_on_loopback_and_refuses_other_host_names(tagged, serve, client, outside_address):
    env, db_url, _ = tagged
    server = serve(env, db_url)
    assert server.printed.strip() == f"reviewing as ana: open http://127.0.0.1:{server.port}/"
    assert client.get(server.base + "/").status_code == 200
    # a page elsewhere that rebinds its own name to 127.0.0.1 reaches the port, but not the app
    assert client.get(server.base + "/", headers={"Host": "attacker.example"}).status_code == 400
    if outside_address:
        with pytest.raises(httpx.ConnectError):  # nothing listens there
            client.get(f"http://{outside_address}:{server.port}/", timeout=3)


def test_another_host_is_refused_without_the_token(tagged, serve, client, outside_address):
    address = outside_address
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    env, db_url, _ = tagged
    server = serve(env, db_url, host="0.0.0.0")
    token = urllib.parse.parse_qs(urllib.parse.urlparse(server.printed.split("open ", 1)[1].strip()).query)["token"][0]
    outside = f"http://{address}:{server.port}"
    for path in ("/", "/api/queue", "/picture?uri=x&hash=y", "/static/review.js", "/?token=wrong-" + token[:8]):
        assert client.get(outside + path).status_code == 403, path
    assert client.post(outside + "/api/answers", json={}).status_code == 403
    assert review_rows(db_url) == []

    entered = client.get(outside + "/?token=" + token + "&run=x")
    assert entered.status_code == 303 and entered.headers["location"] == "/?run=x", "the token leaves the address"
    page = client.get(outside + "/")  # the session cookie carries the permission from now on
    assert page.status_code == 200 and "hashtagger review" in page.text
    card = first_card(client, outside)
    answered = client.post(outside + "/api/answers", headers={"X-CSRF-Token": csrf_of(page.text)},
                           json={"review_id": "a" * 32, "image_uri": card["image_uri"],
                                 "content_hash": card["content_hash"], "model_version": card["model_version"],
                                 "label": None})
    assert answered.status_code == 200
    assert review_rows(db_url) == [(card["image_uri"], None, "ana", None)]


def test_a_forged_post_is_refused(tagged, serve, client):
    env, db_url, _ = tagged
    server = serve(env, db_url)
    token = csrf_of(client.get(server.base + "/").text)
    card = first_card(client, server.base)
    answer = {"review_id": "b" * 32, "image_uri": card["image_uri"], "content_hash": card["content_hash"],
              "model_version": card["model_version"], "label": None}
    assert client.post(server.base + "/api/answers", json=answer).status_code == 403  # no token
    assert client.post(server.base + "/api/answers", json=answer,
                       headers={"X-CSRF-Token": "forged"}).status_code == 403
    with type(client)(timeout=30) as other:  # another browser's session: its token is not this one's
        other_token = csrf_of(other.get(server.base + "/").text)
    assert client.post(server.base + "/api/answers", json=answer,
                       headers={"X-CSRF-Token": other_token}).status_code == 403
    # the reviewer is the command line's: a request naming one is refused, not believed
    assert client.post(server.base + "/api/answers", json={**answer, "reviewer": "mallory"},
                       headers={"X-CSRF-Token": token}).status_code == 422
    assert client.post(server.base + "/api/answers", json={**answer, "label": "not-a-class"},
                       headers={"X-CSRF-Token": token}).status_code == 422
    assert client.post(server.base + "/api/retractions", json={"review_id": "c" * 32, "answer_id": "b" * 32},
                       headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert review_rows(db_url) == []
    assert client.post(server.base + "/api/answers", json=answer,
                       headers={"X-CSRF-Token": token}).status_code == 200
    assert review_rows(db_url) == [(card["image_uri"], None, "ana", None)]
    # the same answer again is a no-op; the same id with another answer is a conflict, never a silent 200
    assert client.post(server.base + "/api/answers", json=answer, headers={"X-CSRF-Token": token}).status_code == 200
    changed = client.post(server.base + "/api/answers", json={**answer, "label": card["candidates"][0]["label"]},
                          headers={"X-CSRF-Token": token})
    assert changed.status_code == 409 and "already recorded as 'none of these'" in changed.json()["detail"]
    assert review_rows(db_url) == [(card["image_uri"], None, "ana", None)]


def test_only_pictures_of_images_in_the_results_database_are_served(tagged, serve, client, tmp_path):
    env, db_url, folders = tagged
    server = serve(env, db_url)
    card = first_card(client, server.base)
    served = client.get(server.base + card["picture"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content[:2] == b"\xff\xd8"
    untagged = tmp_path / "untagged.jpg"  # a real picture, readable by the server, but never tagged
    untagged.write_bytes((folders["cifar10"] / "airplane.jpg").read_bytes())
    for uri, content_hash in ((str(untagged), card["content_hash"]), ("/etc/passwd", card["content_hash"]),
                              (card["image_uri"] + "/../../../../etc/passwd", card["content_hash"]),
                              (card["image_uri"], "sha256:" + "0" * 64), ("", "")):
        refused = client.get(server.base + "/picture", params={"uri": uri, "hash": content_hash})
        assert refused.status_code == 404, uri
        assert refused.headers["content-type"] == "application/json"
    # encoded, so that no client normalises the dots away before they reach the server
    for path in ("/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
        refused = client.get(server.base + path)
        assert refused.status_code == 404 and b"root:" not in refused.content, path
    # a tagged file overwritten since: no picture of other bytes under the hash that was tagged
    Path(card["image_uri"]).write_bytes(untagged.read_bytes() + b"\0")
    assert client.get(server.base + card["picture"]).status_code == 404


def test_the_command_refuses_a_bad_port_in_one_line(tmp_path, bin_dir):
    done = subprocess.run([str(bin_dir / "hashtagger"), "review", "--port", "70000", "--db", f"sqlite:///{tmp_path / 'r.db'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "hashtagger review: --port 70000 is no TCP port (1 to 65535)"


def test_the_command_says_when_the_port_is_taken(results_sqlite_url, bin_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([str(bin_dir / "hashtagger"), "review", "--port", str(port), "--db", results_sqlite_url],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"hashtagger review: cannot listen on 127.0.0.1:{port}: ")
    assert done.stderr.strip().endswith("pass another --port")
