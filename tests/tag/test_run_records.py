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

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


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


def tag_nightly(folder: Path, db_url: str, shards: int, key: str = "nightly-20261204T020000Z") -> list[dict]:
    """The nightly DAG's tagging, without Airflow: one pipeline.tag_shard per shard, under its shard run id."""
    model_path = str(predictor.bundled_model())
    return [pipeline.tag_shard(str(folder), model_path, shard, shards, pipeline.shard_run_id(key, shard, shards),
                               db_url) for shard in range(shards)]


def photo_folder(folder: Path, broken: int) -> Path:
    shutil.copytree(SAMPLES, folder)
    for number in range(broken):
        (folder / f"broken{number}.jpg").write_bytes(b"not a picture %d" % number)
    (folder / "notes.txt").write_text("where these were taken")
    (folder / "cat.xmp").write_text("<x:xmpmeta/>")
    return folder


def test_every_shipped_query_is_right_for_a_sharded_nightly_run(tmp_path, results_db_url):
    """A nightly run is one tagging run per shard: each example query answers for the whole run (the
    failures of the last run were those of its last shard only)."""
    folder = photo_folder(tmp_path / "photos", broken=5)
    broken = [str(path) for path in folder.glob("broken*.jpg")]
    # a shard count that spreads the failures over several shards, wherever tmp_path is
    shards = next(count for count in range(3, 12)
                  if len({next(i for i in range(count) if tag.in_shard(uri, (i, count))) for uri in broken}) > 1)
    shard_summaries = tag_nightly(folder, results_db_url, shards)
    assert sum(summary["failed"] for summary in shard_summaries) == 5

    queries = {path.name[:-4]: path.read_text() for path in (db.sql_dir() / "queries").iterdir()
               if path.name.endswith(".sql")}
    day = str(rows(results_db_url, "SELECT MAX(tagged_at) FROM image_tags")[0][0])[:10]
    model_id = predictor.load(predictor.bundled_model()).model_id
    params = {"top_hashtags_per_day": {"first_day": day, "last_day": day, "top": 3}, "images_per_label": {},
              "low_confidence_images": {"threshold": 1.01, "top": 100}, "failures_of_last_run": {},
              "compare_model_versions": {"old_model": model_id, "new_model": model_id},
              "abstained_images": {"top": 100}, "reviewed_accuracy": {}}
    assert set(queries) == set(params), "each shipped query is exercised here"
    answers = {name: rows(results_db_url, queries[name], **params[name]) for name in queries}
    assert sorted(row.image_uri for row in answers["failures_of_last_run"]) == sorted(broken)
    assert len({row.run_id for row in answers["failures_of_last_run"]}) > 1, "failures of several shards"
    assert sum(row.images for row in answers["images_per_label"]) == 8
    assert len(answers["low_confidence_images"]) == 8
    assert [row.place for row in answers["top_hashtags_per_day"]] == [1, 2, 3]
    assert len(answers["compare_model_versions"]) == 8
    assert {row.verdict for row in answers["compare_model_versions"]} == {"same"}
    assert answers["abstained_images"] == []  # the samples are all recognised
    assert answers["reviewed_accuracy"] == []  # nobody has reviewed an image yet

    summary = pipeline.summarize_run("nightly-20261204T020000Z", shards, results_db_url).as_dict()
    assert (summary["shard_runs"], summary["tagged"], summary["failed"]) == (shards, 8, 5)
    assert summary["status"] == "succeeded_with_failures"
    assert summary["not_images"] == 2, "the skipped non-image files, counted once over the shards"
    assert rows(results_db_url, "SELECT DISTINCT run_key FROM tagging_runs") == [("nightly-20261204T020000Z",)]

    # a CLI run after it is the last run: its own failures only
    (folder / "broken0.jpg").write_bytes(b"changed, still not a picture")
    cli_run = tag.run(str(folder), predictor.load(predictor.bundled_model()), HashtagEngine(),
                      db.engine(results_db_url))
    assert [(row.image_uri, row.run_id) for row in rows(results_db_url, queries["failures_of_last_run"])] == [
        (str(folder / "broken0.jpg"), cli_run.run_id)]


def test_skipped_non_image_files_are_recorded_on_the_run(tmp_path, results_db_url):
    folder = photo_folder(tmp_path / "photos", broken=0)
    summary = tag.run(str(folder), predictor.load(predictor.bundled_model()), HashtagEngine(),
                      db.engine(results_db_url))
    assert summary.not_images == 2
    assert rows(results_db_url, "SELECT not_images, run_key FROM tagging_runs WHERE run_id = :run_id",
                run_id=summary.run_id) == [(2, summary.run_id)]


def test_migration_014_keys_earlier_runs_and_says_which_had_failures(db_url, monkeypatch):
    """Runs recorded before 014: a nightly shard's run gets its DAG run's key, a CLI run its own id, and a
    run with failed images that said 'succeeded' says succeeded_with_failures."""
    engine = db.engine(db_url)
    files = db.migration_files()
    monkeypatch.setattr(db, "migration_files", lambda: [(name, text) for name, text in files if name < "014"])
    db.migrate(engine)
    runs = [("nightly-20261201T020000Z-shard0of2", 0, "succeeded"), ("nightly-20261201T020000Z-shard1of2", 3,
            "succeeded"), ("20261202T101010Z-1a2b3c4d", 0, "succeeded"), ("nightly-manual-x", 1, "failed")]
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO tagging_runs (run_id, source, model_version, started_at, failed, status) "
            "VALUES (:run_id, '/p', 'm1', :at, :failed, :status)"),
            [{"run_id": run_id, "failed": failed, "status": status, "at": db.utcnow()}
             for run_id, failed, status in runs])
    monkeypatch.setattr(db, "migration_files", lambda: files)
    db.migrate(engine)
    assert rows(db_url, "SELECT run_id, run_key, status, not_images FROM tagging_runs ORDER BY run_id") == [
        ("20261202T101010Z-1a2b3c4d", "20261202T101010Z-1a2b3c4d", "succeeded", 0),
        ("nightly-20261201T020000Z-shard0of2", "nightly-20261201T020000Z", "succeeded", 0),
        ("nightly-20261201T020000Z-shard1of2", "nightly-20261201T020000Z", "succeeded_with_failures", 0),
        ("nightly-manual-x", "nightly-manual-x", "failed", 0)]


def test_clearing_a_nightly_run_counts_it_afresh_abstentions_included(tmp_path, results_db_url):
    """Airflow's clear repeats a nightly run under the same run ids: the record then says what the
    repeat did (everything done before, nothing tagged, nothing abstained), not the first try's
    abstentions beside a tagged count of 0."""
    folder = photo_folder(tmp_path / "photos", broken=0)
    Image.new("RGB", (300, 300), (128, 128, 128)).save(folder / "grey.png")  # blank: no confident label
    first = tag_nightly(folder, results_db_url, shards=1)
    assert [(shard["tagged"], shard["abstained"]) for shard in first] == [(9, 1)]
    again = tag_nightly(folder, results_db_url, shards=1)
    assert [(shard["tagged"], shard["skipped"], shard["abstained"]) for shard in again] == [(0, 9, 0)]
    assert rows(results_db_url, "SELECT tagged, skipped, abstained, not_images FROM tagging_runs") == [(0, 9, 0, 2)]
