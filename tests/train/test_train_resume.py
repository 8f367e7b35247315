"""tasks/train/checkpoint.py: `hashtagger train` killed with SIGKILL mid-run, then the same command again,
resumes from the last completed epoch and ends with a model like any other (it loads, evaluates, exports).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

EPOCHS = 6
# airbench's host-augmented recipe (the one long CPU runs use), on the tiny dataset: 180 images in
# batches of 6 make 30 steps an epoch, long enough to be killed inside one
COMMAND = ["train", "--arch", "airbench", "--recipe", "airbench", "--epochs", str(EPOCHS),
           "--recipe-set", "batch_size=6", "--quiet"]


def checkpoint_state(home: Path) -> dict | None:
    states = list((home / "checkpoints").glob("*/state.json"))
    return json.loads(states[0].read_text()) if states else None


@pytest.mark.slow
def test_a_training_killed_mid_epoch_resumes_where_it_stopped_when_run_again(
        tiny_cifar, hashtagger_home, bin_dir, tmp_path):
    from tasks.registry import artifact, export

    env = {**os.environ, "HASHTAGGER_HOME": str(hashtagger_home),
           "HASHTAGGER_DB_URL": f"sqlite:///{tmp_path / 'results.db'}"}
    first = subprocess.Popen([bin_dir / "hashtagger", *COMMAND], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while (checkpoint_state(hashtagger_home) or {}).get("epochs_done", 0) < 2:
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the next epoch (about 1 s on two cores)
        first.send_signal(signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    killed_at = checkpoint_state(hashtagger_home)["epochs_done"]
    assert 2 <= killed_at < EPOCHS
    assert not (hashtagger_home / "models").exists() or not any((hashtagger_home / "models").iterdir())

    again = subprocess.run([bin_dir / "hashtagger", *COMMAND], env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"\nwarning: resuming from epoch {killed_at} of {EPOCHS} (checkpoint " in "\n" + again.stderr
    assert "test top-1" in again.stdout

    [folder] = [path for path in (hashtagger_home / "models").iterdir() if not path.name.startswith(".")]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["epochs_done"] == EPOCHS and metadata["resumed_from_epoch"] == killed_at
    # the learning curves hold every epoch, the ones before the kill included, and the clock runs on
    assert all(len(values) == EPOCHS for values in metadata["history"].values())
    seconds = metadata["history"]["seconds"]
    assert seconds == sorted(seconds) and metadata["training_seconds"] >= seconds[killed_at - 1]
    assert not any((hashtagger_home / "checkpoints").iterdir())  # a finished run leaves no checkpoint

    # a model like any other: it reloads with the same answers, evaluates, and exports to ONNX
    assert artifact.verify(folder) == 0.0
    assert 0.0 <= metadata["metrics"]["test_top1"] <= 1.0
    assert export.export_onnx(folder).exists()


def test_a_different_run_never_picks_up_another_runs_checkpoint(tiny_cifar):
    """The checkpoint key covers everything that makes two runs the same run, and nothing else."""
    import dataclasses

    from tasks.train import checkpoint
    from tasks.train.train import TrainConfig

    config = TrainConfig(architecture="airbench", recipe="airbench", epochs=6)
    same = dataclasses.replace(config, verbose=0, reports=False, budget_minutes=30)
    assert checkpoint.settings_key(config, "v1") == checkpoint.settings_key(same, "v1")
    for other in (dataclasses.replace(config, epochs=7), dataclasses.replace(config, seed=1),
                  dataclasses.replace(config, recipe_overrides=(("batch_size", 6),))):
        assert checkpoint.settings_key(other, "v1") != checkpoint.settings_key(config, "v1")
    assert checkpoint.settings_key(config, "v2") != checkpoint.settings_key(config, "v1")


@pytest.mark.slow
def test_airbench96s_network_trains_with_its_recipe_and_exports_like_any_other(tiny_cifar, hashtagger_home):
    """The residual groups, cutout and the warm-down to zero, end to end: the model the long CPU run will
    give back reloads with the same answers and exports to ONNX within export.ONNX_TOLERANCE (checked by
    export_onnx itself, which raises beyond it)."""
    from tasks.registry import artifact, export
    from tasks.train import train

    metadata = train.train(train.TrainConfig(
        architecture="airbench", recipe="airbench96", epochs=2, train_limit=64,
        recipe_overrides=(("batch_size", 16),), reports=False, verbose=0,
        model_overrides=(("widths", [16, 32, 32]), ("residual", True), ("batch_norm_momentum", 0.9))))
    assert metadata["epochs_done"] == 2 and "--recipe airbench96" in metadata["reproduce"]
    assert "residual=true" in metadata["reproduce"].replace(" ", "").lower()
    assert artifact.verify(metadata["path"]) == 0.0
    assert export.export_onnx(metadata["path"]).exists()
