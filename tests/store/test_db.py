"""Migrations: applied in order, recorded, idempotent, on PostgreSQL and SQLite."""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy as sa

from tasks.store import db


def test_migrate_twice_applies_once(db_url):
    engine = db.engine(db_url)
    with pytest.raises(db.SchemaNotReady, match="run `hashtagger db migrate`"):
        db.require_schema(engine)  # not the embedded default: commands do not migrate it
    first = db.migrate(engine)
    assert first == [name for name, _ in db.migration_files()]
    assert db.require_schema(engine) is engine
    assert first[0] == "001_results"
    assert db.migrate(engine) == []
    with engine.connect() as connection:
        recorded = connection.execute(sa.text("SELECT version, checksum FROM schema_migrations ORDER BY version"))
        assert [tuple(row) for row in recorded] == [(name, db.checksum(text)) for name, text in db.migration_files()]
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


def test_statements_marked_for_one_dialect_run_there_only():
    script = ("CREATE TABLE a (x TEXT);\n-- only: postgresql\nCREATE VIEW v AS SELECT CAST(x AS json) AS j FROM a;\n"
              "-- only: sqlite\nCREATE VIEW v AS\nSELECT json(x) AS j FROM a;\nDROP TABLE b;\n")
    assert db.statements(script, "postgresql") == [
        "CREATE TABLE a (x TEXT)", "CREATE VIEW v AS SELECT CAST(x AS json) AS j FROM a", "DROP TABLE b"]
    assert db.statements(script, "sqlite") == [
        "CREATE TABLE a (x TEXT)", "CREATE VIEW v AS\nSELECT json(x) AS j FROM a", "DROP TABLE b"]
    assert len(db.statements(script)) == 4


def test_cli_migrate_reports_then_is_up_to_date(bin_dir, pg_url, tmp_path):
    env = {**os.environ, "HASHTAGGER_DB_URL": pg_url, "HASHTAGGER_HOME": str(tmp_path)}
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
    from tasks import pipeline
    from tasks.registry import registry

    engine = db.ensure_schema(db.engine(db_url))
    assert pipeline.champion_path("cifar10", db_url) == "bundled:cifar10"
    assert registry.list_models(engine, "cifar10") == []  # a read records nothing
    assert pipeline.ensure_baseline(engine, "cifar10") == [bundled_id("cifar10")]  # the write path
    reference = pipeline.champion_path("cifar10", db_url)
    assert reference == "bundled:cifar10"
    models = registry.list_models(engine, "cifar10")
    assert [model.status for model in models] == ["champion"]
    assert models[0].artifact_uri == reference
    assert pipeline.ensure_baseline(engine, "cifar10") == []  # a second use records nothing more
    assert len(registry.list_models(engine, "cifar10")) == 1


def bundled_id(dataset: str) -> str:
    from tasks.registry import artifact
    from tasks.tag import predictor

    return artifact.read(predictor.bundled_model(dataset)).model_id


def test_an_edited_shipped_migration_is_refused(db_url, monkeypatch):
    engine = db.engine(db_url)
    db.migrate(engine)
    shipped = db.migration_files()
    edited = [(name, text + "\n-- an edit after shipping\n" if name == "002_model_registry" else text)
              for name, text in shipped]
    monkeypatch.setattr(db, "migration_files", lambda: edited)
    with pytest.raises(db.MigrationError, match="002_model_registry.sql has changed since it was applied"):
        db.migrate(engine)
    with pytest.raises(db.MigrationError, match="never edited"):
        db.require_schema(engine)


def test_a_database_migrated_before_checksums_gets_them_from_006(db_url, monkeypatch):
    """A database at 005 (no checksum column) takes 006, and every migration then has its checksum."""
    engine = db.engine(db_url)
    shipped = db.migration_files()
    monkeypatch.setattr(db, "migration_files", lambda: [item for item in shipped if item[0] < "006"])
    db.migrate(engine)
    assert set(db.applied(engine).values()) == {None}
    monkeypatch.setattr(db, "migration_files", lambda: shipped)
    with pytest.raises(db.SchemaNotReady, match="lacks migration 006_migration_checksums"):
        db.require_schema(engine)
    # 006 and every later one (008, the champion views)
    assert db.migrate(engine) == [name for name, _ in shipped if name >= "006"]
    assert db.applied(engine) == {name: db.checksum(text) for name, text in shipped}


def test_commands_on_an_unmigrated_database_say_to_migrate_in_one_line(bin_dir, sqlite_url, tmp_path):
    env = {**os.environ, "HASHTAGGER_DB_URL": sqlite_url, "HASHTAGGER_HOME": str(tmp_path)}
    for command in (["models", "list"], ["hashtags", "block", "#spam"]):
        done = subprocess.run([bin_dir / "hashtagger", *command], env=env, capture_output=True, text=True)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert "run `hashtagger db migrate`" in done.stderr


def test_the_embedded_default_database_is_migrated_by_the_first_command(bin_dir, tmp_path):
    env = {**os.environ, "HASHTAGGER_HOME": str(tmp_path)}
    done = subprocess.run([bin_dir / "hashtagger", "models", "list"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set(db.applied(db.engine(f"sqlite:///{tmp_path / 'hashtagger.db'}"))) == {
        name for name, _ in db.migration_files()}


def test_hashtag_rows_written_before_013_survive_as_the_view(db_url, monkeypatch):
    """A database tagged under 012 (ten hashtag rows an image) keeps every hashtag when 013 folds them into
    image_results.hashtags: the view image_hashtags gives back the same rows, image_tags still joins them."""
    engine = db.engine(db_url)
    files = db.migration_files()
    before_013 = [(name, text) for name, text in files if name < "013"]
    monkeypatch.setattr(db, "migration_files", lambda: before_013)
    db.migrate(engine)
    rows = [("/p/cat.jpg", "sha256:aa", "m1", rank, f"#cat{rank}", "cat", 0.9, 1.0 / 2 ** rank, "lexicon")
            for rank in (2, 1, 3)]
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO image_results (image_uri, content_hash, model_version, label, confidence, top_labels, "
            "run_id, tagged_at) VALUES ('/p/cat.jpg', 'sha256:aa', 'm1', 'cat', 0.9, '[[\"cat\", 0.9]]', 'r1', "
            ":at), ('/p/text.jpg', 'sha256:bb', 'm1', NULL, 0.2, '[[\"ship\", 0.2]]', 'r1', :at)"),
            {"at": db.utcnow()})
        connection.execute(sa.text(
            "INSERT INTO image_hashtags (image_uri, content_hash, model_version, hashtag_rank, hashtag, label, "
            "confidence, score, hashtag_source) VALUES (:u, :h, :m, :r, :t, :l, :c, :s, :src)"),
            [dict(zip(("u", "h", "m", "r", "t", "l", "c", "s", "src"), row)) for row in rows])
    monkeypatch.setattr(db, "migration_files", lambda: files)
    assert db.migrate(engine) == [name for name, _ in files if name >= "013"]
    with engine.connect() as connection:
        unnested = connection.execute(sa.text(
            "SELECT image_uri, content_hash, model_version, hashtag_rank, hashtag, label, confidence, score, "
            "hashtag_source FROM image_hashtags ORDER BY hashtag_rank")).all()
        tags = connection.execute(sa.text("SELECT hashtag FROM image_tags ORDER BY hashtag_rank")).scalars().all()
        stored = connection.execute(sa.text(
            "SELECT image_uri, hashtags FROM image_results ORDER BY image_uri")).all()
    assert [tuple(row) for row in unnested] == sorted(rows, key=lambda row: row[3])
    assert tags == ["#cat1", "#cat2", "#cat3"]
    assert stored[1] == ("/p/text.jpg", "[]"), "an image without hashtags holds an empty array"
    assert "image_hashtags" in sa.inspect(engine).get_view_names()
