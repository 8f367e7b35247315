"""A trained model on disk: `model.keras` plus `metadata.json` with everything that rebuilds and judges it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import tasks
from tasks.config import Settings

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
ONNX_FILE = "model.onnx"
REPORTS_DIR = "reports"  # evaluation reports: metrics, confusion matrix, curves, calibration
# A few test images and the probabilities the model gave them when it was saved: `verify` reloads the
# model (in any process, on any backend) and checks that it still answers the same.
FINGERPRINT_FILE = "fingerprint.npz"
FINGERPRINT_IMAGES = 8


class ArtifactError(ValueError):
    """The path is not a hashtagger model artifact."""


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{tasks.__version__}+{commit}" if commit else tasks.__version__


def describe(model, config, recipe, dataset, metrics: dict, history: dict, epochs_done: int,
             training_seconds: float, train_images: int) -> dict:
    import keras

    import models
    from models import flops

    created = dt.datetime.now(dt.timezone.utc)
    model_id = (f"{config.architecture}-{dataset.name}-{config.recipe}-"
                f"{created:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    manifest = dataset.manifest
    model_config = models.config_for(config.architecture, dict(config.model_overrides))
    return {
        "model_id": model_id,
        "architecture": config.architecture,
        "architecture_config": dataclasses.asdict(model_config),
        "recipe": dataclasses.asdict(recipe),
        "train_config": dataclasses.asdict(config),
        "dataset": dataset.name,
        "dataset_version": dataset.version,
        "dataset_source": manifest.get("source"),
        "class_names": manifest["class_names"],
        "coarse_class_names": manifest.get("coarse_class_names"),
        "fine_to_coarse": manifest.get("fine_to_coarse"),
        "input": {"shape": manifest["image_shape"], "pixels": "raw RGB 0-255",
                  "preprocessing": "inside the model: /255 then minus the training per-pixel mean"},
        "metrics": metrics,
        "history": history,
        "epochs_done": epochs_done,
        "train_images": train_images,
        "training_seconds": round(training_seconds, 1),
        "parameters": int(model.count_params()),
        "forward_flops": flops.forward_flops(model),  # per image, 2 x multiply-adds (models/flops.py)
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "code_version": code_version(),
        "created_at": created.isoformat(timespec="seconds"),
        "reproduce": reproduce_command(config),
    }


def reproduce_command(config) -> str:
    import keras

    backend = keras.backend.backend()
    parts = [] if backend == "tensorflow" else [f"KERAS_BACKEND={backend}"]  # the default needs no prefix
    parts += [f"hashtagger train --arch {config.architecture} --dataset {config.dataset}",
             f"--recipe {config.recipe} --epochs {config.epochs} --seed {config.seed}"]
    if config.train_limit:
        parts.append(f"--train-limit {config.train_limit}")
    if config.budget_minutes:
        parts.append(f"--budget-minutes {config.budget_minutes}")
    if config.dataset_version:
        parts.append(f"--dataset-version {config.dataset_version}")
    for flag, pairs in (("--recipe-set", config.recipe_overrides), ("--model-set", config.model_overrides)):
        parts.extend(f"{flag} {key}={json.dumps(value, separators=(',', ':'))}" for key, value in pairs)
    return " ".join(parts)


def save(model, metadata: dict, settings: Settings, reports_dir: Path | None = None,
         fingerprint_images=None) -> dict:
    """Write the artifact under `models_dir/<model_id>/` atomically; returns metadata with its `path`.

    `reports_dir`, when given, is copied in as the artifact's `reports/`; `fingerprint_images` (a few
    uint8 images), when given, are saved with the model's probabilities for them (see `verify`).
    """
    import numpy as np

    final = settings.models_dir / metadata["model_id"]
    staging = final.with_name(f".staging-{final.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save(staging / MODEL_FILE)
    if reports_dir is not None and Path(reports_dir).is_dir():
        shutil.copytree(reports_dir, staging / REPORTS_DIR)
    if fingerprint_images is not None:
        images = np.ascontiguousarray(fingerprint_images, dtype=np.uint8)
        probabilities = np.asarray(model.predict_on_batch(images.astype("float32")))
        np.savez(staging / FINGERPRINT_FILE, images=images, probabilities=probabilities)
    metadata = {**metadata, "path": str(final)}
    write_metadata(staging, metadata)
    os.rename(staging, final)
    return metadata


def write_metadata(folder: Path, metadata: dict) -> None:
    tmp = folder / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(metadata, indent=1))
    os.replace(tmp, folder / METADATA_FILE)


def read_metadata(path: str | Path) -> dict:
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    metadata_path = folder / METADATA_FILE
    if not metadata_path.exists():
        raise ArtifactError(f"{path}: not a hashtagger model (no {METADATA_FILE} beside the model)")
    metadata = json.loads(metadata_path.read_text())
    metadata["path"] = str(folder)
    return metadata


def load_keras(path: str | Path):
    """(keras.Model, metadata) from an artifact folder (imports Keras, and so TensorFlow by default)."""
    import keras

    import models
    import models.layers  # noqa: F401  registers the custom layers before loading

    metadata = read_metadata(path)
    if metadata.get("architecture") in models.ARCHITECTURES:
        models.module(metadata["architecture"])  # registers the architecture's own layers/initializers
    return keras.saving.load_model(Path(metadata["path"]) / MODEL_FILE, compile=False), metadata


def verify(path: str | Path) -> float:
    """Reload the model and return the largest difference from the probabilities saved with it."""
    import numpy as np

    model, metadata = load_keras(path)
    fingerprint_path = Path(metadata["path"]) / FINGERPRINT_FILE
    if not fingerprint_path.exists():
        raise ArtifactError(f"{path}: saved without {FINGERPRINT_FILE}, nothing to verify against")
    with np.load(fingerprint_path) as saved:
        again = np.asarray(model.predict_on_batch(saved["images"].astype("float32")))
        return float(np.max(np.abs(again - saved["probabilities"])))
