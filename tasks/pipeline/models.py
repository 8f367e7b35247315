"""The model registry: register, list, promote (by hand or through the gates), roll back, export,
and the champion a tagging run serves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.pipeline.common import plain_engine, results_engine

if TYPE_CHECKING:
    from tasks.evaluate.result import EvaluationResult
    from tasks.registry.reads import ChampionRecord, ModelRecord

log = logging.getLogger(__name__)


def register_model(model, db_url: str | None = None, artifact_uri: str | None = None, engine=None) -> ModelRecord:
    """Record a saved model as a candidate (a second call refreshes its metrics); its ModelRecord.

    The one path into the registry: `hashtagger train`, `models register`, `evaluate` (the DAG's evaluate
    task) and the benchmarks all come here. `model`: its folder, or its ModelMetadata (or that as a dict);
    `artifact_uri`: where it is kept when not its folder (an s3:// model trained on another host);
    `engine`: an engine already open on the results database (else `db_url`'s, migrated).
    """
    from tasks.registry import artifact, registry

    metadata = artifact.read(model) if isinstance(model, (str, Path)) else model
    return registry.register(engine or results_engine(db_url), metadata, artifact_uri)


def register_saved_model(metadata, db_url: str | None = None) -> bool:
    """`register_model` after a training run: a database that cannot take it is logged, never fatal (the
    saved model stays, and `hashtagger models register PATH` records it later); whether it was recorded."""
    from tasks.registry import artifact

    if isinstance(metadata, dict):
        metadata = artifact.ModelMetadata.from_dict(metadata)
    try:
        register_model(metadata, db_url)
    except Exception as error:  # noqa: BLE001  the model is saved; only its registry row is missing
        log.error("model %s saved but not registered (%s): run `hashtagger models register %s`",
                  metadata.model_id, error, metadata.path)
        return False
    return True


def list_models(dataset: str | None = None, status: str | None = None,
                db_url: str | None = None) -> list[ModelRecord]:
    """Registered models, newest first."""
    from tasks.registry import registry

    return registry.list_models(results_engine(db_url), dataset, status)


def champions_history(db_url: str | None = None) -> list[ChampionRecord]:
    """Each dataset's champion with `since` (when crowned), `replaced` and `reason`."""
    from tasks.registry import registry

    return registry.champions_history(results_engine(db_url))


def model_history(model_id: str, db_url: str | None = None) -> dict:
    """One model's record (ModelRecord), evaluations (oldest first) and events (newest first); RegistryError if
    unknown."""
    from tasks.registry import registry

    engine = results_engine(db_url)
    model = registry.get(engine, model_id)
    if model is None:
        raise registry.RegistryError(f"model {model_id} is not registered")
    return {"model": model, "evaluations": registry.evaluations(engine, model_id),
            "events": registry.events(engine, model_id=model_id)}


def promote_model(model_id: str, reason: str = "manual promotion", onnx: bool = True, db_url: str | None = None):
    """Make a model its dataset's champion whatever its accuracy (exported to ONNX first); the
    PromotionDecision."""
    from tasks.registry import promote

    return promote.promote_manually(results_engine(db_url), model_id, reason, onnx=onnx)


def auto_promote_model(model_id: str, margin: float | None = None, onnx: bool = True, db_url: str | None = None):
    """Make a model champion only if it beats the champion's test top-1 on the same dataset version by
    `margin` (a fraction; None: the registry's default); the PromotionDecision."""
    from tasks.registry import promote, registry

    return promote.auto_promote(results_engine(db_url), model_id,
                                registry.DEFAULT_MARGIN if margin is None else margin, onnx=onnx)


def rollback_champion(dataset: str, onnx: bool = True, db_url: str | None = None):
    """Bring back the champion the current one replaced; the PromotionDecision."""
    from tasks.registry import promote

    return promote.rollback(results_engine(db_url), dataset, onnx=onnx)


def promote_best(candidates: list[EvaluationResult], dataset: str, db_url: str | None = None) -> dict:
    """Offer the `dataset` models among `candidates` (evaluations naming their model) for promotion, best
    test top-1 first.

    Each goes through `auto_promote_model`: one champion per dataset, even under concurrent promotions.
    Returns the best model's id, the one promoted (or None), the champion after, and every decision.
    """
    candidates = sorted((candidate for candidate in candidates if candidate.registered_dataset == dataset),
                        key=lambda candidate: (-candidate.test_top1, candidate.model_id))
    if not candidates:
        raise ValueError(f"no trained {dataset} model to promote")
    decisions = [auto_promote_model(candidate.model_id, db_url=db_url) for candidate in candidates]
    for decision in decisions:
        # the promote task's log: why each model was (not) promoted, as model_events records it
        log.info("%s %s: %s", decision.model_id, "PROMOTED" if decision.promoted else "REFUSED", decision.reason)
    from tasks.registry import registry

    champion = registry.champion(results_engine(db_url), dataset)
    return {"dataset": dataset, "best": candidates[0].model_id,
            "promoted": next((decision.model_id for decision in decisions if decision.promoted), None),
            "champion": champion and {"model_id": champion.model_id, "path": champion.artifact_uri,
                                      "test_top1": champion.test_top1},
            "decisions": [{"model_id": decision.model_id, "promoted": decision.promoted, "reason": decision.reason}
                          for decision in decisions]}


def export_model(path: str, overwrite: bool = False) -> Path:
    """Write model.onnx beside model.keras (for the lean serving path); its path."""
    from tasks.registry import export

    return export.export_onnx(path, overwrite=overwrite)


def tta_model(source: str, destination: str | None = None, mode: str = "flip") -> dict:
    """Save `source`'s model with `mode` test-time augmentation inside as a new artifact at `destination`
    (default: $HASHTAGGER_HOME/models/<id>-<mode>), not yet evaluated or registered (tasks/registry/tta.py);
    its metadata.json dict. ArtifactError when `source` is no artifact or already serves TTA."""
    from tasks.registry import tta

    return tta.with_tta(source, destination, mode).as_dict()


def champion_path(dataset: str = "cifar10", db_url: str | None = None) -> str:
    """The reference of the model tagging serves: the registry's champion of `dataset` (its artifact_uri:
    bundled:, home:, s3:// or a path, resolved by each worker with tasks.registry.artifact_store.resolve), else
    the bundled model, `bundled:<dataset>`.

    The one champion lookup; it only reads (a database never migrated has no champion: the bundled model).
    ModelNotFound when the install lacks the bundled model it would fall back to.
    """
    import sqlalchemy as sa

    from tasks.registry import registry
    from tasks.tag import predictor

    engine = plain_engine(db_url)
    try:
        champion = registry.champion(engine, dataset) if sa.inspect(engine).has_table("models") else None
    except sa.exc.OperationalError as error:
        from tasks.store import db

        from tasks import errors

        reason = errors.first_line(getattr(error, "orig", None) or error)
        raise db.DatabaseUnavailable(f"cannot read the champion from {engine.url.render_as_string()}: "
                                     f"{reason}; {errors.DB_URL_HINT}") from None
    if champion:
        return champion.artifact_uri
    predictor.bundled_model(dataset)  # ModelNotFound early when the install lacks it
    return f"bundled:{dataset}"
