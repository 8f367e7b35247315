"""Progress and machine-readable summaries of `hashtagger train`: one line per epoch when stderr is not a
terminal (a log, Airflow), a bar on a terminal, --json for scripts; no TensorFlow banners."""

from __future__ import annotations

import json
import os
import subprocess


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
    lines = done.stderr.strip().splitlines()
    assert [line.split("  ")[0] for line in lines if "epoch " in line] == ["epoch 1/2", "epoch 2/2"]
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "Traceback"):
        assert noise not in done.stderr, done.stderr[-3000:]
