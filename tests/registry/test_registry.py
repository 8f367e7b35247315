"""tasks.registry and tasks.promote on PostgreSQL and SQLite: registration, promotion, rollback, races.

Models here are metadata only (an artifact folder with metadata.json and no weights), so no Keras is
imported; ONNX export is exercised in test_export.py. They belong to a dataset without a bundled model
(`toy`), so that the registry's mechanics are tested alone; the bundled baseline, the gates and
re-tagging are in test_lifecycle.py.
"""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from tasks import errors, pipeline
from tasks.evaluate.result import EvaluationResult
from tasks.registry import artifact
from tasks.cli import main as cli
from tasks.store import db
from tasks.registry import promote
from tasks.registry import registry
from tasks.tag import predictor

VERSION_1, VERSION_2 = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2"
DATASET, OTHER_DATASET = "toy", "toy2"  # no bundled model: no baseline champion


@pytest.fixture
def engine(db_url):
    eng = db.ensure_schema(db.engine(db_url))
    yield eng
    eng.dispose()


def make_model(tmp_path, model_id: str, top1: float, version: str = VERSION_1, dataset: str = DATASET,
               epochs: int = 10, train_limit: int | None = None) -> dict:
    """Metadata of a saved model (the folder holds metadata.json only: enough for the registry)."""
    folder = tmp_path / "models" / model_id
    folder.mkdir(parents=True)
    metadata = {"model_id": model_id, "architecture": "vgg16", "recipe": {"name": "fast", "min_epochs": 8},
                "train_config": {"epochs": epochs, "train_limit": train_limit}, "epochs_done": epochs,
                "dataset": dataset, "dataset_version": version, "class_names": ["a", "b"],
                "created_at": "2026-11-27T10:00:00+00:00",
                "metrics": {"test_top1": top1, "test_top5": 1.0, "dataset_version": version}}
    artifact.write_metadata(folder, metadata)
    return artifact.read_metadata(folder)


def add(engine, tmp_path, model_id: str, top1: float, **kwargs) -> str:
    registry.register(engine, make_model(tmp_path, model_id, top1, **kwargs))
    return model_id


def champions(engine, dataset: str = DATASET) -> list[str]:
    with engine.connect() as connection:
        return [row.model_id for row in connection.execute(
            sa.text("SELECT model_id FROM models WHERE dataset = :d AND status = 'champion'"), {"d": dataset})]


def event_names(engine, model_id: str) -> list[str]:
    return [event["event"] for event in reversed(registry.events(engine, model_id=model_id))]


def test_a_trained_model_goes_into_the_registry_by_the_one_path_and_a_refusing_database_loses_nothing(
        engine, db_url, tmp_path, caplog):
    metadata = make_model(tmp_path, "m-saved", 0.80)
    unreachable = "postgresql+psycopg2://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
    assert pipeline.register_saved_model(metadata, unreachable) is False
    assert "model m-saved saved but not registered" in caplog.text
    assert f"run `hashtagger models register {metadata['path']}`" in caplog.text
    # the command the log names records it later, from its folder, as training would have
    assert pipeline.register_saved_model(metadata, db_url) is True
    row = pipeline.register_model(metadata["path"], db_url)
    assert (row.model_id, row.status, row.test_top1) == ("m-saved", "candidate", pytest.approx(0.80))


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("test_top1", 93.5, "test_top1 must be a fraction between 0 and 1, not 93.5"),  # a percentage
    ("test_top1", float("nan"), "not nan"),
    ("test_top1", "0.9", "not '0.9'"),
    ("created_at", "yesterday", "created_at must be an ISO 8601 time with its zone"),
    ("created_at", "2026-12-01T00:00:00", "with its zone"),  # no zone: sorts against the others wrongly
    ("created_at", 1733500000, "not 1733500000"),
])
def test_register_refuses_hand_written_metadata_it_would_show_wrong(engine, tmp_path, field, value, expected):
    """Found by a fresh user: 93.5 listed as 9350.00%, NaN crashed on the NOT NULL column, 'yesterday' sorted
    as the newest model. Nothing is recorded."""
    metadata = make_model(tmp_path, "hand-written", 0.9)
    if field == "test_top1":
        metadata["metrics"]["test_top1"] = value
    else:
        metadata[field] = value
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        registry.register(engine, metadata)
    assert registry.list_models(engine) == []


def test_a_champion_s_artifact_is_not_replaced_by_registering_another_folder_under_its_id(engine, tmp_path):
    """A fresh user registered a folder holding only metadata.json under the champion's id: tagging would
    have served it. Refused; the champion's row is as it was."""
    add(engine, tmp_path, "m1", 0.80)
    registry.set_champion(engine, "m1")
    served = registry.get(engine, "m1").artifact_uri
    copy = make_model(tmp_path / "copy", "m1", 0.10)
    with pytest.raises(registry.RegistryError, match="is the champion of toy, served from .*own model_id"):
        registry.register(engine, copy)
    assert (registry.get(engine, "m1").artifact_uri, registry.get(engine, "m1").test_top1) == (served, 0.80)


def test_created_at_is_stored_in_utc_as_the_project_writes_it(engine, tmp_path):
    """Rows sort by created_at as text on SQLite: another zone or form would sort wrongly."""
    metadata = make_model(tmp_path, "zoned", 0.9)
    metadata["created_at"] = "2026-12-06T21:30:00.250+01:00"
    registry.register(engine, metadata)
    assert str(registry.get(engine, "zoned").created_at).replace(" ", "T") == "2026-12-06T20:30:00+00:00"


@pytest.mark.parametrize(("content", "expected"), [
    ("[1, 2]", "holds a JSON list, not an object of fields"), ("{x", "not valid JSON"), (None, "no such file")])
def test_a_folder_that_is_not_a_model_gets_one_line_naming_the_file(tmp_path, content, expected):
    folder = tmp_path / "model"
    if content is not None:
        folder.mkdir()
        (folder / "metadata.json").write_text(content)
    with pytest.raises(artifact.ArtifactError, match=expected):
        artifact.read_metadata(folder)


def test_register_is_an_idempotent_upsert(engine, tmp_path):
    metadata = make_model(tmp_path, "m1", 0.80)
    registry.register(engine, metadata)
    row = registry.register(engine, {**metadata, "metrics": {**metadata["metrics"], "test_top1": 0.81}})
    assert row.status == "candidate" and row.test_top1 == pytest.approx(0.81)
    assert [r.model_id for r in registry.list_models(engine)] == ["m1"]
    assert event_names(engine, "m1") == ["registered", "updated"]  # oldest first: the change is on record
    registry.register(engine, {**metadata, "metrics": {**metadata["metrics"], "test_top1": 0.81}})
    assert event_names(engine, "m1") == ["registered", "updated"], "the same registration again logs nothing"
    assert json.loads(row.metrics)["test_top1"] == pytest.approx(0.81)


def test_first_model_becomes_champion_and_serves(engine, db_url, tmp_path):
    add(engine, tmp_path, "m1", 0.80)
    assert registry.champion(engine, DATASET) is None
    with pytest.raises(predictor.ModelNotFound):  # no champion, and no bundled model to fall back to
        pipeline.champion_path(DATASET, db_url)
    decision = promote.auto_promote(engine, "m1", onnx=False)
    assert decision.promoted and "first champion" in decision.reason
    assert champions(engine) == ["m1"]
    # recorded relative to HASHTAGGER_HOME when it lies there, else by absolute path
    assert pipeline.champion_path(DATASET, db_url) == str(tmp_path / "models" / "m1")


def test_a_worse_challenger_is_never_promoted(engine, tmp_path):
    add(engine, tmp_path, "champ", 0.900)
    promote.auto_promote(engine, "champ", onnx=False)
    for model_id, top1 in (("worse", 0.85), ("equal", 0.900), ("inside-margin", 0.9015)):
        add(engine, tmp_path, model_id, top1)
        decision = promote.auto_promote(engine, model_id, onnx=False)
        assert not decision.promoted, decision.reason
        assert decision.champion_top1 == pytest.approx(0.900) and decision.compared_on == VERSION_1
        assert registry.get(engine, model_id).status == "candidate"
    assert champions(engine) == ["champ"]
    # a rejection is logged once, with its figures, however often it is asked again
    promote.auto_promote(engine, "worse", onnx=False)
    assert event_names(engine, "worse") == ["registered", "rejected"]
    assert registry.events(engine, model_id="worse")[0]["detail"]["challenger_top1"] == pytest.approx(0.85)


def test_a_model_serving_test_time_augmentation_is_promoted_by_hand_only(engine, tmp_path):
    """Its two-pass figure is not comparable to a one-pass champion's, and it doubles the nightly inference
    (a user's trial saw the champion's own flip copy replace it automatically)."""
    add(engine, tmp_path, "champ", 0.900)
    promote.auto_promote(engine, "champ", onnx=False)
    metadata = make_model(tmp_path, "champ-flip", 0.950)
    artifact.write_metadata(tmp_path / "models" / "champ-flip", {**metadata, "serving_tta": "flip"})
    registry.register(engine, artifact.read_metadata(tmp_path / "models" / "champ-flip"))
    decision = promote.auto_promote(engine, "champ-flip", onnx=False)
    assert not decision.promoted
    assert "serves flip test-time augmentation" in decision.reason
    assert "hashtagger models promote champ-flip" in decision.reason
    assert champions(engine) == ["champ"]
    assert promote.promote_manually(engine, "champ-flip", "accept two passes", onnx=False).promoted
    assert champions(engine) == ["champ-flip"]


def test_a_challenger_beating_the_margin_takes_over_and_the_change_is_logged(engine, tmp_path):
    add(engine, tmp_path, "champ", 0.900)
    promote.auto_promote(engine, "champ", onnx=False)
    add(engine, tmp_path, "better", 0.902)  # exactly the default margin of 0.2 points
    decision = promote.auto_promote(engine, "better", onnx=False)
    assert decision.promoted and decision.previous_champion == "champ"
    assert champions(engine) == ["better"]
    assert registry.get(engine, "champ").status == "retired"
    assert event_names(engine, "champ") == ["registered", "promoted", "retired"]
    promoted = registry.events(engine, model_id="better")[0]
    assert promoted["event"] == "promoted" and promoted["detail"]["previous_champion"] == "champ"


def test_models_on_another_dataset_version_compare_only_on_a_common_version(engine, tmp_path):
    add(engine, tmp_path, "old", 0.90, version=VERSION_1)
    promote.auto_promote(engine, "old", onnx=False)
    add(engine, tmp_path, "new", 0.95, version=VERSION_2)
    decision = promote.auto_promote(engine, "new", onnx=False)
    assert not decision.promoted and "--dataset-version " + VERSION_2 in decision.reason
    # once the champion is evaluated on the new version, the two compare there
    registry.record_evaluation(engine, "old", EvaluationResult(dataset_version=VERSION_2, test_top1=0.94))
    decision = promote.auto_promote(engine, "new", onnx=False)
    assert decision.promoted and decision.compared_on == VERSION_2
    assert decision.champion_top1 == pytest.approx(0.94)


def test_manual_promotion_and_rollback_walk_the_history(engine, tmp_path):
    for model_id, top1 in (("a", 0.80), ("b", 0.70), ("c", 0.60)):
        add(engine, tmp_path, model_id, top1)
        promote.promote_manually(engine, model_id, "chosen by hand", onnx=False)  # manual: accuracy not checked
    assert champions(engine) == ["c"]
    assert promote.rollback(engine, DATASET, onnx=False).model_id == "b"
    assert champions(engine) == ["b"]
    assert promote.rollback(engine, DATASET, onnx=False).model_id == "a"
    assert champions(engine) == ["a"]
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        promote.rollback(engine, DATASET, onnx=False)
    assert champions(engine) == ["a"]
    assert event_names(engine, "c") == ["registered", "promoted", "retired", "rolled_back"]
    with pytest.raises(registry.RegistryError, match="no champion"):
        promote.rollback(engine, OTHER_DATASET, onnx=False)


def test_champions_are_per_dataset(engine, tmp_path):
    add(engine, tmp_path, "ten", 0.9)
    add(engine, tmp_path, "hundred", 0.6, dataset=OTHER_DATASET)
    promote.auto_promote(engine, "ten", onnx=False)
    promote.auto_promote(engine, "hundred", onnx=False)
    assert champions(engine, DATASET) == ["ten"] and champions(engine, OTHER_DATASET) == ["hundred"]


def test_the_database_refuses_a_second_champion(engine, tmp_path):
    add(engine, tmp_path, "m1", 0.8)
    add(engine, tmp_path, "m2", 0.9)
    promote.promote_manually(engine, "m1", onnx=False)
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE models SET status = 'champion' WHERE model_id = 'm2'"))
    assert champions(engine) == ["m1"]


def test_promoting_a_model_whose_artifact_is_gone_is_refused(engine, tmp_path):
    add(engine, tmp_path, "m1", 0.8)
    (tmp_path / "models" / "m1" / artifact.METADATA_FILE).unlink()
    with pytest.raises(registry.RegistryError, match="artifact is gone"):
        promote.auto_promote(engine, "m1", onnx=False)
    assert champions(engine) == []


def test_racing_auto_promotions_leave_exactly_one_champion_the_best(engine, tmp_path):
    """Eight challengers promote at once (each on its own connection); repeated for more interleavings."""
    for round_number in range(3):
        dataset = f"race{round_number}"
        scores = [0.80 + 0.01 * ((index * 5 + round_number) % 8) for index in range(8)]  # a shuffled order
        ids = [add(engine, tmp_path, f"r{round_number}-m{index}", score, dataset=dataset)
               for index, score in enumerate(scores)]
        barrier = threading.Barrier(len(ids))
        errors: list[BaseException] = []

        def contend(model_id: str) -> None:
            try:
                barrier.wait()
                registry.set_champion_if_gates_pass(engine, model_id)
            except BaseException as error:  # surfaced below: a thread's exception is otherwise lost
                errors.append(error)

        threads = [threading.Thread(target=contend, args=(model_id,)) for model_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert champions(engine, dataset) == [ids[scores.index(max(scores))]]
        # every promotion beat the champion it replaced by the margin
        for event in registry.events(engine, dataset=dataset, limit=1000):
            detail = event["detail"]
            if event["event"] == "promoted" and detail.get("champion_top1") is not None:
                assert detail["challenger_top1"] - detail["champion_top1"] >= registry.DEFAULT_MARGIN - 1e-9


def test_racing_manual_promotions_leave_exactly_one_champion(engine, tmp_path):
    ids = [add(engine, tmp_path, f"m{index}", 0.5 + index / 100) for index in range(6)]
    barrier = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def contend(model_id: str) -> None:
        try:
            barrier.wait()
            registry.set_champion(engine, model_id, "race")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(model_id,)) for model_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(champions(engine)) == 1
    assert sum(event["event"] == "promoted" for event in registry.events(engine, limit=100)) == len(ids)


def test_models_commands(engine, db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HASHTAGGER_DB_URL", db_url)
    for model_id, top1 in (("m1", 0.80), ("m2", 0.85)):
        metadata = make_model(tmp_path, model_id, top1)
        assert cli.main(["models", "register", metadata["path"]]) == 0
    assert cli.main(["models", "promote", "m1", "--no-onnx"]) == 0
    assert cli.main(["models", "auto-promote", "m2", "--no-onnx"]) == 0
    assert "now champion" in capsys.readouterr().out
    assert cli.main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{DATASET} champion: m2 ") and "replacing m1" in line for line in lines), lines
    header = next(index for index, line in enumerate(lines) if line.startswith("status"))
    table = lines[header + 1:]
    # columns line up: each row's cells start where their headings do (the bundled model's long id too)
    names = ("dataset", "version", "arch", "recipe", "model_id")
    starts = [lines[header].index(name) for name in names]
    for line in table:
        assert all(line[start - 1] == " " != line[start] for start in starts), (lines[header], line)
        assert line[starts[-1]:] == line.split()[-1]
    status = {line.split()[-1]: line.split()[0] for line in table}
    assert {key: value for key, value in status.items() if key in ("m1", "m2")} == {"m1": "retired",
                                                                                   "m2": "champion"}
    # a refusal has its own exit status, so that a script can tell; the champion itself is no refusal
    assert cli.main(["models", "auto-promote", "m1", "--no-onnx"]) == errors.EXIT_NOT_PROMOTED == 3
    assert "m1: not promoted, nothing changed" in capsys.readouterr().out
    assert cli.main(["models", "auto-promote", "m2", "--no-onnx"]) == 0
    capsys.readouterr()
    assert cli.main(["models", "rollback", "--dataset", DATASET, "--no-onnx"]) == 0
    assert "champion is now m1" in capsys.readouterr().out
    assert cli.main(["models", "show", "m2"]) == 0
    assert "rolled_back" in capsys.readouterr().out
    assert cli.main(["models", "promote", "nope", "--no-onnx"]) == 2  # a usage error
    assert "not registered" in capsys.readouterr().err
    # filters: only the dataset's champion line, and a filter matching nothing says so (not 'no models')
    assert cli.main(["models", "list", "--dataset", "elsewhere"]) == 0
    assert capsys.readouterr().out.strip() == ("no registered model has dataset elsewhere "
                                               "(datasets: cifar10, cifar100 and any you trained on)")
    assert cli.main(["models", "list", "--dataset", DATASET, "--status", "retired"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed if " champion: " in line] == [DATASET]
    assert cli.main(["models", "list", "--json"]) == 0
    assert {row["model_id"]: row["status"] for row in json.loads(capsys.readouterr().out)
            if row["model_id"] in ("m1", "m2")} == {"m1": "champion", "m2": "retired"}


def test_the_reproduce_command_survives_a_shell():
    """A model's `reproduce` line pasted into a shell gives `train` the same overrides (a bare
    widths=[16,32,32] is a glob pattern; a quoted JSON string must stay one)."""
    import shlex

    from tasks.cli.train import pairs
    from tasks.train.train import TrainConfig

    config = TrainConfig(architecture="airbench", recipe="airbench96", epochs=2,
                         recipe_overrides=(("outlier_dataset", "cifar100"), ("batch_size", 16)),
                         model_overrides=(("widths", [16, 32, 32]), ("residual", True)))
    words = shlex.split(artifact.reproduce_command(config))
    settings = {flag: [words[index + 1] for index, word in enumerate(words) if word == flag]
                for flag in ("--recipe-set", "--model-set")}
    assert pairs(settings["--recipe-set"]) == config.recipe_overrides
    assert pairs(settings["--model-set"]) == config.model_overrides
