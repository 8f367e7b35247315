"""Promote stage: choose the champion that tagging serves, and export it to ONNX.

The export (seconds, TensorFlow) runs before the registry's short locked transaction, never inside
it, so a champion always has its `model.onnx` and concurrent writers are not held up. Exporting a
model that then loses the race is harmless: the file only speeds up serving that model.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from tasks.registry import artifact
from tasks.registry import export
from tasks.registry import registry

log = logging.getLogger(__name__)


def _prepare_champion(engine: sa.Engine, model_id: str, onnx: bool) -> None:
    """Check that the model's artifact is there and, with `onnx`, export it."""
    model = registry.get(engine, model_id)
    if model is None:
        raise registry.RegistryError(f"model {model_id} is not registered (see `hashtagger models list`)")
    try:
        artifact.read_metadata(model["artifact_uri"])
    except artifact.ArtifactError as error:
        # a champion that cannot be loaded would break tagging: refuse before anything changes
        raise registry.RegistryError(f"{model_id}: its artifact is gone ({error})") from error
    if not onnx:
        return
    try:
        export.export_onnx(model["artifact_uri"])
    except export.ExportError as error:
        # serving falls back to Keras; a failed export must not block choosing the better model
        log.warning("%s: %s; it will be served through Keras", model_id, error)


def promote(engine: sa.Engine, model_id: str, reason: str = "manual", onnx: bool = True) -> registry.Decision:
    """Make `model_id` champion of its dataset, whatever its accuracy."""
    _prepare_champion(engine, model_id, onnx)
    return registry.promote(engine, model_id, reason)


def auto_promote(engine: sa.Engine, model_id: str, margin: float = registry.DEFAULT_MARGIN,
                 onnx: bool = True) -> registry.Decision:
    """Make `model_id` champion only if it beats the champion by `margin` on the same dataset version."""
    with engine.connect() as connection:
        likely = registry.decide(connection, model_id, margin).promoted  # a preview, without the lock
    if likely:
        _prepare_champion(engine, model_id, onnx)
    return registry.auto_promote(engine, model_id, margin)


def rollback(engine: sa.Engine, dataset: str, onnx: bool = True) -> registry.Decision:
    """Bring back the champion the current one replaced."""
    target = registry.rollback_target(engine, dataset)
    if target is not None:
        _prepare_champion(engine, target, onnx)
    return registry.rollback(engine, dataset)
