"""The model registry's reads (sql/002_model_registry.sql): models, their evaluations, the change log and the
champions, as plain rows. The rules that change them are tasks/registry/registry.py, which re-exports these.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from tasks.store.registry_sql import EVALUATIONS_IN_ORDER, LAST_CROWNING, LIST_EVENTS, LIST_MODELS, SELECT_CHAMPION, SELECT_MODEL


def get(engine: sa.Engine, model_id: str) -> dict | None:
    with engine.connect() as connection:
        return row_dict(connection.execute(SELECT_MODEL, {"model_id": model_id}).first())


def list_models(engine: sa.Engine, dataset: str | None = None, status: str | None = None) -> list[dict]:
    """Registered models, newest first, optionally of one dataset and status."""
    with engine.connect() as connection:
        return [row_dict(row) for row in connection.execute(LIST_MODELS, {"dataset": dataset, "status": status})]


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


def champion(engine: sa.Engine, dataset: str) -> dict | None:
    """The champion's registry row, or None; tasks.pipeline.champion_path is the lookup tagging uses."""
    with engine.connect() as connection:
        return row_dict(connection.execute(SELECT_CHAMPION, {"dataset": dataset}).first())


def champions_history(engine: sa.Engine) -> list[dict]:
    """Each dataset's champion with when it was crowned, why, and the model it replaced."""
    rows = []
    for row in list_models(engine, status="champion"):
        with engine.connect() as connection:
            crowning = connection.execute(LAST_CROWNING, {"model_id": row["model_id"]}).first()
        detail = json.loads(crowning.detail) if crowning else {}
        rows.append({**row, "since": crowning.at if crowning else None, "replaced": detail.get("replaced"),
                     "reason": detail.get("reason")})
    return sorted(rows, key=lambda row: row["dataset"])


def row_dict(row) -> dict | None:
    """A result row as a dict (None stays None)."""
    return dict(row._mapping) if row is not None else None
