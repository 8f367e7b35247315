"""Calibration: temperature scaling (Guo et al. 2017) and expected calibration error, in numpy.

The models end in a softmax, so their logits are recovered as log(probabilities), which softmax maps
back to the same probabilities. Temperature scaling divides those logits by one scalar T fitted on the
validation split to minimise the negative log-likelihood; it never changes which class wins, only how
confident the model says it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PROBABILITY_FLOOR = 1e-12  # log(0) guard: softmax outputs underflow to 0 in float32


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    ece_bins: int = 15  # equal-width confidence bins, as in Guo et al.
    log_temperature_range: tuple[float, float] = (-3.0, 3.0)  # T between 0.05 and 20
    grid_points: int = 121  # coarse grid on log T, then golden-section refinement
    tolerance: float = 1e-5  # on log T


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
    """Fit T on validation; returns (metrics, reliability tables of the test split before and after)."""
    temperature = fit_temperature(val_probabilities, val_labels, config)
    test_scaled = scale(test_probabilities, temperature)
    metrics = {
        "temperature": temperature,
        "ece_bins": config.ece_bins,
        "test_ece_before": expected_calibration_error(test_probabilities, test_labels, config.ece_bins),
        "test_ece_after": expected_calibration_error(test_scaled, test_labels, config.ece_bins),
        "test_nll_before": negative_log_likelihood(test_probabilities, test_labels),
        "test_nll_after": negative_log_likelihood(test_scaled, test_labels),
        "val_nll_before": negative_log_likelihood(val_probabilities, val_labels),
        "val_nll_after": negative_log_likelihood(scale(val_probabilities, temperature), val_labels),
        "fitted_on": "validation split",
    }
    tables = {"before": reliability_bins(test_probabilities, test_labels, config.ece_bins),
              "after": reliability_bins(test_scaled, test_labels, config.ece_bins)}
    return metrics, tables
