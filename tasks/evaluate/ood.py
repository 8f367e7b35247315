"""Out-of-distribution (OOD) detection: scores, AUROC, FPR at 95% TPR, the abstention threshold.

A score is higher for images the model knows. Two are measured:
- `msp`: the maximum softmax probability as served, after the model's calibrator (temperature and
  top-label Platt scaling, tasks/evaluate/calibration.py; Hendrycks & Gimpel, 2017), what serving reads
  off the probabilities it already has;
- `energy`: the negative free energy T * logsumexp(logits / T) (Liu et al., "Energy-based
  Out-of-distribution Detection", NeurIPS 2020), which needs the logits.
AUROC treats in-distribution images as positives; FPR at 95% TPR is the share of outliers that keep a
label when the threshold keeps 95% of in-distribution images. The serving threshold is chosen the same
way on the validation split (never on test or outlier images), so it states what it costs: about 5%
of images the model does know lose their label.

Outlier sets: a CIFAR-10 model is measured on the held-out half of CIFAR-100's non-CIFAR-10 classes
(tasks/data/outliers.py; the other half is what outlier exposure trains on), and every model on
synthetic images that are not photographs of anything: uniform noise, flat colours, heavily blurred
test images and test images with their 8x8 patches shuffled.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tasks.evaluate import calibration


@dataclasses.dataclass(frozen=True)
class OodConfig:
    target_tpr: float = 0.95  # share of in-distribution validation images that keep their label
    synthetic_images: int = 1000  # per synthetic kind
    seed: int = 0


def msp(probabilities: np.ndarray, calibrator: calibration.Calibrator = calibration.Calibrator()) -> np.ndarray:
    """(N,) maximum probability of (N, classes) softmax outputs after `calibrator` (serving's confidence)."""
    return calibrator(probabilities).max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N,) negative free energy T * logsumexp(logits / T); higher means more in-distribution."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    return temperature * (top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1)))


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve, in-distribution images as positives (0.5 = no separation)."""
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([np.ones(len(in_scores)), np.zeros(len(out_scores))])
    return float(roc_auc_score(labels, np.concatenate([in_scores, out_scores])))


def threshold_for(in_scores: np.ndarray, target_tpr: float = 0.95) -> float:
    """The highest score that keeps at least `target_tpr` of `in_scores` at or above it."""
    ranked = np.sort(np.asarray(in_scores, dtype=np.float64))[::-1]
    keep = min(len(ranked), max(1, int(np.ceil(target_tpr * len(ranked) - 1e-9))))
    return float(ranked[keep - 1])


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, target_tpr: float = 0.95) -> float:
    """Share of outliers scoring at or above the threshold that keeps `target_tpr` of in-distribution."""
    return float(np.mean(np.asarray(out_scores) >= threshold_for(in_scores, target_tpr)))


def synthetic_outliers(images: np.ndarray, config: OodConfig = OodConfig()) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, C) images of four kinds that show nothing a CIFAR class is, made from `images`."""
    rng = np.random.default_rng(config.seed)
    count = min(config.synthetic_images, len(images))
    shape = (count,) + tuple(images.shape[1:])
    base = np.asarray(images[:count])
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    flat = np.broadcast_to(rng.integers(0, 256, (count, 1, 1, shape[-1]), dtype=np.uint8), shape).copy()
    return {"noise": noise, "flat": flat, "blurred": _box_blur(base, 9), "shuffled": _shuffle_patches(base, 8, rng)}


def _box_blur(images: np.ndarray, size: int) -> np.ndarray:
    """A size x size box blur (edges replicated): the shapes go, the colours stay."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(images.astype(np.float32), size=(1, size, size, 1), mode="nearest").round().astype(np.uint8)


def _shuffle_patches(images: np.ndarray, patch: int, rng: np.random.Generator) -> np.ndarray:
    """Each image cut into patch x patch squares, put back in a random order: local texture, no object."""
    count, height, width, channels = images.shape
    rows, cols = height // patch, width // patch
    tiles = images[:, :rows * patch, :cols * patch].reshape(count, rows, patch, cols, patch, channels)
    tiles = tiles.transpose(0, 1, 3, 2, 4, 5).reshape(count, rows * cols, patch, patch, channels)
    order = np.argsort(rng.random((count, rows * cols)), axis=1)
    tiles = np.take_along_axis(tiles, order[:, :, None, None, None], axis=1)
    tiles = tiles.reshape(count, rows, cols, patch, patch, channels).transpose(0, 1, 3, 2, 4, 5)
    out = images.copy()
    out[:, :rows * patch, :cols * patch] = tiles.reshape(count, rows * patch, cols * patch, channels)
    return out


def separation(in_scores: np.ndarray, out_scores: np.ndarray, threshold: float) -> dict:
    """AUROC, FPR at the in-distribution 95% point, and the share of outliers kept by `threshold`."""
    return {"auroc": auroc(in_scores, out_scores), "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores),
            "kept_by_threshold": float(np.mean(np.asarray(out_scores) >= threshold)), "images": int(len(out_scores))}
