"""Evaluation: calibration maths on synthetic data, the report files, and `hashtagger evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tasks.evaluate import calibration
from tasks.cli import main as cli
from tasks.store import db
from tasks.evaluate import evaluate
from tasks.config import Settings
from tasks.data.dataset import Dataset


def sample(rng, logits: np.ndarray) -> np.ndarray:
    """Labels drawn from softmax(logits): a model whose probabilities are exactly right."""
    probabilities = calibration.softmax(logits)
    return np.array([rng.choice(len(row), p=row) for row in probabilities])


def test_temperature_scaling_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, (4000, 10))
    labels = sample(rng, logits)
    overconfident = calibration.softmax(logits * 3.0)  # a model three times too sure of itself
    assert calibration.fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.08)
    honest = calibration.softmax(logits)
    assert calibration.fit_temperature(honest, labels) == pytest.approx(1.0, rel=0.08)
    metrics, tables = calibration.calibrate(overconfident[:2000], labels[:2000], overconfident[2000:], labels[2000:])
    honest_ece = calibration.expected_calibration_error(honest[2000:], labels[2000:])  # sampling noise alone
    assert metrics["test_ece_before"] > 0.1 and metrics["test_ece_after"] < honest_ece + 0.01
    assert metrics["test_nll_after"] < metrics["test_nll_before"]
    assert sum(tables["before"]["counts"]) == 2000 and len(tables["after"]["edges"]) == 16


def test_scaling_never_changes_the_predicted_class():
    probabilities = calibration.softmax(np.random.default_rng(1).normal(0, 3, (500, 7)))
    for temperature in (0.2, 1.0, 5.0):
        scaled = calibration.scale(probabilities, temperature)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)


def top_label_miscalibrated(rng, count: int, slope: float, intercept: float, classes: int = 10):
    """(probabilities, labels) of a model whose top label is right with probability
    sigmoid(slope * logit(c) + intercept) when it says c: under-confident low, over-confident high for
    slope < 1, the shape one temperature cannot straighten."""
    confidence = rng.uniform(2.0 / classes, 0.99, count)
    # the others share the rest about evenly (within about 25%), so class 0 is always the top label
    others = rng.dirichlet(np.full(classes - 1, 20.0), count) * (1 - confidence)[:, None]
    probabilities = np.concatenate([confidence[:, None], others], axis=1)
    assert (probabilities.argmax(axis=1) == 0).all()
    right = rng.random(count) < 1 / (1 + np.exp(-(slope * np.log(confidence / (1 - confidence)) + intercept)))
    labels = np.where(right, 0, rng.integers(1, classes, count))
    return probabilities, labels


def test_top_label_platt_scaling_recovers_a_known_miscalibration_that_temperature_cannot():
    rng = np.random.default_rng(4)
    probabilities, labels = top_label_miscalibrated(rng, 24000, slope=0.6, intercept=0.4)
    slope, intercept, left_out = calibration.fit_top_label(probabilities, labels)
    assert left_out == "" and slope == pytest.approx(0.6, abs=0.05) and intercept == pytest.approx(0.4, abs=0.05)
    metrics, tables = calibration.calibrate(probabilities[:12000], labels[:12000],
                                            probabilities[12000:], labels[12000:])
    assert metrics["test_ece_after"] > 0.03  # the temperature alone leaves it miscalibrated
    assert metrics["test_ece_served"] < 0.015 and metrics["test_nll_served"] < metrics["test_nll_after"]
    assert metrics["top_label"]["method"] == "platt" and sum(tables["served"]["counts"]) == 12000
    served = calibration.Calibrator.from_metrics(metrics)(probabilities[12000:])
    assert calibration.expected_calibration_error(served, labels[12000:]) == pytest.approx(metrics["test_ece_served"])


def test_a_map_that_lowers_a_near_tie_keeps_the_winner_without_reversing_the_ranking():
    """A fit with a negative intercept (a CIFAR-100 pilot's: slope 0.709, intercept -0.0965) maps a near-tie's
    top below its runner-up's proportional share: the runner-up is capped just below it, the top keeps the
    map's value, and a more confident image still serves a higher confidence."""
    given = np.array([[0.50, 0.49, 0.01], [0.51, 0.48, 0.01], [0.34, 0.33, 0.33]])
    served = calibration.top_label_scale(given, 0.709, -0.0965)
    logit = np.log(given.max(axis=1) / (1 - given.max(axis=1)))
    np.testing.assert_allclose(served[:, 0], 1 / (1 + np.exp(-(0.709 * logit - 0.0965))), rtol=1e-9)
    assert served[0, 0] < served[1, 0]  # 0.50 -> 0.4759 below 0.51 -> 0.4830
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-12)
    assert (served.astype(np.float32).argmax(axis=1) == 0).all()
    # the capped runner-up sits a hair below the top; the rest takes what is left
    assert served[0, 1] == pytest.approx(served[0, 0] * (1 - calibration.TIE_MARGIN), rel=1e-12)
    assert served[0, 2] == pytest.approx(1 - served[0, 0] - served[0, 1])


@pytest.mark.parametrize("slope, intercept", [(0.84, 0.04), (1.0, 0.0), (0.3, -3.0), (3.0, 2.0)])
def test_top_label_scaling_keeps_the_winner_the_ranking_and_the_sum(slope, intercept):
    probabilities = calibration.softmax(np.random.default_rng(2).normal(0, 3, (2000, 10)))
    # a certain one, a tie, a flat one, and a near-certain one whose runner-up must stay the runner-up
    probabilities[:4] = [[1.0] + [0.0] * 9, [0.5, 0.5] + [0.0] * 8, [0.1] * 10,
                         [1 - 1.5e-13, 1e-13, 5e-14] + [0.0] * 7]
    for given in (probabilities, probabilities.astype(np.float32)):  # serving's runtimes return float32
        served = calibration.top_label_scale(given, slope, intercept)
        np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        assert (served >= 0).all()
        # float32, as serving returns it, keeps the winner too: where the map would drop the top class to
        # the runner-up's level, it stays just above it
        np.testing.assert_array_equal(served.astype(np.float32).argmax(axis=1), given.argmax(axis=1))
    served = calibration.top_label_scale(probabilities, slope, intercept)
    assert served[3, 1] >= served[3, 2] >= served[3, 3] == 0  # the others keep their order ...
    if served[3, 0] < 1:  # ... and their shares, unless the map rounds the top to exactly 1
        assert served[3, 1] == pytest.approx(2 * served[3, 2]) and served[3, 2] > 0
    # the served confidence is the map's own value, whatever the map: images rank by confidence as before
    order = np.argsort(probabilities.max(axis=1), kind="stable")
    assert (np.diff(served.max(axis=1)[order]) >= 0).all()
    if (slope, intercept) == (1.0, 0.0):  # the identity, but for ties, where the first class stays first
        np.testing.assert_allclose(np.delete(served, [1, 2], axis=0), np.delete(probabilities, [1, 2], axis=0),
                                   atol=1e-12)
        assert served[1, 0] > served[1, 1] and served[1, 0] == pytest.approx(0.5, abs=1e-6)


def test_top_label_scaling_of_a_two_class_model_and_an_empty_batch():
    two = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    served = calibration.Calibrator(1.0, 0.5, 0.0)(two)
    np.testing.assert_allclose(served.sum(axis=1), 1.0)
    expected_top = 1 / (1 + np.exp(-0.5 * np.log(0.7 / 0.3)))
    assert served[0, 0] == pytest.approx(expected_top) and served[0, 1] == pytest.approx(1 - expected_top)
    assert served[1].argmax() == 1 and served[2, 0] > served[2, 1]
    assert calibration.Calibrator(2.0, 0.5, 0.1)(np.zeros((0, 10), np.float32)).shape == (0, 10)


def test_top_label_scaling_is_left_out_when_validation_cannot_support_it():
    rng = np.random.default_rng(3)
    probabilities = calibration.softmax(rng.normal(0, 3, (2000, 10)))
    predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)

    def wrong_where(mask):
        return np.where(mask, (predicted + 1) % 10, predicted)

    few = np.zeros(2000, bool)
    few[:49] = True  # 49 mistakes: fewer than 50
    assert calibration.fit_top_label(probabilities, wrong_where(few))[:2] == (1.0, 0.0)
    assert "fewer than 50" in calibration.fit_top_label(probabilities, wrong_where(few))[2]
    # right and wrong separate perfectly on the confidence: the slope runs off to infinity
    separable = confidence < np.quantile(confidence, 0.2)
    slope, intercept, why = calibration.fit_top_label(probabilities, wrong_where(separable))
    assert (slope, intercept) == (1.0, 0.0) and "outside what is served" in why
    # mistakes that do not depend on the confidence: a flat map, no calibration of the confidence at all
    unrelated = rng.random(2000) < 0.2
    assert calibration.fit_top_label(probabilities, wrong_where(unrelated))[:2] == (1.0, 0.0)
    # mistakes that follow the confidence, as a model's do: a fit in use
    related = rng.random(2000) < 1 / (1 + np.exp(2 * np.log(confidence / (1 - confidence + 1e-12)) - 1))
    slope, intercept, why = calibration.fit_top_label(probabilities, wrong_where(related))
    assert why == "" and slope == pytest.approx(2.0, abs=0.6) and intercept == pytest.approx(-1.0, abs=0.6)
    metrics, _ = calibration.calibrate(probabilities, wrong_where(few), probabilities, wrong_where(few))
    assert metrics["top_label"]["method"] == "none" and "fewer than 50" in metrics["top_label"]["why"]
    # a model evaluated before top-label scaling existed: its temperature alone; values that are not
    # finite numbers change nothing
    old = calibration.Calibrator.from_metrics({"temperature": 2.0})
    np.testing.assert_allclose(old(probabilities), calibration.scale(probabilities, 2.0))
    assert calibration.Calibrator.from_metrics(
        {"temperature": None, "top_label": {"slope": float("nan"), "intercept": None}}) == calibration.Calibrator()


def test_an_evaluation_that_changes_serving_calibration_says_so(caplog):
    from types import SimpleNamespace

    metadata = {"model_id": "m1", "metrics": {"calibration": {"temperature": 0.5}}}  # evaluated before
    same = SimpleNamespace(calibration={"temperature": 0.5, "top_label": {"method": "none", "slope": 1.0,
                                                                          "intercept": 0.0, "why": "few"}})
    with caplog.at_level("WARNING", logger="tasks.evaluate.evaluate"):
        evaluate._warn_if_serving_calibration_changes(metadata, same)
        assert not caplog.records
        evaluate._warn_if_serving_calibration_changes(metadata, SimpleNamespace(calibration={
            "temperature": 0.5, "top_label": {"method": "platt", "slope": 0.8, "intercept": 0.1}}))
    [record] = caplog.records
    assert "m1: serving now calibrates its confidences differently" in record.getMessage()
    assert "results it stored before keep their earlier confidences" in record.getMessage()


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    # bins: 0.9 right (gap 0.1), 0.6 wrong (gap 0.6), 1.0 right (gap 0): (0.1 + 0.6 + 0) / 3
    assert calibration.expected_calibration_error(probabilities, labels, bins=15) == pytest.approx(0.7 / 3)
    with pytest.raises(ValueError, match="empty"):
        calibration.fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


class ColourModel:
    """A stand-in model: the class whose index is nearest the image's mean red value / 25."""

    def predict_on_batch(self, images):
        red = np.asarray(images)[..., 0].mean(axis=(1, 2))
        logits = -np.abs(np.arange(10)[None, :] * 25.0 - red[:, None]) / 5
        return calibration.softmax(logits).astype("float32")


def colour_dataset(count: int = 60) -> Dataset:
    rng = np.random.default_rng(2)
    labels = np.arange(count) % 10
    images = np.clip(labels[:, None, None, None] * 25 + rng.normal(0, 10, (count, 32, 32, 3)), 0, 255)
    arrays = {"x_test": images.astype(np.uint8), "y_test": labels, "x_val": images[:20].astype(np.uint8),
              "y_val": labels[:20]}
    manifest = {"name": "colours", "version": "v1", "class_names": [f"c{index}" for index in range(10)]}
    return Dataset(manifest, arrays)


def test_evaluate_model_measures_and_writes_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    history = {"accuracy": [0.3, 0.5], "val_accuracy": [0.4, 0.6], "loss": [2.0, 1.5], "val_loss": [1.8, 1.4]}
    metrics = evaluate.evaluate_model(ColourModel(), colour_dataset(), tta="flip", history=history,
                                      output_dir=tmp_path / "reports", title="colours")
    assert 0 < metrics.test_top1 <= metrics.test_top5 <= 1
    assert metrics.test_top1_tta == pytest.approx(metrics.test_top1)  # mirror-symmetric stand-in
    assert set(metrics.per_class_accuracy) == {f"c{index}" for index in range(10)}
    assert metrics.calibration["temperature"] > 0 and metrics.dataset_version == "v1"
    written = {path.name for path in (tmp_path / "reports").iterdir()}
    assert written == {"report.md", "metrics.json", "reliability.json", "confusion_matrix.csv",
                       "confusion_matrix.png", "learning_curves.png", "reliability.png", "ood_scores.png"}
    ood = metrics.ood
    assert set(ood["sets"]) == {"noise", "flat", "blurred", "shuffled"}  # no outlier classes given
    assert 0 < ood["threshold"] <= 1 and ood["fitted_on"] == "validation split"
    assert all(0 <= entry["msp"]["auroc"] <= 1 for entry in ood["sets"].values())
    assert json.loads((tmp_path / "reports" / "metrics.json").read_text())["test_images"] == 60
    matrix = np.loadtxt(tmp_path / "reports" / "confusion_matrix.csv", delimiter=",", skiprows=1)
    assert matrix.sum() == 60 and np.trace(matrix) / 60 == pytest.approx(metrics.test_top1)
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "| top-1 with flip TTA |" in report and "## Out-of-distribution detection" in report


def test_the_evaluate_command_on_a_trained_model(tiny_cifar, tiny_cifar_tree, hashtagger_home, capsys):
    from tasks.registry import artifact
    from tasks.data import prepare
    from tasks.train import train

    metadata = train.train(train.TrainConfig(
        architecture="shallow", recipe="seed", epochs=1, train_limit=64, recipe_overrides=(("batch_size", 32),),
        reports=False, verbose=0))
    folder = metadata["path"]

    assert cli.main(["evaluate", folder]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "temperature" in out
    reports = artifact.read_metadata(folder)
    assert (hashtagger_home / "models" / metadata["model_id"] / "reports" / "reliability.png").exists()
    assert reports["metrics"]["calibration"]["ece_bins"] == 15

    # another version of the data (its validation split carved differently): reports go to their own
    # folder, the metrics under `evaluations`, and the registry can compare models on it
    other = prepare.prepare("cifar10", str(tiny_cifar_tree), config=prepare.PrepareConfig(validation_size=20, seed=1),
                            progress=False)
    assert other.version != tiny_cifar.version
    assert cli.main(["evaluate", folder, "--dataset-version", other.version, "--tta"]) == 0
    updated = artifact.read_metadata(folder)
    assert updated["metrics"] == reports["metrics"]
    assert "test_top1_tta" in updated["evaluations"][other.version]
    assert (hashtagger_home / "models" / metadata["model_id"] / "reports" / other.version / "report.md").exists()
    engine = db.engine(Settings.from_env().database_url)
    with engine.connect() as connection:
        versions = {version for (version,) in connection.execute(
            sa.text("SELECT dataset_version FROM model_evaluations WHERE model_id = :m"),
            {"m": metadata["model_id"]})}
    assert versions == {tiny_cifar.version, other.version}

    # --output leaves the artifact alone
    assert cli.main(["evaluate", folder, "--output", str(hashtagger_home / "elsewhere"), "--no-figures",
                     "--no-record"]) == 0
    assert (hashtagger_home / "elsewhere" / "report.md").exists()
    assert artifact.read_metadata(folder) == updated

    assert cli.main(["evaluate", str(hashtagger_home / "nothing-here")]) == 2  # a usage error
    assert "not a hashtagger model" in capsys.readouterr().err


def test_a_model_from_elsewhere_is_evaluated_on_the_latest_local_version(tiny_cifar, hashtagger_home):
    """A bundled or copied model names a dataset version this machine never prepared."""
    from tasks.registry import artifact
    from tasks.train import train

    metadata = train.train(train.TrainConfig(
        architecture="shallow", recipe="seed", epochs=1, train_limit=32, recipe_overrides=(("batch_size", 32),),
        reports=False, verbose=0))
    artifact.write_metadata(Path(metadata["path"]), {**metadata, "dataset_version": "made-elsewhere"})
    metrics = evaluate.evaluate_artifact(metadata["path"], config=evaluate.EvaluateConfig(figures=False))
    assert metrics.dataset_version == tiny_cifar.version
    assert tiny_cifar.version in artifact.read_metadata(metadata["path"])["evaluations"]


def test_ood_figures_by_hand():
    from tasks.evaluate import ood

    known, unknown = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.65, 0.5, 0.4, 0.3])
    # 16 (known, unknown) pairs, 15 ranked right (0.6 < 0.65 is the one wrong): AUROC 15/16
    assert ood.auroc(known, unknown) == pytest.approx(15 / 16)
    # keeping 3 of 4 known images puts the threshold at 0.7: no unknown image reaches it
    assert ood.threshold_for(known, 0.75) == pytest.approx(0.7)
    assert ood.fpr_at_tpr(known, unknown, 0.75) == 0.0 and ood.fpr_at_tpr(known, unknown, 1.0) == 0.25
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(ood.energy(logits), np.log(np.exp(logits).sum(axis=1)))


def test_synthetic_outliers_show_nothing_of_the_source_images():
    from tasks.evaluate import ood

    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    sets = ood.synthetic_outliers(images, ood.OodConfig(synthetic_images=20))
    assert set(sets) == {"noise", "flat", "blurred", "shuffled"}
    assert all(batch.shape == (20, 32, 32, 3) and batch.dtype == np.uint8 for batch in sets.values())
    assert all(len(np.unique(image.reshape(-1, 3), axis=0)) == 1 for image in sets["flat"])
    assert sets["blurred"].std() < images[:20].std() / 3  # 9x9 box blur of noise: mostly the mean
    # shuffled patches keep every pixel value, in another place
    np.testing.assert_array_equal(np.sort(sets["shuffled"].reshape(20, -1), axis=1),
                                  np.sort(images[:20].reshape(20, -1), axis=1))


def test_a_model_outside_hashtagger_home_is_left_untouched(tiny_cifar, hashtagger_home, tmp_path, capsys):  # noqa: F811
    """Evaluating the bundled model (or any folder outside $HASHTAGGER_HOME: a checkout, an installed
    package) writes its reports under $HASHTAGGER_HOME/evaluations/<model_id>/, never beside the model."""
    import shutil

    from tasks.train import train

    metadata = train.train(train.TrainConfig(
        architecture="shallow", recipe="seed", epochs=1, train_limit=32, recipe_overrides=(("batch_size", 32),),
        reports=False, verbose=0))
    elsewhere = tmp_path / "checkout" / "models" / "bundled" / "cifar10"
    shutil.copytree(metadata["path"], elsewhere)
    before = {path: path.read_bytes() for path in elsewhere.rglob("*") if path.is_file()}

    metrics = evaluate.evaluate_artifact(elsewhere, config=evaluate.EvaluateConfig(figures=False))
    assert Path(metrics.reports_dir) == hashtagger_home / "evaluations" / metadata["model_id"]
    assert (Path(metrics.reports_dir) / "report.md").exists()
    assert {path: path.read_bytes() for path in elsewhere.rglob("*") if path.is_file()} == before

    # the same through the command line, as JSON for scripts
    assert cli.main(["evaluate", str(elsewhere), "--json", "--no-figures", "--no-record"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model_id"] == metadata["model_id"] and document["reports_dir"] == metrics.reports_dir


def test_a_cifar100_model_is_measured_on_the_cifar10_classes_outlier_exposure_never_saw(tiny_cifar):
    """CIFAR-10's classes split in two halves: the even ones are a CIFAR-100 model's exposure outliers,
    the odd ones are what its OOD figures are measured on; the halves never meet."""
    import numpy as np

    from tasks.config import Settings
    from tasks.data import outliers
    from tasks.data.prepare import CIFAR10_CLASSES, cifar100_labels

    assert outliers.half(tiny_cifar, "exposure") == [0, 2, 4, 6, 8]
    assert outliers.half(tiny_cifar, "held_out") == [1, 3, 5, 7, 9]
    fine_names = cifar100_labels()["fine_names"]
    assert outliers.outlier_dataset_for(fine_names) == "cifar10"
    assert outliers.outlier_dataset_for(list(CIFAR10_CLASSES)) == "cifar100"
    assert outliers.outlier_dataset_for(["cats", "dogs"]) is None

    sets = outliers.held_out_sets("cifar100", fine_names, Settings.from_env())
    held_out = sets["cifar10_held_out"]
    test_labels = np.asarray(tiny_cifar["y_test"])
    assert len(held_out) == int(np.isin(test_labels, [1, 3, 5, 7, 9]).sum()) > 0
    trained_on = outliers.images(tiny_cifar, "exposure", "train")
    # no held-out image is an exposure image (each tiny class has its own mean colour)
    assert not any((image == trained_on).all(axis=(1, 2, 3)).any() for image in held_out)
