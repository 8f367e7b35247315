"""Promote stage: choose the champion that tagging serves, through the gates, and export it to ONNX.

A champion always has its `model.onnx`: tagging serves it on ONNX Runtime and never imports TensorFlow,
so a promotion whose export fails (no `onnx`/`tf2onnx`: install hashtagger[train]) fails and says why.
The export (seconds, TensorFlow) runs before the registry's short locked transaction, never inside it,
so concurrent writers are not held up. Exporting a model that then loses the race is harmless: the file
only speeds up serving that model. An artifact in the object store gets its `model.onnx` uploaded too.

The stage's entry points are `promote_manually` (a person chose; no gates), `auto_promote` (through the
gates) and `rollback`; each prepares the artifact, then calls the registry's database write of the same
change (`registry.set_champion`, `set_champion_if_gates_pass`, `restore_previous_champion`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import sqlalchemy as sa

from tasks.registry import artifact
from tasks.registry import artifact_store
from tasks.registry import export
from tasks.registry import gates
from tasks.registry import registry

log = logging.getLogger(__name__)
EXPORT_MODULES = ("onnx", "tf2onnx")  # what Keras' ONNX export needs beside TensorFlow


class PromotionError(RuntimeError):
    """The model cannot become champion (its ONNX export failed); the message is one line saying why."""


def _metadata(model: registry.ModelRecord) -> dict:
    try:
        metadata = artifact.read_metadata(artifact_store.resolve(model.artifact_uri))
    except (artifact.ArtifactError, artifact_store.StoreError) as error:
        # a champion that cannot be loaded would break tagging: refuse before anything changes
        raise registry.RegistryError(f"{model.model_id}: its artifact is gone ({error})") from error
    if metadata.get("model_id") != model.model_id:
        # an older bundled model: `bundled:cifar10` now names the model this install ships
        raise registry.RegistryError(f"{model.model_id}: its artifact {model.artifact_uri} now holds "
                                     f"{metadata.get('model_id')}, another model")
    return metadata


def _prepare_champion(engine: sa.Engine, model_id: str, onnx: bool) -> None:
    """Check that the model's artifact is there and, with `onnx`, that it has (or gets) its model.onnx."""
    model = registry.get(engine, model_id)
    if model is None:
        raise registry.RegistryError(f"model {model_id} is not registered (see `hashtagger models list`)")
    folder = _metadata(model)["path"]
    if onnx:
        ensure_onnx(model, folder)


def ensure_onnx(model: registry.ModelRecord, folder: str) -> None:
    """Export `model.onnx` into the artifact folder unless it is there; raises PromotionError."""
    if (Path(folder) / artifact.ONNX_FILE).exists():
        return
    missing = [name for name in EXPORT_MODULES if _absent(name)]
    if missing:
        raise PromotionError(f"cannot promote {model.model_id}: its ONNX export needs {' and '.join(missing)} "
                             f"(pip install 'hashtagger[train]'), and tagging serves only ONNX")
    try:
        export.export_onnx(folder)
    except (export.ExportError, artifact.ArtifactError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        raise PromotionError(f"cannot promote {model.model_id}: {reason}") from error
    if model.artifact_uri.startswith(artifact_store.S3):
        artifact_store.upload_folder(Path(folder), model.artifact_uri)


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a blocked or half-installed package
        return True


def promote_manually(engine: sa.Engine, model_id: str, reason: str = "manual",
                     onnx: bool = True) -> registry.PromotionDecision:
    """Make `model_id` champion of its dataset, whatever its accuracy (the gates are for automatic ones)."""
    registry.ensure_baseline(engine)
    _prepare_champion(engine, model_id, onnx)
    return registry.set_champion(engine, model_id, reason)


def auto_promote(engine: sa.Engine, model_id: str, margin: float = registry.DEFAULT_MARGIN,
                 onnx: bool = True, config: gates.GateConfig = gates.DEFAULT) -> registry.PromotionDecision:
    """Make `model_id` champion only if it passes every gate (tasks/registry/gates.py); a refusal is
    recorded in model_events with its reason."""
    registry.ensure_baseline(engine)
    model = registry.get(engine, model_id)
    if model is None:
        raise registry.RegistryError(f"model {model_id} is not registered (see `hashtagger models list`)")
    metadata = _metadata(model)
    refusal = gates.smoke_reason(metadata) or gates.serving_tta_reason(metadata)
    with engine.connect() as connection:
        # a preview, without the lock
        likely = registry.decide_promotion(connection, model_id, margin, config).promoted
    if likely and refusal is None:
        _prepare_champion(engine, model_id, onnx)
    return registry.set_champion_if_gates_pass(engine, model_id, margin, refusal, config)


def rollback(engine: sa.Engine, dataset: str, onnx: bool = True) -> registry.PromotionDecision:
    """Bring back the champion the current one replaced (at the end of the history: the bundled model)."""
    registry.ensure_baseline(engine)
    target = registry.rollback_target(engine, dataset)
    if target is not None:
        _prepare_champion(engine, target, onnx)
    return registry.restore_previous_champion(engine, dataset)
