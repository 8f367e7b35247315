"""The review loop end to end, CI-sized, on PostgreSQL and SQLite (issue 25, items 3 and 6's Done-when):
tag a folder with the tiny model, record answers (the store function the page's POSTs call), `hashtagger
data prepare --from-reviews`, train, `hashtagger evaluate` on both test sets, and the promotion gate that
refuses a challenger worse than the champion on the reviewed slice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tasks.data import dataset, reviewed
from tasks.store import db, reviews_sql

HASHTAGGER = str(Path(sys.executable).parent / "hashtagger")
NAME = "photos-reviewed"
PER_CLASS = 4  # photos per class in the tagged folder: 40 in all


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`hashtagger ARGS` in a subprocess; fails the test with its stderr when it fails."""
    done = subprocess.run([HASHTAGGER, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"hashtagger {' '.join(args)}: {done.stderr}"
    return done


def _photos(tree: Path, folder: Path) -> dict[str, str]:
    """{file name: its true class}: the tiny tree's first test images of each class, in one flat folder."""
    truth = {}
    folder.mkdir()
    for class_folder in sorted((tree / "test").iterdir()):
        for image in sorted(class_folder.iterdir())[:PER_CLASS]:
            shutil.copy(image, folder / f"{class_folder.name}-{image.name}")
            truth[f"{class_folder.name}-{image.name}"] = class_folder.name
    return truth


def _answer(engine, row, label, at_minute: int) -> str:
    """Record an answer as POST /api/answers does (reviews_sql.record_answer); its review id."""
    import datetime as dt

    review_id = uuid.uuid4().hex
    reviews_sql.record_answer(engine, review_id, row.image_uri, row.content_hash, row.model_version, label, "ana",
                              dt.datetime(2026, 12, 6, 4, at_minute, tzinfo=dt.timezone.utc))
    return review_id


def _review(engine, truth: dict[str, str]) -> dict[str, str | None]:
    """Answer every tagged photo from its true class, with the page's other moves: two 'none of these',
    one wrong answer corrected later (the latest stands), one answer undone (a retraction row). Returns
    {file name: the answer that should stand}; an undone image is absent."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT image_uri, content_hash, model_version FROM image_results ORDER BY image_uri")).all()
    standing = {}
    for index, row in enumerate(rows):
        name = Path(row.image_uri).name
        label = None if index in (3, 17) else truth[name]
        if index == 5:  # a wrong answer first, corrected a minute later: the correction stands
            _answer(engine, row, "truck" if label != "truck" else "cat", 0)
        if index == 8:  # answered, then undone: the retraction takes it out
            reviews_sql.retract(engine, uuid.uuid4().hex, _answer(engine, row, label, 1), "ana")
            continue
        _answer(engine, row, label, 2)
        standing[name] = label
    return standing


@pytest.fixture
def loop(results_db_url, tmp_path, hashtagger_home, tiny_cifar, tiny_cifar_tree, model_dir):
    """(environment, engine, the answers that stand, the photos folder, the deleted photo): a folder tagged
    by the tiny model and reviewed; one reviewed photo deleted since."""
    env = {**os.environ, "HASHTAGGER_HOME": str(hashtagger_home), "HASHTAGGER_DB_URL": results_db_url}
    photos = tmp_path / "photos"
    truth = _photos(tiny_cifar_tree, photos)
    cli(env, "tag", "--model", str(model_dir), str(photos), "--quiet")
    engine = db.engine(results_db_url)
    standing = _review(engine, truth)
    gone = sorted(standing)[11]
    (photos / gone).unlink()  # reviewed, then deleted: skipped with its reason, not a failure
    return env, engine, standing, photos, gone


@pytest.mark.slow
def test_reviews_become_a_dataset_a_model_and_a_promotion_gate(loop, results_db_url, hashtagger_home):
    from tasks import pipeline
    from tasks.evaluate.result import EvaluationResult

    env, engine, standing, photos, gone = loop
    prepared = cli(env, "data", "prepare", NAME, "--from-reviews", "--base", "cifar10", "--slice-fraction", "0.5")
    assert f"plus {len(standing)} reviewed images" in prepared.stdout, prepared.stdout
    data = dataset.load(NAME)
    entries = json.loads((dataset.find(NAME) / "reviews.json").read_text())
    check_manifest(data, entries, standing, gone)

    # two models trained on the reviewed dataset, one for longer (airbench's recipe: its batches carry
    # the reviewed "none of these" images as outliers); each evaluated on both test sets while training
    trained = [pipeline.train({"architecture": "airbench", "dataset": NAME, "recipe": "airbench", "epochs": epochs,
                               "model_overrides": (("widths", [16, 32, 32]),),
                               "recipe_overrides": (("batch_size", 32),), "reports": False},
                              register=True, db_url=results_db_url) for epochs in (8, 1)]
    slices = [model.metrics["reviewed_slice"] for model in trained]
    for figures in slices:
        assert figures["dataset_version"] == data.version
        assert figures["labelled"] + figures["none"] == len(data["y_reviewed"])
        assert 0.0 <= figures["top1_low"] <= figures["top1"] <= figures["top1_high"] <= 1.0
        assert 0.0 <= figures["abstention"] <= 1.0
    assert trained[0].dataset == "cifar10"  # served and compared as the base's models
    evaluated = EvaluationResult.from_dict(trained[0].metrics)  # what the train DAG's promote task groups by
    assert (evaluated.dataset, evaluated.registered_dataset) == (NAME, "cifar10")
    shown = cli(env, "evaluate", trained[0].path, "--no-figures").stdout
    assert "test set: top-1" in shown and "reviewed slice: top-1" in shown, shown
    assert f"{slices[0]['labelled']:,} images with a class" in shown

    check_gate(engine, trained, slices)


def check_manifest(data, entries: list[dict], standing: dict, gone: str) -> None:
    """What went in: the standing answers only, each with its split or its reason."""
    by_name = {Path(entry["name"]).name: entry for entry in entries}
    assert set(by_name) == set(standing)  # the undone answer is not there
    assert {name: entry["label"] for name, entry in by_name.items()} == standing  # the latest stands
    assert by_name[gone]["split"] == "skipped" and "cannot read" in by_name[gone]["reason"]
    for name, entry in by_name.items():
        assert entry["reviewer"] == "ana" and entry["content_hash"].startswith("sha256:")
        if name != gone:
            held_out = reviewed.in_slice(entry["content_hash"], 0.5)
            assert entry["split"] == ("slice" if held_out else "outliers" if entry["label"] is None else "train")
    counts = {split: sum(entry["split"] == split for entry in entries) for split in reviewed.SPLITS}
    assert data.manifest["reviewed"]["slice"] == counts["slice"] == len(data["y_reviewed"]) > 0
    assert len(data["x_outliers"]) == counts["outliers"]
    assert data.manifest["base"]["name"] == "cifar10"
    base = dataset.load("cifar10")
    assert len(data["y_train"]) == len(base["y_train"]) + counts["train"]
    assert (data["x_test"] == base["x_test"]).all()  # the base's test set, unchanged


def check_gate(engine, trained, slices) -> None:
    """The model better on the reviewed slice is champion; the other is refused, saying the rule."""
    from tasks.registry import promote, registry

    assert slices[0]["top1"] != slices[1]["top1"], f"the two seeds tie on the reviewed slice: {slices}"
    better, worse = sorted(trained, key=lambda model: -model.metrics["reviewed_slice"]["top1"])
    promote.promote_manually(engine, better.model_id, "test: the champion", onnx=False)
    with engine.connect() as connection:
        verdict = registry.decide_promotion(connection, worse.model_id)
    assert not verdict.promoted
    assert "reviewed slice of version" in verdict.reason and "margin of 0.00 points" in verdict.reason
    assert "rule: a challenger must not do worse than the champion" in verdict.reason
    assert "\n" not in verdict.reason
    decision = promote.auto_promote(engine, worse.model_id, onnx=False)
    assert not decision.promoted and "reviewed slice" in decision.reason
    assert registry.champion(engine, "cifar10").model_id == better.model_id
