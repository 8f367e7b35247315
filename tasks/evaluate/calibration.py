"""Calibration: temperature scaling, top-label Platt scaling and expected calibration error, in numpy.

What serving applies to a model's softmax output (`Calibrator`), both stages fitted on the validation split:

1. Temperature scaling (Guo et al., ICML 2017). The models end in a softmax, so their logits are recovered
   as log(probabilities), which softmax maps back to the same probabilities; dividing them by one scalar T
   fitted to minimise the negative log-likelihood sharpens or softens the whole vector.
2. Top-label Platt scaling (Platt 1999, applied to the top-label confidence as in Gupta & Ramdas, "Top-label
   calibration and multiclass-to-binary reductions", ICLR 2022): the largest probability c becomes
   sigmoid(slope * logit(c) + intercept), a logistic regression (scikit-learn) of "the top label is right" on
   logit(c); the other classes share the rest in their old proportions. One temperature cannot fix a
   miscalibration that changes sign along the confidence axis, the shape label smoothing leaves (the
   bundled CIFAR-10 model after temperature: under-confident below 0.5, over-confident from 0.75 to 0.93);
   this stage can. It never changes which class wins, and it is increasing in c, so images rank by
   confidence as before (abstention decisions and OOD AUROC are those of the temperature-scaled
   confidence) except where a fitted map would push a top class down to its runner-up's share (slope <= 1
   with intercept >= 0 never does; where one does, the top class stays just above the runner-up,
   with_top_confidence).
"""

from __future__ import annotations

import dataclasses

import numpy as np

PROBABILITY_FLOOR = 1e-12  # log(0) guard: softmax outputs underflow to 0 in float32
CONFIDENCE_CEILING = 1 - 1e-7  # logit(1) guard: a float32 softmax can round its top entry to exactly 1
TIE_MARGIN = 1e-6  # with_top_confidence keeps the top class this much (relative) above the runner-up


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    ece_bins: int = 15  # equal-width confidence bins, as in Guo et al.
    log_temperature_range: tuple[float, float] = (-3.0, 3.0)  # T between 0.05 and 20
    grid_points: int = 121  # coarse grid on log T, then golden-section refinement
    tolerance: float = 1e-5  # on log T
    # top-label Platt scaling is fitted only with at least this many right and this many wrong top labels
    # on validation; with fewer, the confidences stay as the temperature left them
    top_label_min_each: int = 20


def logits_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities after dividing the logits by `temperature`."""
    return softmax(logits_from_probabilities(probabilities) / temperature)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(picked, PROBABILITY_FLOOR))))


def _nll_at(logits: np.ndarray, labels: np.ndarray, log_temperature: float) -> float:
    scaled = logits / np.exp(log_temperature)
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray,
                    config: CalibrationConfig = CalibrationConfig()) -> float:
    """The T > 0 minimising the NLL of `labels` under softmax(log(probabilities) / T).

    The NLL is convex in 1/T, so it has one minimum along log T: a grid finds its bracket and a
    golden-section search narrows it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on an empty split")
    logits = logits_from_probabilities(probabilities)
    low, high = config.log_temperature_range
    grid = np.linspace(low, high, config.grid_points)
    losses = [_nll_at(logits, labels, value) for value in grid]
    best = int(np.argmin(losses))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    while right - left > config.tolerance:
        inner_left, inner_right = right - ratio * (right - left), left + ratio * (right - left)
        if _nll_at(logits, labels, inner_left) <= _nll_at(logits, labels, inner_right):
            right = inner_right
        else:
            left = inner_left
    return float(np.exp((left + right) / 2))


def _logit(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(confidence, dtype=np.float64), PROBABILITY_FLOOR, CONFIDENCE_CEILING)
    return np.log(clipped) - np.log1p(-clipped)


def fit_top_label(probabilities: np.ndarray, labels: np.ndarray,
                  config: CalibrationConfig = CalibrationConfig()) -> tuple[float, float]:
    """(slope, intercept) of top-label Platt scaling for (N, classes) `probabilities` (already temperature
    scaled) with true `labels` (N,): an unpenalised logistic regression of whether the top label is right on
    the logit of its probability. (1.0, 0.0), which leaves confidences unchanged, when either outcome has
    fewer than config.top_label_min_each images or the fit is not increasing in the confidence."""
    from sklearn.linear_model import LogisticRegression

    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    if min(int(correct.sum()), int((~correct).sum())) < config.top_label_min_each:
        return 1.0, 0.0
    fitted = LogisticRegression(C=np.inf).fit(_logit(probabilities.max(axis=1))[:, None], correct)
    slope, intercept = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    return (slope, intercept) if slope > 0 else (1.0, 0.0)


def top_label_scale(probabilities: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """(N, classes) probabilities whose largest entry c is replaced by sigmoid(slope * logit(c) + intercept)
    (with_top_confidence)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(over="ignore"):
        target = 1.0 / (1.0 + np.exp(-(slope * _logit(probabilities.max(axis=1)) + intercept)))
    return with_top_confidence(probabilities, target)


def with_top_confidence(probabilities: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities whose largest entry becomes `target` (N,), the others scaled to share the
    rest in their old proportions (evenly when they held nothing). The top class stays on top: where the
    target would put it at or below the runner-up, it stays a hair (one part in a million, which float32
    keeps) above it instead."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count, classes = probabilities.shape
    if classes < 2 or count == 0:
        return probabilities.copy()
    rows, top = np.arange(count), probabilities.argmax(axis=1)
    rest = 1.0 - probabilities[rows, top]
    runner_up = np.partition(probabilities, -2, axis=1)[:, -2]
    empty = rest <= PROBABILITY_FLOOR  # the others hold (next to) nothing: share the rest evenly
    floor = np.where(empty, 1.0 / classes, runner_up / np.maximum(rest + runner_up, PROBABILITY_FLOOR))
    target = np.minimum(np.maximum(np.asarray(target, dtype=np.float64), floor * (1 + TIE_MARGIN)), 1.0)
    others = np.where(empty[:, None], (1.0 - target[:, None]) / (classes - 1),
                      probabilities * ((1.0 - target) / np.where(empty, 1.0, rest))[:, None])
    others[rows, top] = target
    return others


@dataclasses.dataclass(frozen=True)
class Calibrator:
    """What serving applies to a model's (N, classes) softmax output: temperature scaling, then top-label
    Platt scaling (module docstring). The defaults change nothing."""

    temperature: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def from_metrics(cls, calibration_metrics: dict | None) -> "Calibrator":
        """From a model's metrics.calibration (calibrate()'s metrics); models evaluated before top-label
        scaling existed have a temperature only."""
        metrics = calibration_metrics or {}
        top_label = metrics.get("top_label") or {}
        return cls(float(metrics.get("temperature") or 1.0), float(top_label.get("slope", 1.0)),
                   float(top_label.get("intercept", 0.0)))

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated (N, classes) float64 probabilities."""
        scaled = scale(probabilities, self.temperature) if self.temperature != 1.0 \
            else np.asarray(probabilities, dtype=np.float64)
        if (self.slope, self.intercept) == (1.0, 0.0):
            return scaled
        return top_label_scale(scaled, self.slope, self.intercept)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Per equal-width confidence bin: image count, mean confidence and accuracy (NaN when empty)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    # bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first bin
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return {"edges": np.linspace(0, 1, bins + 1).tolist(), "counts": counts.tolist(),
            "confidence": mean_confidence.tolist(), "accuracy": accuracy.tolist()}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of the images."""
    table = reliability_bins(probabilities, labels, bins)
    counts = np.asarray(table["counts"], dtype=np.float64)
    gaps = np.abs(np.nan_to_num(np.asarray(table["accuracy"]) - np.asarray(table["confidence"])))
    return float(np.sum(gaps * counts) / max(counts.sum(), 1.0))


def calibrate(val_probabilities, val_labels, test_probabilities, test_labels,
              config: CalibrationConfig = CalibrationConfig()) -> tuple[dict, dict]:
    """Fit the temperature, then top-label Platt scaling, on validation; returns (metrics, reliability tables
    of the test split before calibration, after the temperature, and as served: after both).

    metrics: temperature; top_label {method, slope, intercept}; ECE and NLL of the test split `before`,
    `after` (the temperature) and `served`; Calibrator.from_metrics(metrics) is what serving applies."""
    temperature = fit_temperature(val_probabilities, val_labels, config)
    slope, intercept = fit_top_label(scale(val_probabilities, temperature), val_labels, config)
    calibrator = Calibrator(temperature, slope, intercept)
    test_scaled = scale(test_probabilities, temperature)
    test_served = calibrator(test_probabilities)
    metrics = {
        "temperature": temperature,
        "top_label": {"method": "platt", "slope": slope, "intercept": intercept},
        "ece_bins": config.ece_bins,
        "test_ece_before": expected_calibration_error(test_probabilities, test_labels, config.ece_bins),
        "test_ece_after": expected_calibration_error(test_scaled, test_labels, config.ece_bins),
        "test_ece_served": expected_calibration_error(test_served, test_labels, config.ece_bins),
        "test_nll_before": negative_log_likelihood(test_probabilities, test_labels),
        "test_nll_after": negative_log_likelihood(test_scaled, test_labels),
        "test_nll_served": negative_log_likelihood(test_served, test_labels),
        "val_nll_before": negative_log_likelihood(val_probabilities, val_labels),
        "val_nll_after": negative_log_likelihood(scale(val_probabilities, temperature), val_labels),
        "fitted_on": "validation split",
    }
    tables = {"before": reliability_bins(test_probabilities, test_labels, config.ece_bins),
              "after": reliability_bins(test_scaled, test_labels, config.ece_bins),
              "served": reliability_bins(test_served, test_labels, config.ece_bins)}
    return metrics, tables
