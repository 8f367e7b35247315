"""The model registry's reads (sql/002_model_registry.sql): models (ModelRecord), their evaluations, the change
log and the champions (ChampionRecord). The rules that change them are tasks/registry/registry.py, which
re-exports these.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import sqlalchemy as sa

from tasks.store.registry_sql import (
    EVALUATIONS_IN_ORDER, LAST_CROWNING, LIST_EVENTS, LIST_MODELS, SELECT_CHAMPION, SELECT_MODEL)


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """A registered model: one row of `models` (sql/002_model_registry.sql)."""

    model_id: str
    architecture: str  # models/ name, e.g. airbench, vgg16
    recipe: str  # the training recipe's name
    dataset: str  # whose champion it may become (a reviewed dataset's model: its base dataset)
    dataset_version: str  # the version it was trained and first evaluated on
    test_top1: float  # fraction in [0, 1] on that version's test split, without TTA (as served)
    metrics: str  # JSON of that evaluation (tasks/evaluate/result.py EvaluationResult.as_dict)
    artifact_uri: str  # its artifact folder's portable reference (tasks/registry/artifact_store.py)
    created_at: dt.datetime | str  # when it was trained (SQLite gives the stored text)
    status: str  # candidate | champion | retired

    @classmethod
    def of(cls, row) -> "ModelRecord | None":
        """The record of a `models` row (None stays None)."""
        return None if row is None else cls(**{field.name: row._mapping[field.name] for field in FIELDS})

    def as_dict(self) -> dict:
        """Its fields as a dict (`hashtagger models list --json`; created_at may be a datetime: dump with str)."""
        return dataclasses.asdict(self)


FIELDS = dataclasses.fields(ModelRecord)


@dataclasses.dataclass(frozen=True)
class ChampionRecord:
    """A dataset's champion, with when it was crowned, why, and the model it replaced (None: none before)."""

    model: ModelRecord
    since: dt.datetime | str | None
    replaced: str | None
    reason: str | None


def get(engine: sa.Engine, model_id: str) -> ModelRecord | None:
    """The registered model `model_id`, or None."""
    with engine.connect() as connection:
        return ModelRecord.of(connection.execute(SELECT_MODEL, {"model_id": model_id}).first())


def list_models(engine: sa.Engine, dataset: str | None = None, status: str | None = None) -> list[ModelRecord]:
    """Registered models, newest first, optionally of one dataset and status."""
    with engine.connect() as connection:
        return [ModelRecord.of(row) for row in connection.execute(LIST_MODELS, {"dataset": dataset, "status": status})]


def events(engine: sa.Engine, dataset: str | None = None, model_id: str | None = None,
           limit: int = 50) -> list[dict]:
    """The change log, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(LIST_EVENTS, {"dataset": dataset, "model_id": model_id, "limit": limit})
        return [{**row_dict(row), "detail": json.loads(row.detail)} for row in rows]


def evaluations(engine: sa.Engine, model_id: str) -> list[dict]:
    """A model's test accuracies, one per dataset version, oldest first."""
    with engine.connect() as connection:
        return [row_dict(row) for row in connection.execute(EVALUATIONS_IN_ORDER, {"model_id": model_id})]


def champion(engine: sa.Engine, dataset: str) -> ModelRecord | None:
    """The champion of `dataset`, or None; tasks.pipeline.champion_path is the lookup tagging uses."""
    with engine.connect() as connection:
        return ModelRecord.of(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())


def champions_history(engine: sa.Engine) -> list[ChampionRecord]:
    """Each dataset's champion with when it was crowned, why, and the model it replaced; by dataset."""
    champions = []
    for model in list_models(engine, status="champion"):
        with engine.connect() as connection:
            crowning = connection.execute(LAST_CROWNING, {"model_id": model.model_id}).first()
        detail = json.loads(crowning.detail) if crowning else {}
        champions.append(ChampionRecord(model, crowning.at if crowning else None, detail.get("replaced"),
                                        detail.get("reason")))
    return sorted(champions, key=lambda champion: champion.model.dataset)


def row_dict(row) -> dict | None:
    """A result row as a dict (None stays None)."""
    return dict(row._mapping) if row is not None else None
