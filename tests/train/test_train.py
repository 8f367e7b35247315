"""Training through the CLI: every architecture under both recipes and both Keras backends, on a tiny
prepared dataset; saved models reload in a fresh process with identical predictions.

The tiny dataset (`tiny_cifar`) is a fixture of conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import models
from tasks.cli import main as cli
from tasks.store import db
from tasks.train import recipes
from tasks.registry import registry
from tasks.config import Settings

ARCHITECTURES = models.ARCHITECTURES
SMOKE = ["--epochs", "1", "--train-limit", "64", "--recipe-set", "batch_size=32"]  # 2 steps of 32 images
# XLA's CPU compiler at its lowest optimisation: the JAX training steps compile several times faster,
# which is all a two-step smoke run needs
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def model_folders(home: Path) -> list[Path]:
    return sorted(path for path in (home / "models").iterdir() if not path.name.startswith("."))


def fresh_process_verify(folders: list[Path], backend: str = "tensorflow") -> list[float]:
    """Reload each model in a new Python process and return how far its predictions moved."""
    script = ("import json, sys\nfrom tasks.registry import artifact\n"
              "print(json.dumps([artifact.verify(path) for path in sys.argv[1:]]))")
    done = subprocess.run([sys.executable, "-c", script, *map(str, folders)], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


JAX_SCRIPT = """
import json, sys
import keras
from tasks.train import train

assert keras.backend.backend() == "jax", keras.backend.backend()
paths = []
runs = [(name, "fast") for name in sys.argv[1].split(",")] + [("shallow", "seed"), ("airbench", "airbench")]
for architecture, recipe in runs:
    metadata = train.train(train.TrainConfig(
        architecture=architecture, recipe=recipe, epochs=1, train_limit=64,
        recipe_overrides=(("batch_size", 32),), reports=False, verbose=0))
    assert metadata["backend"] == "jax" and metadata["history"]["loss"][0] > 0
    paths.append(metadata["path"])
print(json.dumps(paths))
"""


def start_jax_training():
    """One training step of every architecture (and the seed recipe's augmentation) under JAX, in a
    child process that runs beside the TensorFlow runs: building and compiling steps is mostly
    one core's work, and there are two."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return None
    return subprocess.Popen([sys.executable, "-c", JAX_SCRIPT, ",".join(ARCHITECTURES)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": FAST_XLA})


@pytest.mark.slow
def test_every_architecture_trains_under_both_recipes_and_both_backends(tiny_cifar, hashtagger_home, capsys):
    jax_run = start_jax_training()
    try:
        for architecture in ARCHITECTURES:
            for recipe in recipes.RECIPES:
                assert cli.main(["train", "--arch", architecture, "--recipe", recipe, *SMOKE]) == 0
                assert "test top-1" in capsys.readouterr().out
        jax_stdout, jax_stderr = jax_run.communicate(timeout=600) if jax_run else ("[]", "")
    finally:
        if jax_run and jax_run.poll() is None:
            jax_run.kill()
    assert jax_run is None or jax_run.returncode == 0, jax_stderr[-3000:]
    jax_folders = [Path(path) for path in json.loads(jax_stdout.strip().splitlines()[-1])]
    cli_folders = [folder for folder in model_folders(hashtagger_home) if folder not in jax_folders]
    runs = len(ARCHITECTURES) * len(recipes.RECIPES)
    assert len(cli_folders) == runs and len(jax_folders) in (0, len(ARCHITECTURES) + 2)

    # reloaded in a fresh TensorFlow process, the CLI's models answer exactly as they did when trained,
    # and the JAX-trained ones (the GPU machines' backend) the same to float rounding
    moved = fresh_process_verify(cli_folders + jax_folders)
    assert moved[:runs] == [0.0] * runs
    assert all(difference < 1e-5 for difference in moved[runs:])

    for folder in cli_folders:
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["epochs_done"] == 1 and metadata["dataset_version"] == tiny_cifar.version
        assert metadata["forward_flops"] > 0 and set(metadata["history"]) >= {"loss", "val_accuracy", "seconds"}
        for name in ("report.md", "metrics.json", "confusion_matrix.png", "learning_curves.png", "reliability.png"):
            assert (folder / "reports" / name).exists(), (folder.name, name)
    for folder in jax_folders:
        assert json.loads((folder / "metadata.json").read_text())["backend"] == "jax"
    # every CLI run is in the registry as a candidate
    rows = registry.list_models(db.engine(Settings.from_env().database_url))
    assert sorted(row.model_id for row in rows) == sorted(folder.name for folder in cli_folders)
    assert {row.status for row in rows} == {"candidate"}
    if jax_run is None:
        pytest.skip("JAX is not installed: only the TensorFlow half ran")


def test_the_budget_stops_training_before_the_epochs_run_out(tiny_cifar, hashtagger_home):
    from tasks.train import train

    metadata = train.train(train.TrainConfig(
        architecture="shallow", recipe="seed", epochs=5, budget_minutes=1e-4, train_limit=32,
        recipe_overrides=(("batch_size", 32),), reports=False, verbose=0))
    assert metadata["epochs_done"] == 1 and len(metadata["history"]["seconds"]) == 1
    assert "--budget-minutes" in metadata["reproduce"]
    assert not (Path(metadata["path"]) / "reports").exists()


