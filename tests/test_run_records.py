"""A run's record says what happened (issue 22): the pointer printed after `tag`, every shipped query on a
sharded nightly run, the skipped non-image files, and counters reset when a nightly run is repeated.
On PostgreSQL and SQLite."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from fixtures import hostile
from tasks import pipeline
from tasks.cli import main as cli
from tasks.hashtags.engine import HashtagEngine
from tasks.store import db
from tasks.tag import predictor, tag

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def rows(db_url: str, sql: str, **params) -> list:
    with db.engine(db_url).connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def test_the_pointer_after_tag_names_a_view_with_every_result_of_the_run_abstentions_included(
        tmp_path, results_db_url, monkeypatch, capsys):
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder)
    for copy in ("cat-again.jpg", "dog-again.jpg"):
        shutil.copy(SAMPLES / f"{copy.split('-')[0]}.jpg", folder / copy)
    Image.new("RGB", (300, 300), (128, 128, 128)).save(folder / "zz-grey.png")  # blank: no confident label
    monkeypatch.setenv("HASHTAGGER_DB_URL", results_db_url)
    assert cli.main(["tag", str(folder)]) == 0
    out = capsys.readouterr().out
    pointer = re.search(r"\.\.\. (\d+) more in (\w+) \(run_id = '([^']+)'", out)
    assert pointer, out
    more, view, run_id = int(pointer.group(1)), pointer.group(2), pointer.group(3)
    assert more == 11 - 8, "eight images are listed, three are not"
    results = rows(results_db_url, f"SELECT image_uri, label FROM {view} WHERE run_id = :run_id", run_id=run_id)
    assert len(results) == 11, "the view the pointer names holds every result of the run"
    assert [Path(uri).name for uri, label in results if label is None] == ["zz-grey.png"]
