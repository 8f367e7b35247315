"""Reviewing tags: the web app people answer cards in (tasks/review/), over the results database."""

from __future__ import annotations

from tasks.pipeline.common import settings
from tasks.review.config import RetrainTrigger  # noqa: F401  the reviewed_dataset DAG's defaults (stdlib only)


def reviewed_slice_summary(figures: dict) -> str:
    """One line on an evaluation's reviewed slice (metrics["reviewed_slice"]): top-1 with its interval,
    abstention, counts (tasks/evaluate/reviewed.py)."""
    from tasks.evaluate import reviewed

    return reviewed.summary(figures)


def review_app(reviewer: str, host: str = "127.0.0.1", port: int = 8765, db_url: str | None = None):
    """(the ASGI app, its ReviewConfig) for `hashtagger review`, over the results database (`db_url`
    None: the environment's); the schema must be current (SchemaNotReady otherwise). ValueError for a
    bad setting; ModuleNotFoundError without the `review` extra (FastAPI, Jinja2)."""
    from tasks.review import app
    from tasks.review.config import ReviewConfig
    from tasks.store import db

    config = ReviewConfig(reviewer=reviewer, host=host, port=port, db_url=db_url)
    engine = db.require_schema(db.engine(settings(db_url).database_url))
    return app.create_app(config, engine), config
