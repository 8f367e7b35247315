"""Fixtures of the tag stage's tests: the tiny colour models (a champion and the next one) and a migrated
results database."""

from __future__ import annotations

import pytest

from fixtures import tiny_model
from tasks.store import db
from tasks.tag import predictor


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two versions of the tiny colour model, as a first champion and the next one."""
    root = tmp_path_factory.mktemp("models")
    return [predictor.load(tiny_model.build(root / version, f"tiny-cifar10-{version}")) for version in ("v1", "v2")]


@pytest.fixture
def model(tiny_models):
    return tiny_models[0]


@pytest.fixture
def engine(db_url):
    return db.ensure_schema(db.engine(db_url))
