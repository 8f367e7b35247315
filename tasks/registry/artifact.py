"""A trained model on disk: `model.keras` plus `metadata.json` with everything that rebuilds and judges it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shlex
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


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What `metadata.json` says about a saved model: enough to rebuild, serve and judge it.

    The JSON keeps these keys (bundled models' files load as they are); keys this version does not
    know are kept in `extra` and written back. `model_id` names the model everywhere in code (the
    results tables call the same id `model_version`).
    """

    model_id: str  # <architecture>-<dataset>-<recipe>-<UTC time>-<6 hex>, or a bundled model's name
    class_names: list[str]  # the model's output order
    architecture: str | None = None  # a name in models.ARCHITECTURES; the registry needs it
    dataset: str | None = None  # cifar10, cifar100, or a user's own dataset's name; the registry needs it
    dataset_version: str | None = None  # content hash of the dataset version it was trained on
    path: str | None = None  # the artifact folder, filled in when read from disk (not trusted from the file)
    metrics: dict = dataclasses.field(default_factory=dict)  # test_top1, test_top5 (fractions), ...
    recipe: dict | str | None = None  # the training recipe's fields (tasks/train/recipes.py)
    coarse_class_names: list[str] | None = None  # CIFAR-100 superclasses
    fine_to_coarse: list[int] | None = None  # superclass index of each class
    input: dict | None = None  # {"shape": [32, 32, 3], "pixels": ..., "preprocessing": ...}
    created_at: str | None = None  # ISO 8601, UTC
    epochs_done: int | None = None  # epochs trained (a time budget may stop before the recipe's)
    training_seconds: float | None = None  # wall-clock seconds of the fit, summed over a resumed run's processes
    # How it was made (written by `describe` at the end of training; older and bundled files may lack them)
    architecture_config: dict | None = None  # the architecture's Config fields (models/)
    train_config: dict | None = None  # TrainConfig's fields (tasks/train/train.py)
    dataset_source: str | None = None  # where the dataset version was prepared from
    prepared_dataset: str | None = None  # the name its data was prepared under (a reviewed dataset's own name)
    history: dict | None = None  # per-epoch Keras metrics: {name: [value per epoch]}
    train_images: int | None = None  # training images seen per epoch
    resumed_from_epoch: int | None = None  # the epoch the last process resumed from (0: in one go)
    machine: str | None = None  # CPU, cores and accelerators that trained it (`machine()`)
    parameters: int | None = None  # trainable and other weights
    forward_flops: int | None = None  # per image, 2 x multiply-adds (models/flops.py)
    keras_version: str | None = None
    backend: str | None = None  # Keras backend that trained: tensorflow, jax or torch
    code_version: str | None = None  # package version, + git commit from a checkout
    reproduce: str | None = None  # the `hashtagger train` command that makes it again
    # Test-time augmentation built into the saved model itself ("flip": it averages each image and its
    # mirror, at twice the inference passes), so evaluate, ONNX serving and the registry see one model;
    # None: plain. Set by `hashtagger models tta` (tasks/registry/tta.py), which also fills `derived_from`.
    serving_tta: str | None = None
    derived_from: dict | None = None  # {"model_id", "path", "command"}: the model and command this one was made from
    extra: dict = dataclasses.field(default_factory=dict)  # every other key of metadata.json, as is

    @classmethod
    def from_dict(cls, values: dict) -> "ModelMetadata":
        """From metadata.json's dict; ArtifactError names a missing required key."""
        names = {field.name for field in dataclasses.fields(cls)} - {"extra"}
        known = {key: value for key, value in values.items() if key in names}
        missing = [name for name in ("model_id", "class_names") if name not in known]
        if missing:
            raise ArtifactError(f"metadata of {values.get('path') or values.get('model_id')} lacks {missing}")
        return cls(**known, extra={key: value for key, value in values.items() if key not in names})

    def as_dict(self) -> dict:
        """The metadata.json dict (extra keys included, `None` values of known keys kept)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "extra"}
        return {**values, **self.extra}

    @property
    def test_top1(self) -> float | None:
        """Test top-1 accuracy on its own dataset version (a fraction), if evaluated."""
        return self.metrics.get("test_top1")

    @property
    def recipe_name(self) -> str:
        return self.recipe.get("name", "unknown") if isinstance(self.recipe, dict) else str(self.recipe or "unknown")


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{tasks.__version__}+{commit}" if commit else tasks.__version__


def describe(model, config, recipe, dataset, metrics: dict, history: dict, epochs_done: int,
             training_seconds: float, train_images: int, resumed_from: int = 0) -> ModelMetadata:
    """The metadata of a freshly trained model. `training_seconds`: wall-clock seconds of the fit,
    summed over every process of a resumed run; `resumed_from`: the epoch the last process resumed from
    (0: trained in one go)."""
    import keras

    import models
    from models import flops

    created = dt.datetime.now(dt.timezone.utc)
    manifest = dataset.manifest
    # a dataset prepared from reviews serves and competes as its base (same classes): `dataset` is the base's
    # name, `prepared_dataset` the name it was prepared under
    return ModelMetadata(
        model_id=f"{config.architecture}-{dataset.name}-{config.recipe}-{created:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        class_names=manifest["class_names"], architecture=config.architecture,
        dataset=getattr(dataset, "family", dataset.name), prepared_dataset=dataset.name,
        dataset_version=dataset.version, metrics=metrics, recipe=dataclasses.asdict(recipe),
        coarse_class_names=manifest.get("coarse_class_names"), fine_to_coarse=manifest.get("fine_to_coarse"),
        input={"shape": manifest["image_shape"], "pixels": "raw RGB 0-255",
               "preprocessing": "inside the model: " + _preprocessing_summary(model)},
        created_at=created.isoformat(timespec="seconds"), epochs_done=epochs_done,
        training_seconds=round(training_seconds, 1),
        architecture_config=dataclasses.asdict(models.config_for(config.architecture, dict(config.model_overrides))),
        train_config=dataclasses.asdict(config), dataset_source=manifest.get("source"), history=history,
        train_images=train_images, resumed_from_epoch=resumed_from, machine=machine(),
        parameters=int(model.count_params()), forward_flops=flops.forward_flops(model),
        keras_version=keras.__version__, backend=keras.backend.backend(), code_version=code_version(),
        reproduce=reproduce_command(config))


def machine() -> str:
    """The host that trained: CPU model, the cores this process may use, accelerators Keras sees."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, {platform.system()} {platform.release()}"


def _preprocessing_summary(model) -> str:
    """What the model's own preprocessing layer does, from the first line of its docstring."""
    from models.layers import preprocessing_layer

    try:
        return (type(preprocessing_layer(model)).__doc__ or "").split("\n")[0].strip()
    except ValueError:
        return "none"


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
    if getattr(config, "init_from", None):
        parts.append(f"--init-from {config.init_from}")
    for flag, pairs in (("--recipe-set", config.recipe_overrides), ("--model-set", config.model_overrides)):
        for key, value in pairs:
            setting = f"{key}={json.dumps(value, separators=(',', ':'))}"
            parts.append(f"{flag} {shlex.quote(setting)}")  # quoted: widths=[16,32,32] is a glob pattern
    return " ".join(parts)


def save(model, metadata: ModelMetadata | dict, settings: Settings, reports_dir: Path | None = None,
         fingerprint_images=None, folder: Path | None = None) -> dict:
    """Write the artifact under `models_dir/<model_id>/` (or `folder`) atomically; returns its
    metadata.json dict, with its `path`.

    `reports_dir`, when given, is copied in as the artifact's `reports/`; `fingerprint_images` (a few
    uint8 images), when given, are saved with the model's probabilities for them (see `verify`).
    """
    import numpy as np

    metadata = metadata.as_dict() if isinstance(metadata, ModelMetadata) else dict(metadata)
    final = Path(folder) if folder is not None else settings.models_dir / metadata["model_id"]
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


def read(path: str | Path) -> ModelMetadata:
    """The typed metadata of the artifact at `path`; ArtifactError when it is not one."""
    return ModelMetadata.from_dict(read_metadata(path))


def registrable(model_id: str, top1, created_at) -> str | None:
    """A model's metadata as the registry records it: returns `created_at` in UTC, as the project writes it
    (ISO 8601, seconds: rows sort by it as text on SQLite). ValueError unless test_top1 is a fraction in [0, 1] and created_at (when given) an ISO 8601 time with
    its zone: hand-written metadata put 93.5 (shown as 9350%), NaN, "yesterday" or a bare number there."""
    if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 1:  # NaN fails too
        raise ValueError(f"{model_id}: test_top1 must be a fraction between 0 and 1, not {top1!r}")
    if created_at is None:
        return None  # registered now
    try:
        parsed = dt.datetime.fromisoformat(created_at)  # TypeError: not text
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"{model_id}: created_at must be an ISO 8601 time with its zone "
                         f"(e.g. 2026-12-06T20:00:00+00:00), not {created_at!r}")
    return parsed.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def read_metadata(path: str | Path) -> dict:
    """metadata.json of the artifact at `path` as a dict, with `path` set to its folder."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    metadata_path = folder / METADATA_FILE
    if not folder.exists():
        raise ArtifactError(f"{path}: no such file or folder")
    if not metadata_path.exists():
        raise ArtifactError(f"{path}: not a hashtagger model (no {METADATA_FILE} beside the model)")
    try:
        metadata = json.loads(metadata_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ArtifactError(f"{metadata_path}: not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{metadata_path}: holds a JSON {type(metadata).__name__}, not an object of fields")
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
