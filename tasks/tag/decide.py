"""Abstention: a label, or "no confident label", for each image a model sees.

The score is the maximum calibrated probability (tasks/evaluate/ood.py measured it against energy and
chose it: with outlier exposure it separates as well, and serving already has the probabilities). An
image scoring below the model's threshold (chosen on validation data to keep 95% of the images the
model knows; stored in its metadata as metrics.ood.threshold) gets no label and no label hashtags;
its candidate labels and their probabilities are kept so people can see what the model thought.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Decision:
    """One model's answer for one image.

    labels: the top candidates (label, calibrated probability), best first, kept even when abstaining;
    coarse: CIFAR-100 superclasses with summed probability (empty for other models);
    score: the OOD score (maximum calibrated probability), in [0, 1];
    abstained: True when score < min_confidence; reason says why in words.
    """

    model_id: str
    dataset: str
    labels: list[tuple[str, float]]
    coarse: list[tuple[str, float]]
    score: float
    min_confidence: float
    abstained: bool
    reason: str | None = None

    @property
    def label(self) -> str | None:
        """The label to store, None when the model abstained."""
        return None if self.abstained else self.labels[0][0]


def decide(predictor, probabilities: np.ndarray, min_confidence: float | None = None,
           label_count: int = 3) -> list[Decision]:
    """One Decision per row of calibrated `probabilities` (N, classes) from `predictor`.

    `min_confidence` overrides the model's own threshold (None: the model's; 0: never abstain).
    """
    threshold = predictor.min_confidence if min_confidence is None else float(min_confidence)
    scores = np.asarray(probabilities).max(axis=1) if len(probabilities) else np.zeros(0)
    tops = predictor.top_labels_batch(np.asarray(probabilities), label_count)
    cutoff = _float32_floor(threshold)
    decisions = []
    for probs, top, score in zip(probabilities, tops, scores.tolist()):
        abstained = score < cutoff
        digits = _digits_apart(score, threshold)
        reason = (f"no confident label: best guess {top[0][0]} at {score:.{digits}%} is below the "
                  f"{threshold:.{digits}%} " + ("this model needs" if min_confidence is None else "asked for")
                  ) if abstained else None
        decisions.append(Decision(predictor.model_id, predictor.dataset, top,
                                  predictor.coarse_labels(probs), score, threshold, abstained, reason))
    return decisions


def _digits_apart(score: float, threshold: float) -> int:
    """Decimals (0 to 3) at which a percentage prints `score` apart from `threshold` (99.8% below 99.9%,
    not 100% below 100%)."""
    return next((digits for digits in range(3) if f"{score:.{digits}%}" != f"{threshold:.{digits}%}"), 3)


def _float32_floor(threshold: float) -> float:
    """`threshold` rounded down to a float32 value: serving's probabilities are float32, and an image whose
    float64 score equals a threshold fitted on float64 validation scores must not round below it."""
    rounded = np.float32(threshold)
    return float(np.nextafter(rounded, np.float32(-np.inf)) if float(rounded) > threshold else rounded)


def blank(decision: Decision, reason: str) -> Decision:
    """`decision` for a blank picture (one flat colour, tasks/data/images.py): no label whatever the
    model said, its candidates kept with probability 0 so that no later threshold (`--min-confidence`)
    gives it one. The one rule for `hashtagger tag` and `hashtag`."""
    return dataclasses.replace(decision, labels=[(name, 0.0) for name, _ in decision.labels], coarse=[],
                               score=0.0, abstained=True, reason=f"no confident label: {reason}")


def merged_labels(decisions: list[Decision]) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(labels, coarse labels) for the hashtag ranker from several models' decisions on one image:
    only models that did not abstain contribute; best probability first; a label named by two models
    keeps its higher probability."""
    labels: dict[str, float] = {}
    coarse: dict[str, float] = {}
    for decision in decisions:
        if decision.abstained:
            continue
        for name, probability in decision.labels:
            labels[name] = max(probability, labels.get(name, 0.0))
        for name, probability in decision.coarse:
            coarse[name] = max(probability, coarse.get(name, 0.0))
    ordered = sorted(labels.items(), key=lambda item: -item[1])
    return ordered, sorted(coarse.items(), key=lambda item: -item[1])
