"""Evaluate stage: accuracy of a model on a dataset split."""

from __future__ import annotations

import numpy as np

EVAL_BATCH = 512


def predict_probabilities(model, images: np.ndarray, flip_tta: bool = False) -> np.ndarray:
    """Class probabilities for uint8 images, in batches; with flip TTA, averaged with the mirror image."""
    outputs = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = np.asarray(images[start:start + EVAL_BATCH], dtype="float32")
        probs = np.asarray(model.predict_on_batch(batch))
        if flip_tta:
            probs = (probs + np.asarray(model.predict_on_batch(batch[:, :, ::-1, :]))) / 2
        outputs.append(probs)
    return np.concatenate(outputs)


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def accuracy_metrics(model, images: np.ndarray, labels: np.ndarray, flip_tta: bool = False) -> dict:
    probabilities = predict_probabilities(model, images, flip_tta)
    labels = np.asarray(labels)
    metrics = {"test_top1": top_k_accuracy(probabilities, labels, 1),
               "test_top5": top_k_accuracy(probabilities, labels, 5),
               "test_images": int(len(labels)), "flip_tta": bool(flip_tta)}
    if flip_tta:
        plain = predict_probabilities(model, images, flip_tta=False)
        metrics["test_top1_no_tta"] = top_k_accuracy(plain, labels, 1)
    return metrics
