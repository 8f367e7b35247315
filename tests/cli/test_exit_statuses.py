"""The README's exit-status table, row by row: each documented status from a real case through the
installed console scripts, and the messages that come with them (issue 22)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.signals import ctrl_c_as_at_a_terminal
from tasks.tag import predictor

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


def run(bin_dir, command: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / command), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def migrated(tmp_path: Path) -> dict:
    """The environment of a migrated SQLite results database of this test."""
    from tasks.store import db

    url = f"sqlite:///{tmp_path / 'results.db'}"
    db.migrate(db.engine(url))
    return {"HASHTAGGER_DB_URL": url}


def readme_statuses() -> set[int]:
    """Every exit status the README documents: the table's rows and the note under it (141, 70)."""
    text = (REPO / "README.md").read_text()
    table = {int(number) for number in re.findall(r"^\| (\d+) \|", text, flags=re.MULTILINE)}
    note = text[text.index("| exit status | meaning |"):]
    note = note[:note.index("### Bad input")]
    return table | {int(number) for number in re.findall(r"ends the command quietly with (\d+)|gives (\d+)", note)
                    for number in number if number}


# what this module runs for each documented status; 70 (a bug) has no real case to run
EXERCISED = {0, 1, 2, 3, 130, 141, 143}


def test_every_status_of_the_readme_is_exercised_here():
    assert readme_statuses() == EXERCISED | {70}


def test_0_done_and_1_some_images_failed(bin_dir, tmp_path):
    assert run(bin_dir, "hashtag", SAMPLES / "cat.jpg").returncode == 0
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    failed = run(bin_dir, "hashtag", SAMPLES / "cat.jpg", tmp_path / "broken.jpg")
    assert failed.returncode == 1 and "broken.jpg" in failed.stderr
    assert "#cat" in failed.stdout, "the other images are still answered"


def test_2_a_missing_file_is_a_usage_error(bin_dir):
    answer = run(bin_dir, "hashtag", "nosuch.jpg")
    assert answer.returncode == 2, answer.stderr
    assert answer.stderr.strip() == "hashtag: nosuch.jpg: cannot read the file: No such file or directory"
    mixed = run(bin_dir, "hashtag", SAMPLES / "cat.jpg", "nosuch.jpg")
    assert mixed.returncode == 2 and "#cat" in mixed.stdout, "the other images are still answered"
    assert run(bin_dir, "hashtagger", "tag", "nosuch/").returncode == 2


def test_2_an_unreachable_database_gives_the_same_hint_to_tag_and_db_migrate(bin_dir):
    env = {"HASHTAGGER_DB_URL": "postgresql://postgres@127.0.0.1:1/hashtagger"}  # nothing listens on port 1
    hint = "check HASHTAGGER_DB_URL (host, port, user, password, database) and that the server is running"
    for args in (("tag", SAMPLES), ("db", "migrate")):
        answer = run(bin_dir, "hashtagger", *args, env=env)
        assert answer.returncode == 2 and hint in answer.stderr, (args, answer.stderr)
        assert len(answer.stderr.strip().splitlines()) == 1, answer.stderr


def test_2_a_mysql_url_names_the_package_to_install(bin_dir):
    answer = run(bin_dir, "hashtagger", "tag", SAMPLES, env={"HASHTAGGER_DB_URL": "mysql://user@127.0.0.1/db"})
    assert answer.returncode == 2 and "pip install mysqlclient" in answer.stderr, answer.stderr
    assert "pip install MySQLdb" not in answer.stderr


def test_2_a_model_folder_without_onnx_is_refused_by_hashtag_and_tag_alike(bin_dir, tmp_path):
    folder = tmp_path / "keras-only"
    shutil.copytree(predictor.bundled_model(), folder, ignore=shutil.ignore_patterns("model.onnx", "reports"))
    answers = [run(bin_dir, "hashtag", "--model", folder, SAMPLES / "cat.jpg"),
               run(bin_dir, "hashtagger", "tag", "--model", folder, SAMPLES, env=migrated(tmp_path))]
    assert [answer.returncode for answer in answers] == [2, 2]
    messages = [answer.stderr.strip().split(": ", 1) for answer in answers]  # (program, message)
    assert [program for program, _ in messages] == ["hashtag", "hashtagger tag"]
    assert messages[0][1] == messages[1][1], messages
    assert "no model.onnx to serve; export it with `hashtagger models export" in messages[0][1]
    assert all(len(answer.stderr.strip().splitlines()) == 1 for answer in answers)


def test_3_auto_promote_refused(bin_dir, tmp_path):
    """The bundled model itself is below no floor, but it is the champion: a copy registered under
    another id cannot beat it by the margin (the same accuracy), so the gate refuses it."""
    import json

    folder = tmp_path / "copy"
    shutil.copytree(predictor.bundled_model(), folder, ignore=shutil.ignore_patterns("reports"))
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["model_id"] = "copy-of-the-bundled-model"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    env = migrated(tmp_path)
    registered = run(bin_dir, "hashtagger", "models", "register", folder, env=env)
    assert registered.returncode == 0, registered.stderr
    refused = run(bin_dir, "hashtagger", "models", "auto-promote", "copy-of-the-bundled-model", env=env)
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    assert "not promoted, nothing changed" in refused.stdout and "margin" in refused.stdout


@pytest.mark.parametrize("signum, status, line, error", [
    (signal.SIGINT, 130, "hashtagger: interrupted (what was committed is kept)", "Ctrl-C"),
    (signal.SIGTERM, 143, "hashtagger: terminated by SIGTERM (what was committed is kept)", "SIGTERM")])
def test_130_interrupted_and_143_terminated(bin_dir, tmp_path, signum, status, line, error):
    """Ctrl-C (SIGINT) or SIGTERM in the middle of a run: the status and one line, once the run has started
    writing; the run recorded `interrupted`, saying by what."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for number in range(2000):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"{number:04d}.png")
    database = tmp_path / "results.db"
    process = subprocess.Popen([str(bin_dir / "hashtagger"), "tag", str(folder), "--quiet", "--batch-size", "32"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **migrated(tmp_path)}, preexec_fn=ctrl_c_as_at_a_terminal)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not _tagged_some(database):
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr
    assert stderr.strip().splitlines()[-1] == line
    with sqlite3.connect(database) as connection:  # recorded as README's table says, not as a failure
        recorded, message = connection.execute("SELECT status, error FROM tagging_runs").fetchone()
    assert recorded == "interrupted" and error in message, (recorded, message)
    with sqlite3.connect(database) as connection:  # the lease is released: the next run need not wait
        assert connection.execute("SELECT COUNT(*) FROM run_leases").fetchone()[0] == 0


def _tagged_some(database: Path) -> bool:
    if not database.exists():
        return False
    try:
        with sqlite3.connect(database, timeout=0.1) as connection:
            return bool(connection.execute("SELECT SUM(tagged) FROM tagging_runs WHERE status = 'running'")
                        .fetchone()[0])
    except sqlite3.Error:  # not created yet, or busy
        return False


def test_141_a_reader_that_stops_early(bin_dir):
    process = subprocess.Popen([str(bin_dir / "hashtag"), "--json", *sorted(map(str, SAMPLES.glob("*.jpg")))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head -c 0`: the reader is gone before anything is written
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and stderr == b"", stderr
