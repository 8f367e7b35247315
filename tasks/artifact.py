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
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "code_version": code_version(),
        "created_at": created.isoformat(timespec="seconds"),
        "reproduce": reproduce_command(config),
    }


def reproduce_command(config) -> str:
    parts = [f"hashtagger train --arch {config.architecture} --dataset {config.dataset}",
             f"--recipe {config.recipe} --epochs {config.epochs} --seed {config.seed}"]
    if config.train_limit:
        parts.append(f"--train-limit {config.train_limit}")
    if config.budget_minutes:
        parts.append(f"--budget-minutes {config.budget_minutes}")
    return " ".join(parts)


def save(model, metadata: dict, settings: Settings) -> dict:
    """Write the artifact under `models_dir/<model_id>/` atomically; returns metadata with its `path`."""
    final = settings.models_dir / metadata["model_id"]
    staging = final.with_name(f".staging-{final.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save(staging / MODEL_FILE)
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

    import models.layers  # noqa: F401  registers the custom layers before loading

    metadata = read_metadata(path)
    return keras.saving.load_model(Path(metadata["path"]) / MODEL_FILE, compile=False), metadata
