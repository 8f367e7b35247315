"""Acceptance of the tagging slice (issue 2) through the installed console scripts, with the bundled model.

`hashtag IMAGE...` names the labels and hashtags; `hashtagger tag DIR` writes them to PostgreSQL or SQLite,
the same rows however often it runs; broken files are reported, never fatal. No TensorFlow on this path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from fixtures import hostile
from tasks.store import db
from tasks.tag import predictor

# CIFAR-10 test images: (class, index in the JPEG test set); the model's answer on each was checked.
PICTURES = [("cat", 0), ("cat", 1), ("ship", 0), ("airplane", 0), ("frog", 0), ("truck", 0)]


@pytest.fixture(scope="module")
def bundled_model():
    try:
        return predictor.bundled_model()
    except predictor.ModelNotFound as error:
        pytest.fail(f"the bundled model ships with the package: {error}")


@pytest.fixture(scope="module")
def pictures(shared_data, tmp_path_factory) -> dict[str, Path]:
    """Real CIFAR-10 test pictures, upscaled to 256x256 photos as a user would send them."""
    folder = tmp_path_factory.mktemp("pictures")
    wanted = {f"cifar10-jpeg/test/{label}/{index:04d}.jpg": f"{label}{index}.jpg" for label, index in PICTURES}
    with tarfile.open(shared_data / "cifar10-jpeg.tar.gz") as archive:
        for member in archive:
            if member.name in wanted:
                with Image.open(archive.extractfile(member)) as image:
                    image.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC).save(
                        folder / wanted[member.name], quality=92)
    assert len(list(folder.iterdir())) == len(wanted)
    return {path.stem: path for path in folder.iterdir()}


def hashtag(bin_dir, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "hashtag"), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=env)


def hashtagger(bin_dir, *args, db_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HASHTAGGER_DB_URL": db_url}
    return subprocess.run([str(bin_dir / "hashtagger"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def scalar(db_url: str, sql: str, **params):
    with db.engine(db_url).connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def test_hashtag_names_cat_with_hashtags(bin_dir, bundled_model, pictures):
    answer = hashtag(bin_dir, pictures["cat0"])
    assert answer.returncode == 0, answer.stderr
    first_line, hashtags_line = answer.stdout.splitlines()[:2]
    assert first_line.startswith(f"{pictures['cat0']}: ") and "cat" in first_line
    assert "#cat" in hashtags_line.split()


def test_hashtag_json_parses_and_answers_every_image(bin_dir, bundled_model, pictures):
    images = [pictures[name] for name in ("cat0", "ship0", "airplane0")]
    answer = hashtag(bin_dir, "--json", *images)
    assert answer.returncode == 0, answer.stderr
    document = json.loads(answer.stdout)
    assert document["model"] == json.loads((bundled_model / "metadata.json").read_text())["model_id"]
    assert [result["image"] for result in document["results"]] == [str(image) for image in images]
    cat = document["results"][0]
    assert "cat" in [label["label"] for label in cat["labels"]]
    assert abs(sum(label["probability"] for label in cat["labels"]) - 1) < 0.5
    assert cat["hashtags"] and all(tag["hashtag"].startswith("#") for tag in cat["hashtags"])


def test_hashtag_bad_file_message_on_stderr_others_answered_exit_non_zero(bin_dir, bundled_model, pictures, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is no JPEG")
    missing = tmp_path / "missing.jpg"
    answer = hashtag(bin_dir, broken, pictures["cat0"], missing, "--json")
    assert answer.returncode == 2, "a missing file is a usage error (the README's exit statuses)"
    assert hashtag(bin_dir, broken, pictures["cat0"]).returncode == 1, "a bad image alone: 1"
    assert f"hashtag: {broken}: truncated or corrupt JPEG" in answer.stderr
    assert f"hashtag: {missing}: cannot read the file: No such file or directory" in answer.stderr
    results = json.loads(answer.stdout)["results"]
    assert [("error" in result, result["image"]) for result in results] == [
        (True, str(broken)), (False, str(pictures["cat0"])), (True, str(missing))]
    assert "Traceback" not in answer.stderr


def test_the_serving_path_never_imports_tensorflow(bundled_model, pictures, tmp_path, results_sqlite_url):
    """`hashtag` and `hashtagger tag` on the bundled ONNX model: no TensorFlow, no Keras in the process."""
    probe = ("import sys, contextlib, io\n"
             "from tasks.cli import main as cli\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    cli.hashtag_main([{str(pictures['cat0'])!r}])\n"
             f"    cli.main(['tag', {str(pictures['cat0'].parent)!r}, '--quiet'])\n"
             "print(sorted({name.split('.')[0] for name in sys.modules} & {'tensorflow', 'keras', 'tf_keras'}))\n")
    env = {**os.environ, "HASHTAGGER_DB_URL": results_sqlite_url}
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "[]"


def test_tag_dir_twice_same_rows_and_a_corrupt_file_has_its_reason(bin_dir, bundled_model, pictures, tmp_path,
                                                                   results_db_url):
    db_url = results_db_url
    folder = tmp_path / "photos"
    (folder / "holiday").mkdir(parents=True)
    for name, path in pictures.items():
        (folder / ("holiday" if name.startswith("cat") else "") / path.name).write_bytes(path.read_bytes())
    (folder / "corrupt.jpg").write_bytes(hostile.noisy_jpeg()[:3000])
    first = hashtagger(bin_dir, "tag", folder, db_url=db_url)
    assert first.returncode == 1, first.stderr  # the documented status when some images failed
    assert f"{len(pictures)} tagged" in first.stdout and "1 failed" in first.stdout
    assert first.stdout.splitlines()[0].split("  ")[0].endswith(": succeeded_with_failures (1 failed)"), first.stdout
    assert "FAILED" in first.stdout and "corrupt.jpg: truncated or corrupt" in first.stdout
    tag_rows = scalar(db_url, "SELECT COUNT(*) FROM image_tags")
    assert tag_rows >= len(pictures) * 3
    assert scalar(db_url, "SELECT COUNT(DISTINCT image_uri) FROM image_tags") == len(pictures)
    assert scalar(db_url, "SELECT reason FROM failed_images WHERE image_uri = :uri",
                  uri=str(folder / "corrupt.jpg")).startswith("truncated or corrupt image data")
    assert scalar(db_url, "SELECT label FROM image_labels WHERE image_uri = :uri",
                  uri=str(folder / "holiday" / "cat0.jpg")) == "cat"

    second = hashtagger(bin_dir, "tag", folder, db_url=db_url)
    assert second.returncode == 0, second.stderr
    assert "0 tagged" in second.stdout and f"{len(pictures) + 1} already done" in second.stdout
    assert scalar(db_url, "SELECT COUNT(*) FROM image_tags") == tag_rows
    assert scalar(db_url, "SELECT COUNT(*) FROM failed_images") == 1
    # the run with a failed file says so; the rerun (the failure is known, nothing failed anew) succeeded
    assert scalar(db_url, "SELECT status FROM tagging_runs WHERE failed = 1") == "succeeded_with_failures"
    assert scalar(db_url, "SELECT status FROM tagging_runs WHERE failed = 0") == "succeeded"


def test_tag_dry_run_limit_and_errors(bin_dir, bundled_model, pictures, tmp_path, sqlite_url):
    folder = pictures["cat0"].parent
    dry = hashtagger(bin_dir, "tag", folder, "--dry-run", db_url=sqlite_url)
    assert dry.returncode == 0 and f"{len(pictures)} to tag" in dry.stdout and "dry-run" in dry.stdout
    # as JSON: nothing tagged, what would be is to_tag, and no run id (nothing recorded for `report` to find)
    as_json = json.loads(hashtagger(bin_dir, "tag", folder, "--dry-run", "--json", db_url=sqlite_url).stdout)
    assert (as_json["status"], as_json["tagged"], as_json["to_tag"], as_json["run_id"]) == (
        "dry-run", 0, len(pictures), None)
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists() or not sa.inspect(
        db.engine(sqlite_url)).has_table("image_results")
    unmigrated = hashtagger(bin_dir, "tag", folder, db_url=sqlite_url)  # a database of one's own: migrate it first
    assert unmigrated.returncode == 2 and "run `hashtagger db migrate`" in unmigrated.stderr
    assert len(unmigrated.stderr.strip().splitlines()) == 1
    assert hashtagger(bin_dir, "db", "migrate", db_url=sqlite_url).returncode == 0
    limited = hashtagger(bin_dir, "tag", folder, "--limit", "2", "--quiet", db_url=sqlite_url)
    assert limited.returncode == 0 and " 2 tagged" in limited.stdout
    missing = hashtagger(bin_dir, "tag", tmp_path / "nowhere", db_url=sqlite_url)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr


def test_the_listing_after_tag_says_how_many_more_hashtags_are_stored(bin_dir, tmp_path, results_sqlite_url):
    """The listing shows an image's first 5 hashtags; "+N more" counts the rest of what the database holds
    (up to 10 on the generic platform), and nothing is added when all of them are shown (instagram: 5)."""
    samples = Path(__file__).resolve().parents[2] / "samples"
    for platform, folder in (("generic", tmp_path / "generic"), ("instagram", tmp_path / "instagram")):
        folder.mkdir()
        for name in ("cat.jpg", "ship.jpg", "bird.jpg"):
            (folder / name).write_bytes((samples / name).read_bytes())
        done = hashtagger(bin_dir, "tag", folder, "--platform", platform, db_url=results_sqlite_url)
        assert done.returncode == 0, done.stderr
        for name in ("cat.jpg", "ship.jpg", "bird.jpg"):
            line = next(line for line in done.stdout.splitlines() if line.endswith(f"/{platform}/{name}"))
            stored = scalar(results_sqlite_url, "SELECT COUNT(*) FROM image_tags WHERE image_uri = :uri",
                            uri=str(folder / name))
            shown = [word for word in line.split() if word.startswith("#")]
            assert len(shown) == min(stored, 5), line
            if stored > 5:
                assert f" +{stored - 5} more " in line, line
            else:
                assert " more " not in line, line
        if platform == "generic":
            assert "+5 more" in done.stdout  # the trial's case: 10 stored, 5 shown
