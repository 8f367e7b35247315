"""The model registry (sql/002_model_registry.sql): which models exist, which one serves, and why.

Every trained model is a `candidate`; one model per dataset is the `champion` that tagging serves;
a champion that is replaced becomes `retired`. Every change is appended to `model_events`.

Changes of champion run in one transaction that first takes a per-dataset lock (PostgreSQL: an
advisory transaction lock; SQLite: the write lock that BEGIN IMMEDIATE takes), so concurrent
promotions are serialised and each decides against the champion the previous one left. The unique
partial index `models_one_champion` backs this up in the database itself.

Every database knows the bundled model of each dataset (models/bundled/<dataset>) as its first
champion, the baseline a challenger must beat: `ensure_baseline` records it, called by `db migrate`
and by the write paths (tagging, promotion), never by a read.

Database access only: the gates that read an artifact and the ONNX export are the promote stage's job
(tasks/registry/promote.py, tasks/registry/gates.py). The statements live in tasks/store/registry_sql.py;
this module holds the rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
import zlib

import sqlalchemy as sa

from tasks.config import BUNDLED_DATASETS
from tasks.evaluate.result import EvaluationResult
from tasks.registry import artifact
from tasks.registry import artifact_store
from tasks.registry import gates
# the registry's reads, part of its interface (callers use registry.champion, registry.get, ...)
from tasks.registry.reads import (  # noqa: F401
    ChampionRecord, ModelRecord, champion, champions_history, evaluations, events, get, list_models)
from tasks.store import db
from tasks.store.registry_sql import (
    EVALUATION_METRICS, INSERT_EVENT, INSERT_MODEL, LAST_CROWNING, LAST_EVENT, PROMOTION_LOCK, SELECT_BASELINE,
    SELECT_CHAMPION, SELECT_EVALUATIONS, SELECT_MODEL, SET_STATUS, UPDATE_MODEL, UPSERT_EVALUATION)

DEFAULT_MARGIN = gates.DEFAULT.margin  # 0.2 points of test top-1: the challenger's gain must reach this
PG_PROMOTION_LOCK = 7_431_002  # advisory lock namespace; the second key is a hash of the dataset name
STATUSES = ("candidate", "champion", "retired")


class RegistryError(LookupError):
    """The model or the champion asked for is not in the registry, or a registration would change what a
    champion serves; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class PromotionDecision:
    """What a change of champion decided (auto-promotion's verdict for a challenger, with the figures it
    compared; or a manual promotion or rollback). Not tasks/tag/decide.py's Decision, a label for an image."""

    model_id: str
    dataset: str
    promoted: bool
    reason: str
    previous_champion: str | None = None
    compared_on: str | None = None  # the dataset version both test accuracies come from
    challenger_top1: float | None = None
    champion_top1: float | None = None
    margin: float = DEFAULT_MARGIN

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- writes

def register(engine: sa.Engine, metadata: artifact.ModelMetadata | dict,
             artifact_uri: str | None = None) -> ModelRecord:
    """Record a saved model (its artifact metadata) as a candidate; a second call refreshes its metrics and
    logs what changed ('updated'). Returns its ModelRecord.

    The artifact is recorded by a portable reference (tasks/registry/artifact_store.py): `artifact_uri` when
    given, else its folder `metadata.path`, uploaded first when HASHTAGGER_ARTIFACTS is set. ValueError for
    metadata that is not a trained, evaluated model (test_top1 outside [0, 1], created_at without its zone);
    RegistryError when a second call would change a champion's artifact.
    """
    if isinstance(metadata, dict):
        metadata = artifact.ModelMetadata.from_dict(metadata)
    metrics = metadata.metrics or {}
    if not metadata.architecture or not metadata.dataset:
        raise ValueError(f"{metadata.model_id}: metadata names no architecture or dataset; not a trained model")
    if "test_top1" not in metrics:
        raise ValueError(f"{metadata.model_id}: metadata has no test_top1; evaluate the model first")
    created_at = artifact.registrable(metadata.model_id, metrics["test_top1"], metadata.created_at)
    row = {
        "model_id": metadata.model_id, "architecture": metadata.architecture, "recipe": metadata.recipe_name,
        "dataset": metadata.dataset, "dataset_version": metadata.dataset_version,
        "test_top1": float(metrics["test_top1"]), "metrics": _json(metrics),
        "artifact_uri": (artifact_uri or metadata.extra.get("artifact_uri")
                         or artifact_store.publish(metadata.path, metadata.model_id)),
        "created_at": created_at or db.utcnow(),
    }
    with engine.begin() as connection:
        inserted = connection.execute(INSERT_MODEL, row).first() is not None
        if inserted:
            _log(connection, row["model_id"], row["dataset"], "registered",
                 {"test_top1": row["test_top1"], "dataset_version": row["dataset_version"],
                  "artifact_uri": row["artifact_uri"]})
        else:
            _update(connection, row)
        _record_evaluation(connection, row["model_id"], metadata.dataset_version, metrics)
    return get(engine, row["model_id"])


def _update(connection, row: dict) -> None:
    """A second registration of a model id refreshes its metrics and artifact; a change is logged ('updated',
    old and new), and a champion's artifact is not replaced: tagging would serve other files under its id
    (a fresh user repointed the bundled champion to a folder holding only metadata.json)."""
    known = ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": row["model_id"]}).first())
    moved = known.artifact_uri != row["artifact_uri"]
    if moved and known.status == "champion" and row["artifact_uri"] != artifact_store.BUNDLED + known.dataset:
        raise RegistryError(f"{known.model_id} is the champion of {known.dataset}, served from "
                            f"{known.artifact_uri}: registering {row['artifact_uri']} under its id would change "
                            "what tagging serves; give that model its own model_id")
    connection.execute(UPDATE_MODEL, row)
    if moved or known.test_top1 != row["test_top1"]:
        _log(connection, known.model_id, known.dataset, "updated",
             {"artifact_uri": [known.artifact_uri, row["artifact_uri"]],
              "test_top1": [known.test_top1, row["test_top1"]]})


def record_evaluation(engine: sa.Engine, model_id: str, result: EvaluationResult) -> None:
    """Store a model's evaluation on the dataset version it names (upsert); the column `metrics` holds
    its JSON (`result.as_dict()`)."""
    with engine.begin() as connection:
        if connection.execute(SELECT_MODEL, {"model_id": model_id}).first() is None:
            raise RegistryError(f"model {model_id} is not registered: `hashtagger models register PATH`")
        _record_evaluation(connection, model_id, result.dataset_version, result.as_dict())


def set_champion(engine: sa.Engine, model_id: str, reason: str = "manual") -> PromotionDecision:
    """Make `model_id` its dataset's champion whatever its accuracy (the previous one is retired)."""
    dataset = _model(engine, model_id).dataset
    with _locked(engine, dataset) as connection:
        model = ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": model_id}).first())
        champion = ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())
        if champion and champion.model_id == model_id:
            return PromotionDecision(model_id, dataset, False, "already the champion", model_id)
        previous = champion.model_id if champion else None
        _crown(connection, model, champion, "promoted", {"reason": reason}, previous)
    return PromotionDecision(model_id, dataset, True, reason, previous)


def set_champion_if_gates_pass(engine: sa.Engine, model_id: str, margin: float = DEFAULT_MARGIN,
                               refusal: str | None = None,
                               config: gates.GateConfig = gates.DEFAULT) -> PromotionDecision:
    """Make `model_id` champion only if it clears the floor and beats the champion's test top-1 on the
    same dataset version by `margin` (or there is no champion yet); `refusal`, when given, is a gate
    the caller found closed (a smoke run). A rejection is logged once with its reason."""
    dataset = _model(engine, model_id).dataset
    with _locked(engine, dataset) as connection:
        decision = decide_promotion(connection, model_id, margin, config)
        if refusal and decision.previous_champion != model_id:
            # the other gates' outcomes stay in the reason: whether it would have beaten the champion
            decision = dataclasses.replace(decision, promoted=False, reason=f"{refusal}; {decision.reason}")
        if decision.promoted:
            model = ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": model_id}).first())
            champion = ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())
            _crown(connection, model, champion, "promoted", {"reason": decision.reason, **_figures(decision)},
                   champion.model_id if champion else None)
        elif decision.previous_champion != model_id:
            detail = {"reason": decision.reason, **_figures(decision)}
            last = connection.execute(LAST_EVENT, {"model_id": model_id}).first()
            if last is None or (last.event, last.detail) != ("rejected", _json(detail)):
                _log(connection, model_id, dataset, "rejected", detail)
    return decision


def restore_previous_champion(engine: sa.Engine, dataset: str) -> PromotionDecision:
    """Retire the champion and bring back the one it replaced."""
    with _locked(engine, dataset) as connection:
        champion = ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())
        if champion is None:
            raise RegistryError(f"no champion for {dataset}: nothing to roll back")
        previous_id = _rollback_to(connection, champion)
        if previous_id is None:
            raise RegistryError(f"{champion.model_id} was the first champion of {dataset}: "
                                f"nothing to roll back to")
        previous = ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": previous_id}).first())
        # the restored model remembers its own predecessor, so rolling back again walks further back
        _crown(connection, previous, champion, "restored",
               {"reason": f"rollback of {champion.model_id}"},
               previous_champion=_previous_champion(connection, previous_id))
        _log(connection, champion.model_id, dataset, "rolled_back", {"restored": previous_id})
    return PromotionDecision(previous_id, dataset, True, f"rolled back {champion.model_id}",
                             champion.model_id)


def ensure_baseline(engine: sa.Engine, datasets: tuple[str, ...] = BUNDLED_DATASETS) -> list[str]:
    """Record each dataset's bundled model (as `bundled:<dataset>`) and make it champion where there is
    none; a champion that is an older bundled model gives way to the current one. Returns the model ids
    crowned now. Cheap when there is nothing to do: two reads per dataset, no lock."""
    crowned = []
    for dataset in datasets:
        folder = artifact_store.BUNDLED_DIR / dataset
        if not (folder / "metadata.json").exists():
            continue
        metadata = {**json.loads((folder / "metadata.json").read_text()), "path": str(folder),
                    "artifact_uri": artifact_store.BUNDLED + dataset}
        known = get(engine, metadata["model_id"])
        if known is None or known.artifact_uri != metadata["artifact_uri"]:
            # a candidate at least, so that a rollback can reach it; a row from before references
            # (an absolute path into some install) gets its portable reference
            register(engine, metadata)
        current = champion(engine, dataset)
        if current is not None and not _stale_bundled(current, metadata["model_id"]):
            continue
        with _locked(engine, dataset) as connection:
            current = ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())
            if current is not None and not _stale_bundled(current, metadata["model_id"]):
                continue  # another process crowned one meanwhile
            reason = "baseline: the bundled model" if current is None else "the bundled model was updated"
            model = ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": metadata["model_id"]}).first())
            _crown(connection, model, current, "promoted", {"reason": reason},
                   current.model_id if current else None)
            crowned.append(metadata["model_id"])
    return crowned


def _stale_bundled(row: ModelRecord, bundled_id: str) -> bool:
    return row.artifact_uri == artifact_store.BUNDLED + row.dataset and row.model_id != bundled_id


def rollback_target(engine: sa.Engine, dataset: str) -> str | None:
    """The model a rollback would bring back (None: no champion, or nothing before it)."""
    with engine.connect() as connection:
        current = ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())
        return _rollback_to(connection, current) if current else None


def _rollback_to(connection, champion: ModelRecord) -> str | None:
    """The champion `champion` replaced; at the start of the history, the bundled model."""
    previous = _previous_champion(connection, champion.model_id)
    if previous is not None:
        return previous
    bundled = {"dataset": champion.dataset, "uri": artifact_store.BUNDLED + champion.dataset}
    baseline = ModelRecord.of(connection.execute(SELECT_BASELINE, bundled).first())
    return baseline.model_id if baseline and baseline.model_id != champion.model_id else None


def decide_promotion(connection, model_id: str, margin: float = DEFAULT_MARGIN,
                     config: gates.GateConfig = gates.DEFAULT) -> PromotionDecision:
    """Auto-promotion's verdict for `model_id` against the current champion; changes nothing. Every gate
    is evaluated (a floor that fails does not hide how the model compares with the champion): a refusal's
    reason gives each gate's outcome, and the figures are there whichever gate said no."""
    model = ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": model_id}).first())
    if model is None:
        raise RegistryError(f"model {model_id} is not registered")
    dataset = model.dataset
    current = ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())
    if current is not None and current.model_id == model_id:
        return PromotionDecision(model_id, dataset, False, "already the champion", model_id, margin=margin)
    comparison = _compare(connection, model, current, margin)
    too_low = gates.floor_reason(dataset, float(model.test_top1), config)
    worse_on_reviews = None if current is None else gates.reviewed_slice_reason(
        _evaluation_metrics(connection, model_id), _evaluation_metrics(connection, current.model_id),
        comparison.compared_on, config)
    refusals = [reason for reason in (too_low, worse_on_reviews) if reason]
    if not refusals:
        return comparison
    return dataclasses.replace(comparison, promoted=False, reason="; ".join(refusals + [comparison.reason]))


def _compare(connection, model: ModelRecord, current: ModelRecord | None, margin: float) -> PromotionDecision:
    """The champion gate alone: does `model` beat `current` by `margin` on a dataset version both were
    tested on (or is there no champion yet)."""
    model_id, dataset = model.model_id, model.dataset
    if current is None:
        return PromotionDecision(model_id, dataset, True, f"first champion of {dataset}",
                                 challenger_top1=model.test_top1, compared_on=model.dataset_version, margin=margin)
    ours = _evaluations(connection, model_id)
    theirs = _evaluations(connection, current.model_id)
    common = [version for version in ours if version in theirs]  # ours is newest first
    if not common:
        return PromotionDecision(
            model_id, dataset, False,
            f"champion {current.model_id} has no test accuracy on dataset version {model.dataset_version}: "
            f"run `hashtagger evaluate {artifact_store.local_path(current.artifact_uri)} "
            f"--dataset-version {model.dataset_version}`",
            current.model_id, challenger_top1=model.test_top1, margin=margin)
    version = model.dataset_version if model.dataset_version in common else common[0]
    gain = ours[version] - theirs[version]
    figures = dict(previous_champion=current.model_id, compared_on=version, challenger_top1=ours[version],
                   champion_top1=theirs[version], margin=margin)
    # accuracies are counts over the same test images: a tolerance for float rounding, no more
    beats = gain >= margin - 1e-9
    verdict = (f"test top-1 {ours[version]:.2%} against the champion's {theirs[version]:.2%} on version "
               f"{version}: {gain * 100:+.2f} points, margin {margin * 100:.2f}"
               + ("" if beats else " (does not beat the champion)"))
    return PromotionDecision(model_id, dataset, beats, verdict, **figures)


# ---------------------------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def _locked(engine: sa.Engine, dataset: str):
    """A transaction holding the dataset's promotion lock until it commits or rolls back."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            key = zlib.crc32(dataset.encode()) - (1 << 31)  # into int4's range
            connection.execute(PROMOTION_LOCK, {"namespace": PG_PROMOTION_LOCK, "key": key})
        # SQLite: db.engine's transactions begin IMMEDIATE, which already holds the one write lock
        yield connection


def _crown(connection, model: ModelRecord, champion: ModelRecord | None, event: str, detail: dict,
           previous_champion: str | None) -> None:
    """Retire `champion` (if any) and make `model` champion, logging both; retire first, for the index.

    `previous_champion` is what a later rollback brings back: the replaced champion after a promotion,
    the restored model's own predecessor after a rollback.
    """
    replaced = champion.model_id if champion else None
    if champion:
        connection.execute(SET_STATUS, {"status": "retired", "model_id": replaced})
        _log(connection, replaced, champion.dataset, "retired", {"replaced_by": model.model_id})
    connection.execute(SET_STATUS, {"status": "champion", "model_id": model.model_id})
    _log(connection, model.model_id, model.dataset, event,
         {**detail, "previous_champion": previous_champion, "replaced": replaced})


def _previous_champion(connection, model_id: str) -> str | None:
    row = connection.execute(LAST_CROWNING, {"model_id": model_id}).first()
    return json.loads(row.detail).get("previous_champion") if row else None


def _evaluations(connection, model_id: str) -> dict[str, float]:
    """{dataset_version: test top-1}, newest evaluation first."""
    return {row.dataset_version: float(row.test_top1)
            for row in connection.execute(SELECT_EVALUATIONS, {"model_id": model_id})}


def _evaluation_metrics(connection, model_id: str) -> dict[str, EvaluationResult]:
    """{dataset_version: the evaluation}, newest evaluation first."""
    rows = connection.execute(EVALUATION_METRICS, {"model_id": model_id})
    return {row.dataset_version: EvaluationResult.from_dict({"dataset_version": row.dataset_version,
                                                             "test_top1": float(row.test_top1),
                                                             **json.loads(row.metrics or "{}")})
            for row in rows}


def _record_evaluation(connection, model_id: str, dataset_version: str, metrics: dict) -> None:
    connection.execute(UPSERT_EVALUATION, {
        "model_id": model_id, "dataset_version": dataset_version, "test_top1": float(metrics["test_top1"]),
        "metrics": _json(metrics), "evaluated_at": db.utcnow()})


def _log(connection, model_id: str, dataset: str, event: str, detail: dict) -> None:
    connection.execute(INSERT_EVENT, {"event_id": str(uuid.uuid4()), "model_id": model_id, "dataset": dataset,
                                      "event": event, "detail": _json(detail), "at": db.utcnow()})


def _figures(decision: PromotionDecision) -> dict:
    return {"compared_on": decision.compared_on, "challenger_top1": decision.challenger_top1,
            "champion_top1": decision.champion_top1, "margin": decision.margin}


def _model(engine: sa.Engine, model_id: str) -> ModelRecord:
    model = get(engine, model_id)
    if model is None:
        raise RegistryError(f"model {model_id} is not registered (see `hashtagger models list`)")
    return model


def _json(value) -> str:
    """Strict, stable JSON (NaN -> null), so equal contents give equal text."""
    def clean(item):
        if isinstance(item, dict):
            return {key: clean(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(inner) for inner in item]
        if isinstance(item, float) and item != item:
            return None
        return item
    return json.dumps(clean(value), sort_keys=True)
