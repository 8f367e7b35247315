"""Migrations: applied in order, recorded, idempotent, on PostgreSQL and SQLite."""

from __future__ import annotations

import subprocess

import sqlalchemy as sa

from tasks.store import db


def test_migrate_twice_applies_once(db_url):
    engine = db.engine(db_url)
    first = db.migrate(engine)
    assert first == [name for name, _ in db.migration_files()]
    assert first[0] == "001_results"
    assert db.migrate(engine) == []
    with engine.connect() as connection:
        recorded = connection.execute(sa.text("SELECT version FROM schema_migrations ORDER BY version")).scalars()
        assert list(recorded) == first
    inspector = sa.inspect(engine)
    assert {"image_tags", "failed_images"} <= set(inspector.get_view_names())
    columns = {column["name"] for column in inspector.get_columns("image_tags")}
    assert {"image_uri", "label", "confidence", "hashtag", "hashtag_rank", "hashtag_source",
            "model_version", "run_id", "tagged_at"} <= columns
    failed_columns = {column["name"] for column in inspector.get_columns("failed_images")}
    assert {"image_uri", "reason", "run_id", "failed_at"} <= failed_columns


def test_statement_splitting_keeps_views_whole():
    script = "-- a comment\nCREATE TABLE a (x INTEGER);\nCREATE VIEW v AS\nSELECT x\nFROM a;\n"
    assert db.statements(script) == ["CREATE TABLE a (x INTEGER)", "CREATE VIEW v AS\nSELECT x\nFROM a"]


def test_cli_migrate_reports_then_is_up_to_date(bin_dir, pg_url, tmp_path):
    env = {"HASHTAGGER_DB_URL": pg_url, "HASHTAGGER_HOME": str(tmp_path), "PATH": str(bin_dir)}
    first = subprocess.run([bin_dir / "hashtagger", "db", "migrate"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "applied 001_results" in first.stdout
    second = subprocess.run([bin_dir / "hashtagger", "db", "migrate"], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout


def test_default_database_is_sqlite_under_home(tmp_path, monkeypatch):
    from tasks.config import Settings

    settings = Settings.from_env({"HASHTAGGER_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'hashtagger.db'}"
    assert Settings.from_env({"HASHTAGGER_DB_URL": "postgresql://x/y"}).database_url == "postgresql://x/y"


def test_bundled_model_is_recorded_as_the_baseline_champion_on_first_use_by_a_write(db_url):
    from tasks.tag import predictor
    from tasks.registry import registry

    engine = db.ensure_schema(db.engine(db_url))
    assert predictor.default_model_path(engine, "cifar10", record_bundled=False) == "bundled:cifar10"
    assert registry.list_models(engine, "cifar10") == []  # a read records nothing
    reference = predictor.default_model_path(engine, "cifar10")
    assert reference == "bundled:cifar10"
    models = registry.list_models(engine, "cifar10")
    assert [model["status"] for model in models] == ["champion"]
    assert models[0]["artifact_uri"] == reference
    predictor.default_model_path(engine, "cifar10")  # a second use records nothing more
    assert len(registry.list_models(engine, "cifar10")) == 1
