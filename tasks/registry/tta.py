"""Serving test-time augmentation: a saved model made into a new artifact whose model averages the
probabilities of each image and of its mirror (models/layers.py `with_flip_tta`), so that what
`hashtagger evaluate` measures, what tagging serves through ONNX and what the registry records are
one and the same model, at twice the inference passes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shlex
from pathlib import Path

from tasks.config import Settings
from tasks.registry import artifact

SERVING_TTA_MODES = ("flip",)  # what `with_tta` can build into a model (flip_translate: 6 passes, not yet)


def tta_model_id(model_id: str, mode: str) -> str:
    """The id of `model_id` with `mode` TTA served inside: `<model_id>-<mode>`."""
    return f"{model_id}-{mode}"


def with_tta(source: str | Path, destination: str | Path | None = None, mode: str = "flip",
             settings: Settings | None = None) -> artifact.ModelMetadata:
    """Write a new artifact at `destination` (default: $HASHTAGGER_HOME/models/<id>-<mode>) whose model
    is `source`'s with `mode` test-time augmentation inside; its metadata.

    The new artifact has model.keras (the wrapper, no optimizer state), fingerprint.npz recomputed with
    it (`artifact.verify` gives ~0), and `source`'s metadata with a new model_id, `serving_tta`,
    `derived_from` (the source and this command; `reproduce` keeps the train command), and no metrics:
    temperature, abstention threshold and OOD figures belong to the plain outputs, so `hashtagger
    evaluate` must run on it next. ArtifactError (one line) when `source` is not an artifact, already
    serves TTA, or `destination` exists; ValueError for an unknown `mode`.
    """
    import numpy as np

    from models.layers import tta_mode, with_flip_tta

    if mode not in SERVING_TTA_MODES:
        raise ValueError(f"unknown serving test-time augmentation {mode!r}; choose one of "
                         f"{', '.join(SERVING_TTA_MODES)}")
    settings = settings or Settings.from_env()
    metadata = artifact.read(source)
    if metadata.serving_tta:
        raise artifact.ArtifactError(f"{source}: {metadata.model_id} already serves with {metadata.serving_tta} "
                                     f"test-time augmentation (made from {(metadata.derived_from or {}).get('model_id')})")
    target = Path(destination) if destination else settings.models_dir / tta_model_id(metadata.model_id, mode)
    if target.exists():
        raise artifact.ArtifactError(f"{target} exists already; choose another destination or remove it")
    model, _ = artifact.load_keras(metadata.path)
    if tta_mode(model) != "none":
        raise artifact.ArtifactError(f"{source}: its model already averages over flips, but its metadata "
                                     "does not say so (serving_tta unset)")
    wrapped = with_flip_tta(model)
    derived = _derived_metadata(metadata, mode, source, destination)
    return artifact.read(artifact.save(wrapped, derived, settings, fingerprint_images=_fingerprint_images(
        metadata, np), folder=target)["path"])


def _derived_metadata(metadata: artifact.ModelMetadata, mode: str, source, destination) -> artifact.ModelMetadata:
    """`metadata` for the wrapped model: new id and time, no metrics or evaluations, its derivation."""
    command = ["hashtagger", "models", "tta", str(source)] + ([str(destination)] if destination else []) + [
        "--mode", mode]
    extra = {key: value for key, value in metadata.extra.items() if key != "evaluations"}  # of the plain model
    return dataclasses.replace(
        metadata, model_id=tta_model_id(metadata.model_id, mode), path=None, metrics={}, extra=extra,
        serving_tta=mode, created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # two passes per image (models/flops.py would count the nested model's layers once)
        forward_flops=metadata.forward_flops * 2 if metadata.forward_flops else None, code_version=artifact.code_version(),
        derived_from={"model_id": metadata.model_id, "path": str(Path(metadata.path).resolve()), "command": shlex.join(command),
                      "test_top1": metadata.test_top1})


def _fingerprint_images(metadata: artifact.ModelMetadata, np):
    """The source's fingerprint images (uint8 (N, H, W, C)), else FINGERPRINT_IMAGES fixed random ones."""
    saved = Path(metadata.path) / artifact.FINGERPRINT_FILE
    if saved.exists():
        with np.load(saved) as fingerprint:
            return fingerprint["images"]
    shape = (metadata.input or {}).get("shape", [32, 32, 3])
    return np.random.default_rng(0).integers(0, 256, (artifact.FINGERPRINT_IMAGES, *shape), dtype=np.uint8)
