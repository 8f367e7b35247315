"""Calibration methods side by side: which map makes a model's confidence read as a probability?

    .venv/bin/python benchmarks/calibration.py                       # the bundled CIFAR-10 and CIFAR-100 models
    .venv/bin/python benchmarks/calibration.py --model ~/.hashtagger/models/ID --model models/bundled/cifar10

For each model (served through ONNX Runtime when it has a model.onnx, as tagging serves it), every method
is fitted on the validation split and measured on the test split of its dataset's JPEG re-encoding:

- `none`: the softmax as the network gives it;
- `temperature`: temperature scaling (Guo et al., ICML 2017), the baseline: what serving applied alone
  until top-label scaling was added;
- `temperature + top-label Platt`: then Platt scaling of the top-label confidence (what serving applies
  now, tasks/evaluate/calibration.py);
- `temperature + top-label isotonic`: then isotonic regression of "the top label is right" on the
  confidence (scikit-learn; Zadrozny & Elkan 2002), a step function;
- `temperature + top-label beta`: then beta calibration's three-parameter map (Kull et al., AISTATS 2017),
  a logistic regression on log(c) and -log(1 - c) (scikit-learn; unconstrained, so not monotone by
  construction as Kull et al.'s a, b >= 0 version is).

One split each, no interval: ECE with 15 bins over 10,000 test images moves by about 0.002 with the sample,
so differences smaller than that between methods are not a ranking.

Columns: ECE (15 equal-width bins, the figure `hashtagger evaluate` reports; issue 20's goal is <= 0.02),
the negative log-likelihood of the top label's correctness (binary NLL: the top-label maps leave the other
classes' order alone, so the multi-class NLL is not theirs to compare), and the number of distinct
confidences on the test split (a step map gives few, which makes a confidence threshold coarse).
Needs the datasets prepared (`hashtagger data prepare cifar10 ...`). Writes reports/calibration.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import per_model  # noqa: E402  (benchmarks/, beside this script)

FLOOR = 1e-7


def _binary_nll(confidence: np.ndarray, correct: np.ndarray) -> float:
    confidence = np.clip(confidence, FLOOR, 1 - FLOOR)
    return float(-np.mean(np.where(correct, np.log(confidence), np.log1p(-confidence))))


def _beta_features(confidence: np.ndarray) -> np.ndarray:
    confidence = np.clip(confidence, FLOOR, 1 - FLOOR)
    return np.stack([np.log(confidence), -np.log1p(-confidence)], axis=1)


def top_label_methods(val_probabilities: np.ndarray, val_labels: np.ndarray) -> tuple[dict, dict]:
    """({name: what was fitted}, {name: function mapping temperature-scaled (N, classes) probabilities to
    calibrated ones}), each fitted on the validation split's; the top-label maps replace the top confidence
    the way serving does (tasks/evaluate/calibration.py with_top_confidence)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    from tasks.evaluate import calibration

    confidence = val_probabilities.max(axis=1)
    correct = val_probabilities.argmax(axis=1) == val_labels
    slope, intercept, left_out = calibration.fit_top_label(val_probabilities, val_labels)  # as evaluate fits it
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(confidence, correct)
    beta = LogisticRegression(C=np.inf).fit(_beta_features(confidence), correct)

    def mapped(top_label_map):
        return lambda probabilities: calibration.with_top_confidence(
            probabilities, top_label_map(probabilities.max(axis=1)))

    fitted = {"temperature + top-label Platt": f"left out: {left_out}" if left_out
              else f"slope {slope:.3f}, intercept {intercept:.3f}",
              "temperature + top-label isotonic": f"{len(isotonic.X_thresholds_)} steps",
              "temperature + top-label beta": "a {:.3f}, b {:.3f}, c {:.3f}".format(*beta.coef_[0], beta.intercept_[0])}
    return fitted, {
        "temperature": lambda probabilities: probabilities,
        "temperature + top-label Platt": lambda probabilities: calibration.top_label_scale(
            probabilities, slope, intercept),
        "temperature + top-label isotonic": mapped(isotonic.predict),
        "temperature + top-label beta": mapped(lambda c: beta.predict_proba(_beta_features(c))[:, 1]),
    }


def study(model_path: str) -> dict:
    """Every method's test ECE, binary NLL and distinct confidences for one model, with its test top-1."""
    from tasks.config import Settings
    from tasks.data import dataset as datasets
    from tasks.evaluate import calibration
    from tasks.tag import predictor

    started = time.perf_counter()
    model = predictor.load(model_path)
    data = datasets.load(model.dataset, model.metadata.dataset_version, Settings.from_env())
    labels = {split: np.asarray(data[f"y_{split}"]) for split in ("val", "test")}
    raw = {split: np.asarray(model.uncalibrated(data[f"x_{split}"]), dtype=np.float64) for split in labels}
    temperature = calibration.fit_temperature(raw["val"], labels["val"])
    scaled = {split: calibration.scale(raw[split], temperature) for split in raw}
    correct = scaled["test"].argmax(axis=1) == labels["test"]
    served = {"none": raw["test"]}
    fitted, methods = top_label_methods(scaled["val"], labels["val"])
    for name, method in methods.items():
        served[name] = method(scaled["test"])
    bins = calibration.CalibrationConfig().ece_bins
    rows = []
    for name, probabilities in served.items():
        # no label changes, in float32 as serving returns them too
        assert (probabilities.astype(np.float32).argmax(axis=1) == raw["test"].argmax(axis=1)).all(), name
        confidence = probabilities.max(axis=1)
        rows.append({"method": name, "ece": calibration.expected_calibration_error(probabilities, labels["test"], bins),
                     "nll": _binary_nll(confidence, correct), "distinct": int(len(np.unique(confidence))),
                     "fitted": fitted.get(name, f"T = {temperature:.3f}" if name == "temperature" else "")})
    return {"model_id": model.model_id, "dataset": model.dataset, "runtime": model.runtime,
            "test_top1": float(correct.mean()), "temperature": temperature,
            "images": {split: int(len(labels[split])) for split in labels}, "rows": rows,
            "seconds": time.perf_counter() - started}


def table(results: list[dict], total_seconds: float) -> list[str]:
    lines = [
        "# Calibration methods",
        "",
        per_model.machine_line("calibration.py", total_seconds) + " Every method fitted on the validation "
        "split and measured on the test split, both JPEG re-encodings; ECE with 15 equal-width bins on the top label (issue 20's goal: "
        "<= 0.02); NLL of whether the top label is right. The baseline is `temperature`.",
        "",
    ]
    for result in results:
        baseline = next(row for row in result["rows"] if row["method"] == "temperature")
        lines += [f"## `{result['model_id']}` ({result['dataset']}, {result['runtime']})", "",
                  f"Test top-1 {result['test_top1']:.2%} on the JPEG test set; temperature "
                  f"{result['temperature']:.3f}; {result['images']['val']:,} validation and "
                  f"{result['images']['test']:,} test images.", "",
                  "| method | fitted on validation | ECE | ECE against the temperature's | NLL (top label right) | "
                  "distinct test confidences |",
                  "|---|---|---:|---:|---:|---:|"]
        for row in result["rows"]:
            lines.append(f"| {row['method']} | {row['fitted']} | {row['ece']:.4f} | "
                         f"{row['ece'] / baseline['ece']:.2f}x | {row['nll']:.4f} | {row['distinct']:,} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    return per_model.run(argv, __doc__.split("\n\n")[0], "a model artifact folder",
                         [str(REPO / "models" / "bundled" / name) for name in ("cifar10", "cifar100")],
                         REPO / "reports" / "calibration.md", study, table)


if __name__ == "__main__":
    sys.exit(main())
