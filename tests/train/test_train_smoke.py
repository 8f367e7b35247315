"""Training smoke test on real CIFAR-10 images: the CLI trains, saves and the artifact describes itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


@pytest.mark.slow
def test_train_vgg16_one_epoch_on_real_images(bin_dir, prepared_cifar10):
    env, prepared = prepared_cifar10
    assert "45,000 train, 5,000 validation, 10,000 test" in prepared

    trained = subprocess.run(
        [bin_dir / "hashtagger", "train", "--arch", "vgg16", "--dataset", "cifar10", "--epochs", "1",
         "--train-limit", "512"], env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    saved = Path(trained.stdout.split("saved to ")[-1].strip())
    metadata = json.loads((saved / "metadata.json").read_text())
    assert (saved / "model.keras").stat().st_size > 100_000
    assert metadata["architecture"] == "vgg16"
    assert metadata["class_names"][3] == "cat"
    assert metadata["train_images"] == 512
    assert metadata["dataset_version"] == prepared.split("version ")[1].split(":")[0]
    assert 0.0 <= metadata["metrics"]["test_top1"] <= 1.0
    assert metadata["metrics"]["test_images"] == 10_000
    assert metadata["reproduce"].startswith("hashtagger train --arch vgg16")
    # the metadata is the typed record's: every key a field of artifact.ModelMetadata, none left untyped
    from tasks.registry import artifact

    typed = artifact.read(saved)
    assert typed.extra == {}, sorted(typed.extra)
    assert (typed.train_images, typed.reproduce) == (512, metadata["reproduce"])
