"""The review app's templates and static files, migration 018 and the reviewed-accuracy query ship in the
wheel (setup.cfg package_data), so that `pip install 'hashtagger[review]'` serves the page."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("tasks/review/templates/review.html", "tasks/review/static/review.js", "tasks/review/static/review.css",
           "tasks/store/sql/018_image_reviews.sql", "tasks/store/sql/queries/reviewed_accuracy.sql",
           "tasks/store/sql/001_results.sql", "tasks/resources/lexicon.json")


def test_the_wheel_ships_the_review_apps_files(tmp_path):
    # a copy of the checkout, so that building leaves no build/ folder in it
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "reports",
                                                  ".pytest_cache", "*.keras", "*.onnx", "*.npz"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("hashtagger-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [name for name in SHIPPED if name not in names]
