"""The reviewed slice: how a model does on the user's own images that people reviewed and that no model
trained on (tasks/data/reviewed.py holds them out), measured the way serving decides.

Top-1 is over the images with a reviewed class, the best label against the person's, as test top-1 is on
the test set (abstention aside); abstention is the share of those the model would abstain on at its serving
threshold; the images a person said none of the classes fits count only in `none_abstained`, the share the
model rightly abstains on.
The slice is small (tens to hundreds of images), so top-1 comes with a Wilson 95% interval.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tasks.evaluate import calibration, ood

NONE = -1  # y_reviewed of an image of none of the classes (tasks/data/reviewed.py)
CONFIDENCE = 0.95


def wilson_interval(hits: int, count: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Wilson score interval of hits / count (fractions in [0, 1]); (None, None) for count 0."""
    if count == 0:
        return None, None
    from scipy import stats

    interval = stats.binomtest(int(hits), int(count)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


@dataclasses.dataclass(frozen=True)
class SliceFigures:
    """One model on one reviewed slice; fractions in [0, 1], None where there is nothing to count."""

    dataset_version: str  # the version whose slice this is: figures compare only on the same one
    images: int  # in the slice
    labelled: int  # of them with a reviewed class
    none: int  # of them a person said none of the classes fits
    top1: float | None  # best label right, of `labelled`
    top1_low: float | None  # Wilson interval of top1 at `confidence`
    top1_high: float | None
    abstention: float | None  # share of `labelled` the model abstains on at its serving threshold
    none_abstained: float | None  # share of `none` the model abstains on (rightly)
    confidence: float = CONFIDENCE

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def slice_metrics(dataset_version: str, probabilities: np.ndarray, labels: np.ndarray,
                  calibrator: calibration.Calibrator, threshold: float) -> SliceFigures:
    """Figures of one model on the reviewed slice. probabilities: (N, classes) uncalibrated softmax; labels:
    (N,) class index or -1 (none of these); calibrator and threshold: the model's calibration and serving
    abstention threshold (Calibrator.from_metrics(metrics.calibration) and metrics.ood.threshold)."""
    labels = np.asarray(labels)
    labelled = labels != NONE
    count, none = int(labelled.sum()), int((~labelled).sum())
    abstained = ood.msp(probabilities, calibrator) < threshold if len(labels) else np.zeros(0, bool)
    hits = int(np.sum((probabilities.argmax(axis=1) == labels) & labelled)) if len(labels) else 0
    low, high = wilson_interval(hits, count)
    return SliceFigures(
        dataset_version, int(len(labels)), count, none, hits / count if count else None, low, high,
        float(abstained[labelled].mean()) if count else None,
        float(abstained[~labelled].mean()) if none else None)


def summary(figures: dict) -> str:
    """One line for people: top-1 with its interval, abstention, counts."""
    if not figures["labelled"]:
        return f"reviewed slice: no image with a class ({figures['none']} of none of these)"
    line = (f"reviewed slice: top-1 {figures['top1']:.1%} (95% CI {figures['top1_low']:.1%}-"
            f"{figures['top1_high']:.1%}), abstained on {figures['abstention']:.1%}, "
            f"{figures['labelled']:,} images with a class")
    if figures["none"]:
        line += f"; abstained on {figures['none_abstained']:.1%} of {figures['none']:,} of none of these"
    return line
