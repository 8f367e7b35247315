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
   bundled CIFAR-10 model after temperature, models/bundled/cifar10/reports/reliability.json:
   under-confident below 0.53, over-confident above 0.73); this stage can (benchmarks/calibration.py
   measures it). The served top confidence is the map's value itself, increasing in c (for any fitted
   slope > 0), so images rank by confidence as before: abstention decisions and OOD AUROC are those of the
   temperature-scaled confidence. It never changes which class wins: where the others' proportional shares
   would reach the new top confidence (a map that lowers a near-tie's top, slope > 1 or intercept < 0), the
   largest of them are capped just below it and the rest share what is left (with_top_confidence).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

log = logging.getLogger(__name__)

PROBABILITY_FLOOR = 1e-12  # log(0) guard: softmax outputs underflow to 0 in float32
TIE_MARGIN = 1e-6  # with_top_confidence keeps the top class this much (relative) above the runner-up


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    ece_bins: int = 15  # equal-width confidence bins, as in Guo et al.
    log_temperature_range: tuple[float, float] = (-3.0, 3.0)  # T between 0.05 and 20
    grid_points: int = 121  # coarse grid on log T, then golden-section refinement
    tolerance: float = 1e-5  # on log T
    # top-label Platt scaling is fitted only with at least this many right and this many wrong top labels
    # on validation, and served only within these bounds ((lowest slope, highest slope), largest
    # |intercept|); otherwise the confidences stay as the temperature left them (fit_top_label)
    top_label_min_each: int = 50
    top_label_bounds: tuple[tuple[float, float], float] = ((0.25, 4.0), 4.0)


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


def _top_and_rest(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of the top class, its probability, the sum of the others' probabilities), each (N,). The
    others' sum is added up from them, not taken as 1 - top (or the row's sum - top), which loses it to
    cancellation for a near-certain top and carries a float32 softmax's rounding."""
    rows, top = np.arange(len(probabilities)), probabilities.argmax(axis=1)
    confidence = probabilities[rows, top]
    others = probabilities.copy()
    others[rows, top] = 0.0
    return top, confidence, others.sum(axis=1)


def _top_logit(confidence: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """log(c / (others' sum)): the top label's logit, exact where 1 - c would round to 0; the others' sum
    floored at PROBABILITY_FLOOR (a float32 softmax that rounded them all to 0)."""
    return np.log(np.maximum(confidence, PROBABILITY_FLOOR)) - np.log(np.maximum(rest, PROBABILITY_FLOOR))


def fit_top_label(probabilities: np.ndarray, labels: np.ndarray,
                  config: CalibrationConfig = CalibrationConfig()) -> tuple[float, float, str]:
    """(slope, intercept, why) of top-label Platt scaling for (N, classes) `probabilities` (already
    temperature scaled) with true `labels` (N,): an unpenalised logistic regression (scikit-learn) of whether
    the top label is right on the logit of its probability. `why` is "" for a fit in use; otherwise it says
    why the map is left out and (1.0, 0.0), which changes nothing, comes back: either outcome has fewer
    than config.top_label_min_each images, or the fit leaves config.top_label_bounds (a validation split on
    which right and wrong separate perfectly drives the slope towards infinity; mistakes that do not depend
    on the confidence drive it to 0; neither is a map to serve)."""
    from sklearn.linear_model import LogisticRegression

    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    fewest = min(int(correct.sum()), int((~correct).sum()))
    if fewest < config.top_label_min_each:
        return 1.0, 0.0, (f"{fewest} {'right' if correct.sum() == fewest else 'wrong'} top labels on validation, "
                          f"fewer than {config.top_label_min_each}")
    _, confidence, rest = _top_and_rest(probabilities)
    fitted = LogisticRegression(C=np.inf).fit(_top_logit(confidence, rest)[:, None], correct)
    slope, intercept = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    (low, high), largest = config.top_label_bounds
    if not (np.isfinite(slope) and np.isfinite(intercept) and low <= slope <= high and abs(intercept) <= largest):
        return 1.0, 0.0, (f"the fit (slope {slope:.3g}, intercept {intercept:.3g}) is outside what is served "
                          f"(slope {low:g} to {high:g}, intercept within +-{largest:g})")
    return slope, intercept, ""


def top_label_scale(probabilities: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """(N, classes) probabilities whose largest entry c is replaced by sigmoid(slope * logit(c) + intercept)
    (with_top_confidence); logit(c) = log(c / the others' sum)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    _, confidence, rest = _top_and_rest(probabilities)
    with np.errstate(over="ignore"):
        target = 1.0 / (1.0 + np.exp(-(slope * _top_logit(confidence, rest) + intercept)))
    return with_top_confidence(probabilities, target)


def with_top_confidence(probabilities: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities (rows summing to 1, up to their own rounding) whose largest entry
    becomes `target` (N,), the others sharing 1 - target in their old proportions (evenly only when they
    all hold exactly 0); rows sum to 1. The top class stays on top and its new value is the target itself
    (so the served confidence is monotone in it): where a proportional share would reach the target, the
    largest shares are capped a hair below it (TIE_MARGIN, which float32 keeps) and the rest share what is
    left (_capped). A target below 1 / classes, where no row keeps a single winner, is raised to just above it."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count, classes = probabilities.shape
    if classes < 2 or count == 0:
        return probabilities.copy()
    top, _, rest = _top_and_rest(probabilities)
    rows = np.arange(count)
    target = np.clip(np.asarray(target, dtype=np.float64), (1 + 2 * TIE_MARGIN) / classes, 1.0)
    empty = rest <= 0  # the others hold nothing at all: share what is left evenly
    shares = np.where(empty[:, None], 1.0 / (classes - 1), probabilities / np.where(empty, 1.0, rest)[:, None])
    shares[rows, top] = 0.0
    served = shares * (1.0 - target)[:, None]
    cap = target * (1 - TIE_MARGIN)
    for row in np.flatnonzero((served > cap[:, None]).any(axis=1)):
        others = np.arange(classes) != top[row]
        served[row, others] = _capped(shares[row, others], 1.0 - target[row], cap[row])
    served[rows, top] = target
    return served


def _capped(shares: np.ndarray, total: float, cap: float) -> np.ndarray:
    """(k,) values summing to `total`, proportional to `shares` (k,) except that none exceeds `cap`:
    the largest are set to `cap` and the rest share what is left in their proportions (water-filling).
    Needs k * cap >= total, which with_top_confidence's lowest target guarantees."""
    order = np.argsort(-shares, kind="stable")
    ordered = shares[order]
    tails = np.cumsum(ordered[::-1])[::-1]  # tails[m]: the shares left after capping the m largest
    values = np.full(len(ordered), cap)
    for capped in range(1, len(ordered)):
        left = max(total - capped * cap, 0.0)
        if tails[capped] <= 0:
            values[capped:] = left / (len(ordered) - capped)
            break
        if left * ordered[capped] / tails[capped] <= cap:
            values[capped:] = ordered[capped:] * left / tails[capped]
            break
    result = np.empty_like(values)
    result[order] = values
    return result


@dataclasses.dataclass(frozen=True)
class Calibrator:
    """What serving applies to a model's (N, classes) softmax output: temperature scaling, then top-label
    Platt scaling (module docstring). The defaults change nothing."""

    temperature: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def from_metrics(cls, calibration_metrics: dict | None) -> "Calibrator":
        """From a model's metrics.calibration (calibrate()'s metrics). Models evaluated before top-label
        scaling existed have a temperature only; a value that is missing, null or not finite counts as
        the one that changes nothing, and so does a stored top-label map outside
        CalibrationConfig.top_label_bounds (a hand-edited slope <= 0 would reverse the ranking), with a
        warning."""
        metrics = calibration_metrics or {}
        top_label = metrics.get("top_label") or {}

        def finite(value, default: float) -> float:
            usable = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
            return float(value) if usable else default

        temperature = finite(metrics.get("temperature"), 1.0)
        slope, intercept = finite(top_label.get("slope"), 1.0), finite(top_label.get("intercept"), 0.0)
        (low, high), largest = CalibrationConfig().top_label_bounds
        if not (low <= slope <= high and abs(intercept) <= largest):
            log.warning("stored top-label calibration (slope %g, intercept %g) is outside what is served (slope "
                        "%g to %g, intercept within +-%g): serving the temperature-scaled confidence instead",
                        slope, intercept, low, high, largest)
            slope, intercept = 1.0, 0.0
        return cls(temperature if temperature > 0 else 1.0, slope, intercept)

    @property
    def top_label(self) -> bool:
        """Whether top-label scaling changes anything."""
        return (self.slope, self.intercept) != (1.0, 0.0)

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated (N, classes) float64 probabilities."""
        scaled = scale(probabilities, self.temperature) if self.temperature != 1.0 \
            else np.asarray(probabilities, dtype=np.float64)
        return top_label_scale(scaled, self.slope, self.intercept) if self.top_label else scaled


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
    of the test split before calibration, after the temperature, and after both: `served`, what serving
    applies once these metrics are a model's own).

    metrics: temperature; top_label {method, slope, intercept}; ECE and NLL of the test split `before`,
    `after` (the temperature) and `served`; Calibrator.from_metrics(metrics) is what serving applies."""
    temperature = fit_temperature(val_probabilities, val_labels, config)
    slope, intercept, left_out = fit_top_label(scale(val_probabilities, temperature), val_labels, config)
    calibrator = Calibrator(temperature, slope, intercept)
    test_scaled = scale(test_probabilities, temperature)
    test_served = calibrator(test_probabilities)
    metrics = {
        "temperature": temperature,
        "top_label": {"method": "none", "slope": 1.0, "intercept": 0.0, "why": left_out} if left_out
        else {"method": "platt", "slope": slope, "intercept": intercept},
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
