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
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tasks.hashtags.engine import HashtagEngine
from tasks.store import db
from tasks.tag import predictor, report, tag

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
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
    assert (summary["tagged"], summary["failed"]) == (8, 1)
    return db_url, summary["run_id"], folder


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
    assert "9 seen, 8 tagged, 0 already done, 1 failed" in first and "resnet9-cifar10" in first
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
