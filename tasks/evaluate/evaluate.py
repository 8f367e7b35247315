"""Evaluate stage: a model on a dataset version's test split -> metrics and a report folder.

Measures top-1 and top-5 (without and, optionally, with flip test-time augmentation), per-class
accuracy and calibration (temperature and top-label Platt scaling fitted on the validation split, ECE
before, after the temperature and after top-label scaling), and writes `report.md`, the confusion matrix, learning
curves and reliability diagrams under `reports/`.
Serving runs without TTA, so `test_top1` (what the registry compares) is always the plain figure.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from tasks.registry import artifact
from tasks.evaluate import calibration, ood, reviewed
from tasks.evaluate.result import EvaluationResult
from tasks.evaluate import figures as reports
from tasks.config import Settings
from tasks.data.dataset import Dataset, DatasetNotFound, load

log = logging.getLogger(__name__)

EVAL_BATCH = 512


class EvaluationError(ValueError):
    """The model and the dataset do not fit together; the message says why."""


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    tta: str = "none"  # also measure with test-time augmentation: flip (2 passes) or flip_translate (6)
    ece_bins: int = 15  # equal-width confidence bins for ECE and the reliability diagram
    figures: bool = True  # PNGs (need matplotlib); metrics and report.md are written regardless


TTA_MODES = ("none", "flip", "flip_translate")


def _shifted(batch: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The batch moved by (rows, cols) pixels, reflected at the borders (airbench's TTA crops)."""
    pad = max(abs(rows), abs(cols))
    padded = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    height, width = batch.shape[1:3]
    return padded[:, pad - rows:pad - rows + height, pad - cols:pad - cols + width]


def tta_probabilities(predict, batch: np.ndarray, tta: str = "none") -> np.ndarray:
    """`predict` (float32 (N, H, W, C) -> probabilities) under test-time augmentation.

    flip: mean of the image and its mirror. flip_translate: airbench's level 2, half the flip mean
    plus a quarter each of the flip means of the image shifted one pixel down-right and up-left.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_MODES)}")
    probs = np.asarray(predict(batch))
    if tta == "none":
        return probs

    def flip_mean(images):
        return (np.asarray(predict(images)) + np.asarray(predict(images[:, :, ::-1, :]))) / 2

    mirrored = (probs + np.asarray(predict(batch[:, :, ::-1, :]))) / 2
    if tta == "flip":
        return mirrored
    return 0.5 * mirrored + 0.25 * flip_mean(_shifted(batch, 1, 1)) + 0.25 * flip_mean(_shifted(batch, -1, -1))


def predict_probabilities(model, images: np.ndarray, tta: str = "none") -> np.ndarray:
    """Class probabilities (N, classes) for uint8 images (N, H, W, C), in batches, under `tta`."""
    outputs = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = np.asarray(images[start:start + EVAL_BATCH], dtype="float32")
        outputs.append(tta_probabilities(model.predict_on_batch, batch, tta))
    return np.concatenate(outputs)


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def per_class_accuracy(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    labels = np.asarray(labels)
    correct = probabilities.argmax(axis=1) == labels
    return {name: float(correct[labels == index].mean()) if np.any(labels == index) else None
            for index, name in enumerate(class_names)}  # None: no test image of that class


def evaluate_model(model, dataset: Dataset, tta: str = "none", history: dict | None = None,
                   output_dir: Path | None = None, title: str = "",
                   config: EvaluateConfig = EvaluateConfig(),
                   outlier_sets: dict[str, np.ndarray] | None = None) -> EvaluationResult:
    """Metrics of `model` on `dataset`'s test split; with `output_dir`, the report files too.

    `outlier_sets` (name -> uint8 images of classes the model does not know) are measured for OOD
    detection beside synthetic outliers (tasks/evaluate/ood.py); the result is the record's `ood`.
    """
    class_names = dataset.class_names
    y_test, y_val = np.asarray(dataset["y_test"]), np.asarray(dataset["y_val"])
    test_probs = predict_probabilities(model, dataset["x_test"])
    val_probs = predict_probabilities(model, dataset["x_val"])
    top5 = min(5, len(class_names))
    with_tta = {}
    if tta != "none":
        tta_probs = predict_probabilities(model, dataset["x_test"], tta)
        with_tta = {"test_top1_tta": top_k_accuracy(tta_probs, y_test, 1),
                    "test_top5_tta": top_k_accuracy(tta_probs, y_test, top5)}
    calibration_metrics, tables = calibration.calibrate(
        val_probs, y_val, test_probs, y_test, calibration.CalibrationConfig(ece_bins=config.ece_bins))
    calibrator = calibration.Calibrator.from_metrics(calibration_metrics)
    ood_metrics, ood_scores = out_of_distribution(model, dataset, val_probs, test_probs, calibrator, outlier_sets)
    slice_metrics = None
    if "x_reviewed" in dataset.arrays:  # a dataset prepared from reviews: the user's own images too
        slice_probs = predict_probabilities(model, dataset["x_reviewed"]) if len(dataset["y_reviewed"]) \
            else np.zeros((0, len(class_names)))
        slice_metrics = reviewed.slice_metrics(
            dataset.version, slice_probs, dataset["y_reviewed"], calibrator, ood_metrics["threshold"]).as_dict()
    result = EvaluationResult(
        dataset=dataset.name, family=None if dataset.family == dataset.name else dataset.family,
        dataset_version=dataset.version, test_top1=top_k_accuracy(test_probs, y_test, 1),
        test_top5=top_k_accuracy(test_probs, y_test, top5), test_images=int(len(y_test)), tta=tta, **with_tta,
        per_class_accuracy=per_class_accuracy(test_probs, y_test, class_names), calibration=calibration_metrics,
        ood=ood_metrics, reviewed_slice=slice_metrics)
    if output_dir is not None:
        write_report(Path(output_dir), result, class_names, test_probs, y_test, history, tables,
                     title or dataset.name, config, ood_scores)
    return result


def logits_model(model):
    """A model that gives the logits (the input of the final softmax), or None when the softmax is
    fused into a Dense layer (shallow, resnet and vgg16 end in Dense(activation="softmax"))."""
    import keras

    try:
        final = model.get_layer("probs")
    except (ValueError, AttributeError):  # no such layer, or not a Keras model
        return None
    if not isinstance(final, keras.layers.Activation):
        return None
    return keras.Model(model.inputs, final.input)


def out_of_distribution(model, dataset: Dataset, val_probs, test_probs, calibrator: calibration.Calibrator,
                        outlier_sets: dict[str, np.ndarray] | None,
                        config: ood.OodConfig = ood.OodConfig()) -> tuple[dict, dict[str, np.ndarray]]:
    """OOD figures (MSP as served, after `calibrator`, and energy where the logits are at hand) of the test
    split against each outlier set, with the serving threshold chosen on validation; and the scores, for
    plotting."""
    sets = {**(outlier_sets or {}), **ood.synthetic_outliers(np.asarray(dataset["x_test"]), config)}
    threshold = ood.threshold_for(ood.msp(val_probs, calibrator), config.target_tpr)
    test_msp = ood.msp(test_probs, calibrator)
    kept = test_msp >= threshold
    correct = test_probs.argmax(axis=1) == np.asarray(dataset["y_test"])
    to_logits = logits_model(model)
    test_energy = ood.energy(predict_probabilities(to_logits, dataset["x_test"])) if to_logits else None
    result = {"score": "msp", "temperature": calibrator.temperature,
              "top_label": {"slope": calibrator.slope, "intercept": calibrator.intercept},
              "target_tpr": config.target_tpr,
              "threshold": threshold, "fitted_on": "validation split", "test_kept": float(kept.mean()),
              "test_top1_kept": float(correct[kept].mean()) if kept.any() else None, "sets": {}}
    scores = {f"{dataset.name} test": test_msp}
    for name, images in sets.items():
        out_msp = ood.msp(predict_probabilities(model, images), calibrator)
        entry = {"msp": ood.separation(test_msp, out_msp, threshold)}
        if to_logits is not None:
            out_energy = ood.energy(predict_probabilities(to_logits, images))
            entry["energy"] = {"auroc": ood.auroc(test_energy, out_energy),
                               "fpr_at_95_tpr": ood.fpr_at_tpr(test_energy, out_energy)}
        result["sets"][name] = entry
        scores[name] = out_msp
    return result, scores


def write_report(output_dir: Path, result: EvaluationResult, class_names: list[str], test_probs: np.ndarray,
                 y_test: np.ndarray, history: dict | None, tables: dict, title: str,
                 config: EvaluateConfig, ood_scores: dict[str, np.ndarray] | None = None) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = result.as_dict()  # the metrics.json document, which report.md is written from too
    matrix = reports.confusion_matrix(y_test, test_probs.argmax(axis=1), len(class_names))
    np.savetxt(output_dir / "confusion_matrix.csv", matrix, fmt="%d", delimiter=",",
               header=",".join(class_names), comments="")
    figures = []
    if config.figures:
        figures = reports.write_figures(output_dir, title, class_names, matrix, history,
                                        metrics["calibration"], tables, ood_scores, metrics.get("ood"))
    (output_dir / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=1))
    (output_dir / "reliability.json").write_text(json.dumps(_json_safe(tables), indent=1))
    reports.write_summary(metrics, class_names, output_dir / reports.SUMMARY_MD, title, figures)


def _json_safe(value):
    """NaN (an empty bin or class) -> None, so the files are strict JSON."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def evaluate_artifact(path: str | Path, dataset_version: str | None = None, tta: str = "none",
                      settings: Settings | None = None, output_dir: Path | None = None,
                      config: EvaluateConfig = EvaluateConfig()) -> EvaluationResult:
    """Evaluate a saved model; writes its reports and records the metrics in its metadata.

    Default dataset version: the model's own when prepared here, else the latest one (the test split
    of CIFAR is fixed, so that is still a fair test). For a model under $HASHTAGGER_HOME, on its own
    version the metrics replace `metrics` in metadata.json and the reports go to `reports/`; on another
    they go under `evaluations` and `reports/<version>/`. Any other model folder (the bundled models)
    is left untouched: the reports go to $HASHTAGGER_HOME/evaluations/<model_id>/ (default_output_dir).
    With `output_dir`, only that folder is written.
    Returns the result, naming `model_id` and `reports_dir`.
    """
    settings = settings or Settings.from_env()
    model, metadata = artifact.load_keras(path)
    dataset = _dataset_for(metadata, dataset_version, settings)
    if list(dataset.class_names) != list(metadata["class_names"]):
        raise EvaluationError(f"{metadata['model_id']} predicts {len(metadata['class_names'])} classes "
                              f"({', '.join(metadata['class_names'][:3])}, ...) that are not the classes of "
                              f"{dataset.name} version {dataset.version}")
    own_version = dataset.version == metadata.get("dataset_version")
    folder = Path(metadata["path"])
    if output_dir is None:
        output_dir = default_output_dir(folder, metadata["model_id"], dataset.version, own_version, settings)
    title = f"{metadata['model_id']} on {dataset.name} {dataset.version}"
    from tasks.data import outliers

    result = evaluate_model(model, dataset, tta, metadata.get("history") if own_version else None,
                            Path(output_dir), title, config,
                            outliers.held_out_sets(dataset.name, dataset.class_names, settings))
    # the TTA inside the model these figures are of
    result = dataclasses.replace(result, serving_tta=metadata.get("serving_tta") or "none")
    if Path(output_dir).resolve().is_relative_to(folder.resolve()):
        if own_version:
            _warn_if_serving_calibration_changes(metadata, result)
            metadata["metrics"] = result.as_dict()
        else:
            metadata.setdefault("evaluations", {})[dataset.version] = result.as_dict()
        artifact.write_metadata(folder, metadata)
    return result.identified(model_id=metadata["model_id"], reports_dir=str(output_dir))


def _warn_if_serving_calibration_changes(metadata: dict, result: EvaluationResult) -> None:
    """A warning when this evaluation changes what serving applies to the model's outputs (a model first
    evaluated before top-label scaling existed, now fitted with it): the results it already stored keep
    the confidences of the old calibration, which a `hashtagger tag --min-confidence` re-decision would
    compare against the same threshold as the new ones."""
    before = (metadata.get("metrics") or {}).get("calibration")
    if not before:
        return
    old, new = (calibration.Calibrator.from_metrics(values) for values in (before, result.calibration))
    if not np.allclose([old.temperature, old.slope, old.intercept], [new.temperature, new.slope, new.intercept],
                       rtol=0, atol=1e-6):
        log.warning("%s: serving now calibrates its confidences differently (temperature %.3f, top-label slope "
                    "%.3f, intercept %.3f; was %.3f, %.3f, %.3f); results it stored before keep their earlier "
                    "confidences", metadata["model_id"], new.temperature, new.slope, new.intercept,
                    old.temperature, old.slope, old.intercept)


def default_output_dir(folder: Path, model_id: str, version: str, own_version: bool, settings: Settings) -> Path:
    """Where an evaluation's reports go: beside a model trained here (under $HASHTAGGER_HOME), else under
    $HASHTAGGER_HOME/evaluations/<model_id>/, so that evaluating the bundled model (or one inside an
    installed package or a checkout) never rewrites those files; a version other than the model's own
    gets a subfolder."""
    if folder.resolve().is_relative_to(settings.home.resolve()):
        base = folder / artifact.REPORTS_DIR
    else:
        base = settings.home / "evaluations" / model_id
    return base if own_version else base / version


def recipe_tta(metadata: dict) -> str:
    """The test-time augmentation a saved model's recipe evaluates with (none, flip, flip_translate)."""
    if metadata.get("serving_tta"):  # the model averages over flips itself: more passes would add nothing
        return "none"
    recipe = metadata.get("recipe") or {}
    # models saved before `tta` existed state only `flip_tta`
    return recipe.get("tta") or ("flip" if recipe.get("flip_tta") else "none")


def _dataset_for(metadata: dict, version: str | None, settings: Settings) -> Dataset:
    if version is not None:
        return load(metadata["dataset"], version, settings)
    try:
        return load(metadata["dataset"], metadata.get("dataset_version"), settings)
    except DatasetNotFound:
        dataset = load(metadata["dataset"], None, settings)
        log.warning("%s was trained on %s version %s, which is not prepared here; evaluating on the latest "
                    "version %s", metadata["model_id"], metadata["dataset"], metadata.get("dataset_version"),
                    dataset.version)
        return dataset
