"""Progress and machine-readable summaries of `hashtagger train`: one line per epoch when stderr is not a
terminal (a log, Airflow), a bar on a terminal, --json for scripts; no TensorFlow banners."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tasks.cli import progress


def test_epoch_line_reads_like_a_log_line():
    line = progress.epoch_line(3, 10, 41.25, {"loss": 1.23456, "accuracy": 0.5671, "val_accuracy": 0.551,
                                              "learning_rate": 0.1})
    assert line == "epoch 3/10  41.2 s  loss 1.235  accuracy 56.7%  val_accuracy 55.1%"


def test_train_prints_one_line_per_epoch_and_a_json_summary(tiny_cifar, bin_dir, tmp_path):  # noqa: F811
    env = {**os.environ, "HASHTAGGER_DB_URL": f"sqlite:///{tmp_path / 'results.db'}"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI sets its own quiet default
    done = subprocess.run([str(bin_dir / "hashtagger"), "train", "--arch", "shallow", "--recipe", "seed",
                           "--epochs", "2", "--train-limit", "64", "--recipe-set", "batch_size=32", "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["epochs_done"] == 2 and 0 <= summary["test_top1"] <= 1
    assert summary["calibration"]["temperature"] > 0 and 0 <= summary["calibration"]["test_ece_after"] <= 1
    assert "ood" in summary  # the held-out outlier figures, null where the dataset has none
    lines = done.stderr.strip().splitlines()
    assert [line.split("  ")[0] for line in lines if "epoch " in line] == ["epoch 1/2", "epoch 2/2"]
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "Traceback"):
        assert noise not in done.stderr, done.stderr[-3000:]


def test_the_summary_says_what_the_run_trained_against_and_how_it_separates_outliers():
    """The closing lines of `hashtagger train`, from a real run's metadata (reports/runs/: the CIFAR-100 run
    with outlier exposure from CIFAR-10's exposure classes, 2026-12-07)."""
    from tasks.cli import train

    runs = Path(__file__).resolve().parents[2] / "reports" / "runs"
    metadata = json.loads((runs / "airbench-cifar100-airbench-20261207T024747-b1cc21" / "metadata.json").read_text())
    assert train.outcome_lines(metadata["recipe"], metadata["metrics"]) == [
        "  outlier exposure: cifar10's exposure classes, 25% of each batch at weight 0.5",
        "  calibration (ECE): 0.2360 uncalibrated, 0.0725 after temperature 0.574",
        "  out of distribution (cifar10_held_out, classes never trained on): msp AUROC 0.712, FPR at 95% TPR 0.869; "
        "energy AUROC 0.718, FPR at 95% TPR 0.867"]
    assert train.outcome_lines("seed", {}) == []  # an older model's recipe name, no figures: nothing to add
    # an evaluation since top-label scaling exists (the CIFAR-100 recipe pilot a, 2026-12-07) says what it did
    pilot = json.loads((runs / "airbench-cifar100-airbench-20261207T064249-b69954" / "metadata.json").read_text())
    assert train.outcome_lines(pilot["recipe"], pilot["metrics"])[1] == (
        "  calibration (ECE): 0.2271 uncalibrated, 0.0476 after temperature 0.554, "
        "0.0129 after top-label Platt scaling")
    left_out = {**pilot["metrics"]["calibration"],
                "top_label": {"method": "none", "slope": 1.0, "intercept": 0.0,
                              "why": "12 wrong top labels on validation, fewer than 50"}}
    assert train.outcome_lines(None, {"calibration": left_out}) == [
        "  calibration (ECE): 0.2271 uncalibrated, 0.0476 after temperature 0.554; "
        "no top-label scaling: 12 wrong top labels on validation, fewer than 50"]
