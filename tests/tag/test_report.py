"""The page of a tagging run: written from the results database, rendered by a real browser.

The samples (8 real CIFAR-10 test pictures) and one broken file are tagged with the bundled model, on
PostgreSQL and on SQLite; `hashtagger report` writes the pages (4 images a page, so there are two);
headless Chromium renders the first page to a PNG and dumps its DOM.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image, ImageStat

from tasks.hashtags.engine import HashtagEngine
from tasks.store import db
from tasks.tag import predictor, report, tag

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


@pytest.fixture
def tagged_run(tmp_path, db_url) -> tuple[str, str, Path]:
    """(database URL, run id, folder): the samples plus a broken file, tagged once."""
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    engine = db.ensure_schema(db.engine(db_url))
    summary = tag.run(str(folder), predictor.load(predictor.bundled_model()), HashtagEngine(), engine,
                      tag.TagConfig(batch_size=4))
    assert (summary.tagged, summary.failed) == (8, 1)
    return db_url, summary.run_id, folder


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return path


def browse(page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                           *mode, page.as_uri()], capture_output=True, text=True, timeout=120)


def test_the_report_command_writes_pages_with_thumbnails_hashtags_and_failures(tagged_run, bin_dir,
                                                                             hashtagger_home):
    db_url, run_id, folder = tagged_run
    done = subprocess.run([str(bin_dir / "hashtagger"), "report", run_id, "--page-size", "4"], text=True,
                          capture_output=True, timeout=120, env={**os.environ, "HASHTAGGER_DB_URL": db_url})
    assert done.returncode == 0, done.stderr
    index = Path(done.stdout.strip())
    assert index == hashtagger_home / "reports" / run_id / "index.html"
    first, last = index.read_text(), (index.parent / "page-2.html").read_text()
    assert not (index.parent / "page-3.html").exists()  # 8 images, 4 a page; the failures on the last
    assert first.count('<img src="data:image/jpeg;base64,') == 4
    bundled = predictor.load(predictor.bundled_model()).model_id  # the model that tagged the run (airbench since e710739)
    assert "9 seen, 8 tagged, 0 already done, 1 failed" in first and bundled in first
    assert "<td>succeeded_with_failures (1 failed)</td>" in first, "a failed file shows in the header's status"
    assert "#cat" in first and "#ship" in last  # sorted by URI: airplane..cat, then dog..ship
    assert 'href="page-2.html"' in first and "broken.jpg" in last and "Failed images" in last
    assert "Failed images" not in first and 'href="page-2.html">last page' in first


def test_a_browser_renders_the_page(tagged_run, tmp_path, hashtagger_home):
    db_url, run_id, _ = tagged_run
    index = report.write(db.engine(db_url), [run_id], config=report.ReportConfig(page_size=4))
    screenshot = tmp_path / "page.png"
    shot = browse(index, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,900")
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    with Image.open(screenshot) as picture:
        assert picture.size == (1280, 900)
        rgb = picture.convert("RGB")
        assert max(ImageStat.Stat(rgb).stddev) > 20, "the screenshot is blank"
        colours = rgb.resize((320, 225)).getcolors(maxcolors=320 * 225)
        assert colours is None or len(colours) > 500, "no photographs on the page"  # text alone has few colours

    dom = browse(index, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    summary = re.search(r'<div class="summary" id="summary">(.*?)</div>', dom.stdout, flags=re.S).group(1)
    assert "9 seen, 8 tagged" in summary and "1 failed" in summary
    cards = re.findall(r'<figure class="image"><img src="data:image/jpeg;base64,[^"]+" alt="(\w+)">', dom.stdout)
    assert len(cards) == 4 and {"airplane", "automobile"} <= set(cards)


@pytest.fixture
def s3_endpoint(monkeypatch, tmp_path):
    """moto's S3 server on 127.0.0.1, with its credentials and nothing from this machine's AWS set-up."""
    from moto.server import ThreadedMotoServer

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true"),
                        ("AWS_CONFIG_FILE", str(tmp_path / "none")),
                        ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))):
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield f"http://{host}:{port}"
    server.stop()


def test_thumbnails_of_a_bucket_run_are_read_through_the_bucket(s3_endpoint, sqlite_url, hashtagger_home):
    import boto3

    bucket = f"photos-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    for path in sorted(SAMPLES.glob("*.jpg"))[:3]:
        client.put_object(Bucket=bucket, Key=f"incoming/{path.name}", Body=path.read_bytes())
    engine = db.ensure_schema(db.engine(sqlite_url))
    summary = tag.run(f"s3://{bucket}/incoming/", predictor.load(predictor.bundled_model()), HashtagEngine(),
                      engine)
    client.delete_object(Bucket=bucket, Key="incoming/bird.jpg")  # gone since: its card stays, without a picture
    page = report.write(engine, [summary.run_id]).read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == 2 and page.count("no longer readable") == 1
    assert f"s3://{bucket}/incoming/airplane.jpg" in page


def test_names_keyed_by_their_hash_are_shown_as_text_and_get_their_thumbnails(tmp_path, db_url, hashtagger_home):
    """A file name that is not UTF-8 and a path over 1,024 bytes are stored under 'uri-sha256:' keys
    (sql/010): the page shows their names' text and still reads them for thumbnails."""
    folder = tmp_path / "photos"
    deep = folder / "/".join(["d" * 200] * 6)  # 1,200+ bytes: keyed by its hash, kept as it is in uri_text
    deep.mkdir(parents=True)
    shutil.copy(SAMPLES / "cat.jpg", deep / "cat.jpg")
    shutil.copy(SAMPLES / "dog.jpg", os.path.join(os.fsencode(folder), b"caf\xe9.jpg"))  # Latin-1, not UTF-8
    (folder / b"bad\xff.jpg".decode("utf-8", "surrogateescape")).write_bytes(b"\xff\xd8\xff not really a jpeg")
    engine = db.ensure_schema(db.engine(db_url))
    summary = tag.run(str(folder), predictor.load(predictor.bundled_model()), HashtagEngine(), engine)
    assert (summary.tagged, summary.failed) == (2, 1)
    page = report.write(engine, [summary.run_id]).read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == 2 and "no longer readable" not in page
    assert "caf\\xe9.jpg" in page and "bad\\xff.jpg" in page and str(deep / "cat.jpg") in page
    assert "uri-sha256:" not in page


def test_summary_json_and_the_page_count_the_abstentions(tmp_path, db_url, hashtagger_home):
    """A flat grey picture has nothing to recognise: it abstains, and the run page's summary.json and
    header say how many results have no confident label (as tagging_runs.abstained does)."""
    import json

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(SAMPLES / "cat.jpg", folder)
    Image.new("RGB", (300, 300), (128, 128, 128)).save(folder / "grey.png")
    engine = db.ensure_schema(db.engine(db_url))
    run = tag.run(str(folder), predictor.load(predictor.bundled_model()), HashtagEngine(), engine)
    assert (run.tagged, run.abstained) == (2, 1)
    index = report.write(engine, [run.run_id])
    summary = json.loads((index.parent / "summary.json").read_text())
    assert (summary["seen"], summary["tagged"], summary["abstained"], summary["failed"]) == (2, 2, 1, 0)
    assert summary["status"] == "succeeded", "an abstention is no failure"
    page = index.read_text()
    assert "2 seen, 2 tagged, 0 already done, 0 failed; 1 of the tagged with no confident label" in page
    assert page.count(f"<div class=label>{report.NO_LABEL} ") == 1  # the grey picture's card
    # the abstained card shows what the model would have guessed, from the stored candidates
    with engine.connect() as connection:
        (stored,) = connection.execute(sa.text("SELECT top_labels FROM image_results WHERE label IS NULL")).one()
    shown = ", ".join(f"{name} {probability:.0%}" for name, probability in json.loads(stored))
    assert f"<div class=candidates>candidates: {shown}</div>" in page
    # the model's long id once, in the header; no card repeats it
    assert page.count(run.model_id) == 1 and f"<td>{run.model_id}</td>" in page


def test_cards_name_their_model_only_where_it_differs_from_the_header(tmp_path, db_url, hashtagger_home):
    """The report of two runs by two models (a header listing both): each card names its own model."""
    engine = db.ensure_schema(db.engine(db_url))
    summaries = []
    for dataset in ("cifar10", "cifar100"):
        folder = tmp_path / dataset
        folder.mkdir()
        shutil.copy(SAMPLES / "ship.jpg", folder)
        summaries.append(tag.run(str(folder), predictor.load(predictor.bundled_model(dataset)), HashtagEngine(),
                                 engine))
    page = report.write(engine, [summary.run_id for summary in summaries], "both").read_text()
    for summary in summaries:
        assert page.count(summary.model_id) == 2, "in the header's model list and on its card"
