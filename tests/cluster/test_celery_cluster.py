"""The Celery cluster run (tests/cluster/celery_cluster.py) under pytest.

CI runs the script itself (see .ci/run), so here it runs only when asked: HASHTAGGER_CLUSTER=1, and
HASHTAGGER_CLUSTER_TRAIN=1 for the training stage too. It takes one to three minutes and both cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.skipif(os.environ.get("HASHTAGGER_CLUSTER") != "1",
                                 reason="set HASHTAGGER_CLUSTER=1 to start the Celery cluster")]

SCRIPT = Path(__file__).resolve().parent / "celery_cluster.py"


def test_celery_cluster_tags_a_bucket_and_leaves_nothing_behind():
    arguments = ["--train"] if os.environ.get("HASHTAGGER_CLUSTER_TRAIN") == "1" else []
    done = subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True,
                          timeout=1200)
    print(done.stdout[-5000:])
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "no process left behind" in done.stdout
