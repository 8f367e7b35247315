"""A run's counts are defined once (tasks/store/counts.py) and every path carries every one of them: the
shard's summary, its tagging_runs row, the nightly totals and the run page's header (issue 23 item 2).
The checks iterate RunCounts' fields, so a field added there is checked on every path with no edit here."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image

from tasks import pipeline
from tasks.store import counts, runs
from tasks.tag import report

REPO = Path(__file__).resolve().parents[2]


def _folder(tmp_path: Path) -> Path:
    """Two sample photos, a blank picture (abstains), a broken file (fails), a sidecar (not an image)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat.jpg", "horse.jpg"):
        shutil.copy(REPO / "samples" / name, folder)
    Image.new("RGB", (64, 64), (90, 90, 90)).save(folder / "blank.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG after all")
    (folder / "notes.txt").write_text("a sidecar")
    return folder


def _every_path(db_url: str, key: str, folder: Path) -> dict[str, dict[str, int]]:
    run_id = pipeline.shard_run_id(key, 0, 1)
    summary = pipeline.tag_shard(str(folder), str(REPO / "models" / "bundled" / "cifar10"), 0, 1, run_id,
                                 db_url=db_url)
    engine = sa.create_engine(db_url)
    try:
        (row,) = runs.runs(engine, [run_id])
        page = report.summary(report.load_runs(engine, [run_id]), 0, 0).as_dict()
    finally:
        engine.dispose()
    totals = pipeline.summarize_run(key, 1, db_url).as_dict()
    return {path: {name: values[name] for name in counts.FIELDS}
            for path, values in (("summary", summary), ("row", row), ("totals", totals), ("page", page))}


def test_every_path_carries_every_count(results_db_url, tmp_path):
    folder = _folder(tmp_path)
    first = _every_path(results_db_url, "nightly-counts-first", folder)
    again = _every_path(results_db_url, "nightly-counts-again", folder)  # everything done: all skipped
    expected_first = counts.RunCounts(seen=4, tagged=3, skipped=0, failed=1, abstained=1, not_images=1).counts()
    expected_again = counts.RunCounts(seen=4, tagged=0, skipped=4, failed=0, abstained=0, not_images=1).counts()
    assert first == dict.fromkeys(first, expected_first), first
    assert again == dict.fromkeys(again, expected_again), again
    # every field is non-zero on some path, so a path that dropped one would show
    assert all(expected_first[name] or expected_again[name] for name in counts.FIELDS)


def test_a_repeated_run_counts_afresh(results_db_url, tmp_path):
    """The same run id again (a cleared Airflow task): the reset covers every count, then the batches add."""
    folder = _folder(tmp_path)
    _every_path(results_db_url, "nightly-counts-repeated", folder)
    repeated = _every_path(results_db_url, "nightly-counts-repeated", folder)
    assert repeated["row"] == counts.RunCounts(seen=4, skipped=4, not_images=1).counts()


def test_each_count_is_defined_in_one_place():
    """No other class in tasks/ declares a count of that name (an `int` field; RunSummary extends RunCounts).
    Other meanings keep their names: an image's `abstained` flag (bool), prepare's `skipped` files (a list)."""
    defined = {}
    for path in sorted((REPO / "tasks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) \
                            and statement.target.id in counts.FIELDS and ast.unparse(statement.annotation) == "int":
                        defined.setdefault(statement.target.id, []).append(f"{path.relative_to(REPO)}:{node.name}")
    assert defined == {name: ["tasks/store/counts.py:RunCounts"] for name in counts.FIELDS}


def test_the_statements_name_every_count():
    for name in counts.FIELDS:
        assert f"{name} = 0" in counts.RESET and name in counts.COLUMNS.split(", ")
    assert counts.ADD.count(" + :") == len(counts.BATCH_FIELDS)
    assert np.array_equal(sorted(counts.BATCH_FIELDS + ("not_images",)), sorted(counts.FIELDS))
