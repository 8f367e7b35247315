"""What every use case shares: the datasets with a bundled model, the run errors the front ends catch,
the settings and S3 settings they pass down, and the results database (engine, migration, baseline).
"""

from __future__ import annotations

import dataclasses
import logging

from tasks.config import BUNDLED_DATASETS, S3Settings, Settings  # noqa: F401  S3Settings: the front ends' type

log = logging.getLogger(__name__)


DATASETS = BUNDLED_DATASETS  # the datasets with a bundled model, for the front ends (tasks/config.py)


class RunActive(RuntimeError):
    """Another live run is tagging the same source (and shard): this one would only repeat its work."""


class RunFailed(RuntimeError):
    """A tagging run stopped early (source gone, database down); `summary` is what it wrote, all complete."""

    def __init__(self, message: str, summary):
        super().__init__(message)
        self.summary = summary  # tasks.tag.tag.RunSummary


def database_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the results database is not ready (not migrated, not answering)."""
    from tasks.store import db

    return db.MigrationError, db.DatabaseUnavailable


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input or an unready environment: show the message, no traceback
    (the one registry, tasks.errors.USER_FACING)."""
    from tasks import errors

    return errors.user_facing_classes()


def settings(db_url: str | None = None) -> Settings:
    """Settings from the environment (HASHTAGGER_HOME), with the results database given by the caller."""
    return dataclasses.replace(Settings.from_env(), db_url=db_url) if db_url else Settings.from_env()


def results_engine(db_url: str | None = None):
    """The results database, its schema checked: SchemaNotReady ("run `hashtagger db migrate`") when it
    is missing or behind, DatabaseUnavailable when the database does not answer. The embedded default
    SQLite is migrated on first use instead."""
    from tasks.store import db

    return db.require_schema(db.engine(settings(db_url).database_url))


def plain_engine(db_url: str | None):
    """The results database as it is: for reads that work on an unmigrated database too."""
    from tasks.store import db

    return db.engine(settings(db_url).database_url)


def migrate_database(db_url: str | None = None) -> tuple[str, list[str], list[str]]:
    """Apply new migrations and record the bundled models as the baseline champions; returns (database,
    migration names applied now, model ids crowned now)."""
    from tasks.store import db

    engine = db.engine(settings(db_url).database_url)
    applied = db.migrate(engine)
    crowned = ensure_baseline(engine)
    return engine.url.render_as_string(hide_password=True), applied, crowned


def ensure_baseline(engine, dataset: str | None = None) -> list[str]:
    """Record the bundled model of `dataset` (None: of every dataset that has one) as the database's
    baseline champion where it has none (tasks.registry.registry.ensure_baseline); returns the model ids
    crowned now, [] when there was nothing to do.

    A write path (db migrate, tag writes, promotion): the champion lookup never writes.
    """
    from tasks.registry import registry

    return registry.ensure_baseline(engine, DATASETS if dataset is None else (dataset,))
