"""The model lifecycle on PostgreSQL and SQLite: the bundled baseline, the promotion gates, rollback to
the bundled model, re-tagging after a champion change with the current-champion views, portable
references that survive moving the install, ONNX required to promote, and no TensorFlow when tagging.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from fixtures import tiny_model
from tasks.cli import main as cli
from tasks.registry import artifact
from tasks.registry import promote
from tasks.registry import registry
from tasks.registry import artifact_store
from tasks.store import db

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
BUNDLED_VERSION = {"cifar10": "1f3f9a0d6a3913bc", "cifar100": "d57816b55ad9a054"}  # bundled metadata says so


@pytest.fixture
def engine(db_url):
    eng = db.ensure_schema(db.engine(db_url))
    yield eng
    eng.dispose()


@pytest.fixture
def cli_db(db_url, monkeypatch):
    """The CLI's default database is this test's: db.engine() caches one engine per argument list, so
    the engine of `db.engine()` (no URL) is dropped before and after."""
    monkeypatch.setenv("HASHTAGGER_DB_URL", db_url)
    db.engine.cache_clear()
    yield db_url
    db.engine.cache_clear()


def bundled_id(dataset: str = "cifar10") -> str:
    return json.loads((artifact_store.BUNDLED_DIR / dataset / "metadata.json").read_text())["model_id"]


def trained(folder: Path, model_id: str, top1: float, epochs: int = 10, train_limit: int | None = None,
            dataset: str = "cifar10", onnx: bool = True) -> dict:
    """A servable model (the tiny colour ONNX model) with the metadata a training run writes."""
    if onnx:
        tiny_model.build(folder, model_id)
    else:
        folder.mkdir(parents=True)
    metadata = {"model_id": model_id, "architecture": "tiny-test", "recipe": {"name": "fast", "min_epochs": 8},
                "train_config": {"epochs": epochs, "train_limit": train_limit}, "epochs_done": epochs,
                "dataset": dataset, "dataset_version": BUNDLED_VERSION[dataset],
                "class_names": tiny_model.CLASS_NAMES, "created_at": "2026-11-28T10:00:00+00:00",
                "metrics": {"test_top1": top1, "dataset_version": BUNDLED_VERSION[dataset]}}
    artifact.write_metadata(folder, metadata)
    return artifact.read_metadata(folder)


def champion_id(engine, dataset: str = "cifar10") -> str | None:
    row = registry.champion(engine, dataset)
    return row and row.model_id


def tag_samples(tmp_path, *extra: str) -> None:
    """`hashtagger tag` over a copy of samples/ (the copy keeps URIs stable across calls), into cli_db."""
    photos = tmp_path / "photos"
    if not photos.exists():
        shutil.copytree(SAMPLES, photos)
    assert cli.main(["tag", str(photos), "--quiet", *extra]) == 0


def labels(engine, view: str) -> dict[str, tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT image_uri, label, model_version FROM {view}")).all()
    return {Path(uri).stem: (label, model) for uri, label, model in rows}


# ---------------------------------------------------------------------------------------------- baseline

def test_db_migrate_records_the_bundled_models_as_first_champions_and_reads_record_nothing(db_url, cli_db, capsys):
    from tasks import pipeline

    eng = db.engine(db_url)
    assert pipeline.champion_path("cifar10", db_url) == "bundled:cifar10"  # a read: the bundled model...
    assert sa.inspect(eng).get_table_names() == []  # ...recorded nowhere (a read migrates nothing either)
    assert cli.main(["db", "migrate"]) == 0
    assert "baseline champion" in capsys.readouterr().out
    for dataset in ("cifar10", "cifar100"):
        row = registry.champion(eng, dataset)
        assert (row.model_id, row.artifact_uri) == (bundled_id(dataset), f"bundled:{dataset}")
        assert row.dataset_version == BUNDLED_VERSION[dataset]
    assert cli.main(["db", "migrate"]) == 0  # a second run records nothing more
    assert "baseline" not in capsys.readouterr().out
    assert [event["event"] for event in registry.events(eng, model_id=bundled_id())] == ["promoted", "registered"]


def test_a_smoke_run_is_never_promoted_and_the_bundled_model_keeps_serving(engine, tmp_path, capsys, cli_db):
    for model_id, epochs, limit, why in (("limited", 1, 2000, "train_limit"), ("short", 1, None, "below the recipe"),
                                         ("short-but-great", 3, None, "minimum of 8")):
        registry.register(engine, trained(tmp_path / model_id, model_id, 0.97, epochs, limit))
        decision = promote.auto_promote(engine, model_id)
        assert not decision.promoted and why in decision.reason, decision.reason
        (refusal,) = [event for event in registry.events(engine, model_id=model_id) if event["event"] == "rejected"]
        assert "smoke run" in refusal["detail"]["reason"]
        # every gate is evaluated: the refusal also says how it compares with the champion
        assert "against the champion's" in refusal["detail"]["reason"], refusal["detail"]
        assert refusal["detail"]["champion_top1"] is not None and refusal["detail"]["challenger_top1"] == 0.97
    assert champion_id(engine) == bundled_id()
    assert cli.main(["models", "show", "limited"]) == 0
    shown = capsys.readouterr().out
    assert "test_top1 0.97" in shown and BUNDLED_VERSION["cifar10"] in shown and "smoke run" in shown


def test_the_floor_and_the_margin_are_gates_and_a_full_better_run_takes_over(engine, tmp_path):
    registry.register(engine, trained(tmp_path / "chance", "chance", 0.10))
    registry.register(engine, trained(tmp_path / "toy-chance", "toy-chance", 0.10, dataset="cifar100"))
    chance = promote.auto_promote(engine, "chance")
    assert "below the floor of 50%" in chance.reason and "(does not beat the champion)" in chance.reason
    assert chance.champion_top1 is not None
    assert "below the floor of 30%" in promote.auto_promote(engine, "toy-chance").reason
    bundled_top1 = registry.champion(engine, "cifar10").test_top1
    registry.register(engine, trained(tmp_path / "close", "close", bundled_top1 + 0.001))
    assert "margin" in promote.auto_promote(engine, "close").reason
    other_version = {**trained(tmp_path / "elsewhere", "elsewhere", 0.99), "dataset_version": "c3c3c3c3c3c3c3c3"}
    registry.register(engine, {**other_version, "metrics": {"test_top1": 0.99, "dataset_version": "c3c3c3c3c3c3c3c3"}})
    # not the same test split: the champion must be evaluated there first, and the reason says how
    assert (f"hashtagger evaluate {artifact_store.BUNDLED_DIR / 'cifar10'} --dataset-version c3c3c3c3c3c3c3c3"
            in promote.auto_promote(engine, "elsewhere").reason)
    registry.register(engine, trained(tmp_path / "better", "better", bundled_top1 + 0.01))
    decision = promote.auto_promote(engine, "better")
    assert decision.promoted and decision.previous_champion == bundled_id()
    assert decision.compared_on == BUNDLED_VERSION["cifar10"]
    assert champion_id(engine) == "better" and champion_id(engine, "cifar100") == bundled_id("cifar100")


def test_rollback_always_returns_to_the_bundled_model(engine, tmp_path):
    # a champion crowned before the database knew its baseline (a registry from before this change)
    registry.register(engine, trained(tmp_path / "bad", "bad", 0.10, epochs=1, train_limit=2000))
    registry.set_champion(engine, "bad", "first champion, unchecked")
    decision = promote.rollback(engine, "cifar10")
    assert decision.model_id == bundled_id() and champion_id(engine) == bundled_id()
    registry.register(engine, trained(tmp_path / "manual", "manual", 0.6))
    promote.promote_manually(engine, "manual", "by hand")
    assert promote.rollback(engine, "cifar10").model_id == bundled_id()
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        promote.rollback(engine, "cifar10")


# ---------------------------------------------------------------------------------------------- re-tagging

def test_a_new_champion_retags_and_the_views_show_only_its_rows(engine, cli_db, tmp_path):
    tag_samples(tmp_path)
    first = labels(engine, "image_labels")
    assert {model for _, model in first.values()} == {bundled_id()}
    assert {stem: label for stem, (label, _) in first.items()} == {path.stem: path.stem for path in SAMPLES.iterdir()}
    registry.register(engine, trained(tmp_path / "models" / "tiny-v2", "tiny-v2", 0.95))
    assert promote.auto_promote(engine, "tiny-v2").promoted

    tag_samples(tmp_path, "--limit", "3")  # a capped run re-tags 3 images, the rest wait
    capped = labels(engine, "image_labels")
    assert sorted(model for _, model in capped.values()).count("tiny-v2") == 3
    tag_samples(tmp_path)  # the next run catches up with the rest
    current = labels(engine, "image_tags")
    assert {model for _, model in current.values()} == {"tiny-v2"} and len(current) == len(first)
    with engine.connect() as connection:
        models_per_image = connection.execute(sa.text(
            "SELECT image_uri, count(DISTINCT model_version) FROM image_tags GROUP BY image_uri")).all()
        kept = connection.execute(sa.text(
            "SELECT count(*) FROM image_tags_all WHERE model_version = :m"), {"m": bundled_id()}).scalar()
        history = connection.execute(sa.text(
            "SELECT model_version, count(*) FROM image_labels_all GROUP BY model_version")).all()
    assert {count for _, count in models_per_image} == {1}  # never two models' hashtags for one image
    assert kept > 0 and sorted(history) == sorted([(bundled_id(), len(first)), ("tiny-v2", len(first))])
    tag_samples(tmp_path)  # nothing left for this champion
    with engine.connect() as connection:
        last = connection.execute(sa.text(
            "SELECT tagged, skipped FROM tagging_runs ORDER BY started_at DESC LIMIT 1")).one()
    assert (last.tagged, last.skipped) == (0, len(first))
    promote.rollback(engine, "cifar10")  # the bundled model again: its rows come back, nothing re-tagged
    assert {model for _, model in labels(engine, "image_labels").values()} == {bundled_id()}


def test_a_capped_catch_up_retags_the_images_tagged_longest_ago_first(engine, cli_db, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLES, photos)
    tag_samples(tmp_path, "--limit", "4")  # airplane, automobile, bird, cat: first in listing order
    tag_samples(tmp_path)  # dog, frog, horse, ship, a little later
    for name in ("aaa-new.jpg", "aab-new.jpg"):  # never tagged: first in listing order, yet newest
        shutil.copy(SAMPLES / "cat.jpg", photos / name)
    registry.register(engine, trained(tmp_path / "models" / "tiny-v2", "tiny-v2", 0.95))
    assert promote.auto_promote(engine, "tiny-v2").promoted

    def by_new_champion() -> set[str]:
        with engine.connect() as connection:
            return {Path(uri).stem for (uri,) in connection.execute(sa.text(
                "SELECT image_uri FROM image_labels_all WHERE model_version = 'tiny-v2'"))}

    tag_samples(tmp_path, "--limit", "5")
    assert by_new_champion() == {"airplane", "automobile", "bird", "cat", "dog"}  # oldest, then listing order
    tag_samples(tmp_path, "--limit", "3")
    assert by_new_champion() == {path.stem for path in SAMPLES.iterdir()}
    tag_samples(tmp_path, "--limit", "3")  # the images no model had tagged come last
    assert by_new_champion() == {path.stem for path in SAMPLES.iterdir()} | {"aaa-new", "aab-new"}


def test_example_queries_run_on_the_views(engine, cli_db, tmp_path):
    tag_samples(tmp_path)
    parameters = {"top_hashtags_per_day": {"first_day": "2000-01-01", "last_day": "2999-12-31", "top": 3},
                  "images_per_label": {}, "low_confidence_images": {"threshold": 1.01, "top": 50},
                  "failures_of_last_run": {}, "compare_model_versions": {"old_model": bundled_id(),
                                                                         "new_model": bundled_id()}}
    with engine.connect() as connection:
        results = {name: connection.execute(sa.text(db.query_text(name)), values).all()
                   for name, values in parameters.items()}
    assert len(results["low_confidence_images"]) == len(list(SAMPLES.iterdir()))
    assert len(results["compare_model_versions"]) == len(list(SAMPLES.iterdir()))
    assert sum(row.images for row in results["images_per_label"]) == len(list(SAMPLES.iterdir()))


# ---------------------------------------------------------------------------------------------- portability

def test_bundled_references_resolve_against_the_current_install(tmp_path):
    assert artifact_store.reference(artifact_store.BUNDLED_DIR / "cifar10") == "bundled:cifar10"
    assert artifact_store.resolve("bundled:cifar10") == artifact_store.BUNDLED_DIR / "cifar10"
    # a registry written before references: an absolute path into an install that is gone
    gone = tmp_path / "old-venv" / "lib" / "python3.11" / "site-packages" / "models" / "bundled" / "cifar100"
    assert artifact_store.resolve(str(gone)) == artifact_store.BUNDLED_DIR / "cifar100"
    home = Path(os.environ["HASHTAGGER_HOME"])
    assert artifact_store.reference(home / "models" / "m1") == "home:models/m1"
    assert artifact_store.resolve("home:models/m1") == home / "models" / "m1"


DRIVER = """
import sys
from tasks.cli import main
sys.exit(main.main(sys.argv[1:]))
"""


def test_a_registry_row_from_before_references_gets_the_bundled_reference(engine):
    """Registries written before this change hold the bundled model as an absolute path into the
    install of the day; the next write path rewrites it as bundled:<dataset>."""
    metadata = artifact.read_metadata(artifact_store.BUNDLED_DIR / "cifar10")
    gone = "/old/venv/lib/python3.11/site-packages/models/bundled/cifar10"
    registry.register(engine, {**metadata, "artifact_uri": gone})
    registry.ensure_baseline(engine)
    row = registry.champion(engine, "cifar10")
    assert (row.model_id, row.artifact_uri) == (bundled_id(), "bundled:cifar10")


def test_an_updated_bundled_model_takes_over_from_the_one_it_replaces(engine):
    """The lead retrains the bundled models: the files change, the reference stays. The old bundled
    champion gives way, and a rollback cannot bring back a model whose files are gone."""
    metadata = artifact.read_metadata(artifact_store.BUNDLED_DIR / "cifar10")
    old = {**metadata, "model_id": "resnet9-cifar10-before", "artifact_uri": "bundled:cifar10"}
    registry.register(engine, old)
    registry.set_champion(engine, "resnet9-cifar10-before", "the bundled model of an older install")
    assert registry.ensure_baseline(engine) == [bundled_id(), bundled_id("cifar100")]
    assert champion_id(engine) == bundled_id()
    with pytest.raises(registry.RegistryError, match="now holds"):
        promote.rollback(engine, "cifar10")
    assert champion_id(engine) == bundled_id()


def test_moving_the_install_keeps_a_registry_that_points_at_a_bundled_model(tmp_path, db_url):
    """The package installed in one place records the baseline; that install is removed and another
    serves the same database (as after pip uninstall + install, or pip install -e elsewhere)."""
    def install(where: Path) -> Path:
        for part in ("tasks", "sql"):
            shutil.copytree(REPO / part, where / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO / "models", where / "models", ignore=shutil.ignore_patterns("__pycache__", "cifar100"))
        return where

    def hashtagger(where: Path, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(where), "HASHTAGGER_DB_URL": db_url, "TF_CPP_MIN_LOG_LEVEL": "2"}
        return subprocess.run([sys.executable, "-c", DRIVER, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    first = install(tmp_path / "first")
    assert hashtagger(first, "db", "migrate").returncode == 0
    shutil.rmtree(first)
    second = install(tmp_path / "second")
    done = hashtagger(second, "tag", str(SAMPLES), "--quiet")
    assert done.returncode == 0, done.stderr
    assert bundled_id() in done.stdout and "8 tagged" in done.stdout


# ---------------------------------------------------------------------------------------------- ONNX only

BLOCK_ONNX = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("onnx", "tf2onnx"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Block())
from tasks.cli import main
sys.exit(main.main(sys.argv[1:]))
"""


def test_a_promotion_without_the_onnx_dependencies_fails_with_a_one_line_reason(engine, db_url, tmp_path):
    registry.register(engine, trained(tmp_path / "keras-only", "keras-only", 0.95, onnx=False))
    env = {**os.environ, "HASHTAGGER_DB_URL": db_url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", BLOCK_ONNX, "models", "promote", "keras-only"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2  # a missing extra is a configuration error (tasks/errors.py)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "onnx" in done.stderr and "hashtagger[train]" in done.stderr
    assert champion_id(engine) == bundled_id()  # nothing changed


TAG_SHARD = """
import json, sys
from tasks import pipeline
summary = pipeline.tag_shard(sys.argv[1], pipeline.champion_path("cifar10", sys.argv[2]), 0, 1, "no-tf-run",
                             sys.argv[2])
print(json.dumps({"tagged": summary["tagged"], "model": summary["model_id"],
                  "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def test_a_tag_shard_as_the_dag_runs_it_never_imports_tensorflow(db_url, tmp_path):
    db.migrate(db.engine(db_url))  # the DAG's first task
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", TAG_SHARD, str(SAMPLES), db_url], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"tagged": 8, "model": bundled_id(), "tensorflow": False, "keras": False}
