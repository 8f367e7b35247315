"""Out-of-distribution scores for a CIFAR-10 model, measured side by side on held-out outlier classes.

    .venv/bin/python benchmarks/ood_scores.py                                  # the bundled model
    .venv/bin/python benchmarks/ood_scores.py --model models/bundled/cifar10 --model ~/.hashtagger/models/ID

Which score tells the images a CIFAR-10 model knows from those it does not? For each model it measures,
on the CIFAR-10 JPEG test set against the held-out half of CIFAR-100's non-CIFAR-10 classes
(tasks/data/outliers.py; never the exposure half, which outlier exposure trains on):

- `msp`: the maximum probability after a temperature fitted here on validation (serving thresholds the
  maximum after its temperature and top-label Platt scaling, a monotone map of this one: same ranking);
- `energy`: T * logsumexp(logits / T) with T = 1 (Liu et al., NeurIPS 2020), on the true logits;
- `max logit`: the largest logit (Hendrycks et al., "Scaling OOD detection", 2022);
- each of those with flip test-time augmentation (the logits of the image and its mirror, averaged);
- `knn`: cosine similarity of the penultimate features to their 50th nearest training image (Sun et al.,
  ICML 2022);
- `logistic head` and `MLP head`: classifiers on the frozen penultimate features, trained to tell the
  training split from the exposure half's training images (outlier exposure of a detector on top of
  the network instead of in its training): scikit-learn, standardised features.

AUROC and FPR at 95% TPR use the test split as the positives (tasks/evaluate/ood.py); "kept" is the
share of outliers above the threshold chosen on the validation split to keep 95% of it, as serving
chooses it. Needs the train extra, and cifar10 and cifar100 prepared (`hashtagger data prepare`).
Writes reports/ood_scores.md.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import per_model  # noqa: E402  (benchmarks/, beside this script)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    knn_k: int = 50  # Sun et al.'s k for CIFAR-10
    mlp_hidden: int = 256  # one hidden layer
    logistic_c: float = 1.0  # inverse L2 strength (scikit-learn's C); 0.01 measured the same here
    batch_size: int = 500
    seed: int = 0


def features_and_logits(model, images: np.ndarray, batch_size: int, flip: bool = False):
    """(penultimate features (N, D), logits (N, classes)) of a model that ends in Dense `head` ->
    [Rescaling] -> softmax `probs`; the mirror images' when `flip`."""
    import keras

    head, probs = model.get_layer("head"), model.get_layer("probs")
    probe = keras.Model(model.input, [head.input, probs.input])
    pixels = np.asarray(images)[:, :, ::-1] if flip else np.asarray(images)
    features, logits = probe.predict(pixels.astype("float32"), batch_size=batch_size, verbose=0)
    return np.asarray(features, dtype=np.float32), np.asarray(logits, dtype=np.float64)


def study(model_path: str, config: StudyConfig) -> dict:
    """Every score's AUROC, FPR at 95% TPR and kept share for one model, with its test top-1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from tasks.config import Settings
    from tasks.data import dataset as datasets
    from tasks.data import outliers
    from tasks.evaluate import calibration, ood
    from tasks.registry import artifact

    started = time.perf_counter()
    model, metadata = artifact.load_keras(model_path)
    settings = Settings.from_env()
    cifar10 = datasets.load("cifar10", metadata.get("dataset_version"), settings)
    cifar100 = datasets.load("cifar100", None, settings)
    sets = {"train": cifar10["x_train"], "val": cifar10["x_val"], "test": cifar10["x_test"],
            "exposure": outliers.images(cifar100, "exposure", "train"),
            "held_out": outliers.images(cifar100, "held_out", "test")}
    features, logits, flipped = {}, {}, {}
    for name, images in sets.items():
        features[name], logits[name] = features_and_logits(model, images, config.batch_size)
        if name in ("val", "test", "held_out"):
            flipped[name] = features_and_logits(model, images, config.batch_size, flip=True)[1]
    temperature = calibration.fit_temperature(calibration.softmax(logits["val"]), np.asarray(cifar10["y_val"]))

    def msp(values):
        return calibration.softmax(values / temperature).max(axis=1)

    def energy(values):
        return ood.energy(values)

    def max_logit(values):
        return values.max(axis=1)

    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, score in (("msp", msp), ("energy", energy), ("max logit", max_logit)):
        scores[name] = {split: score(logits[split]) for split in ("val", "test", "held_out")}
        scores[f"{name} + flip TTA"] = {split: score((logits[split] + flipped[split]) / 2)
                                        for split in ("val", "test", "held_out")}

    bank = _normalised(features["train"])
    scores[f"knn (k={config.knn_k})"] = {split: _kth_similarity(_normalised(features[split]), bank, config.knn_k)
                                          for split in ("val", "test", "held_out")}

    known, unknown = features["train"], features["exposure"]
    inputs = np.concatenate([known, unknown])
    targets = np.concatenate([np.ones(len(known)), np.zeros(len(unknown))])
    scaler = StandardScaler().fit(inputs)
    logistic = LogisticRegression(C=config.logistic_c, max_iter=2000, class_weight="balanced")
    logistic.fit(scaler.transform(inputs), targets)
    scores["logistic head"] = {split: logistic.decision_function(scaler.transform(features[split]))
                               for split in ("val", "test", "held_out")}
    mlp = MLPClassifier((config.mlp_hidden,), alpha=1e-3, max_iter=200, early_stopping=True,
                        random_state=config.seed)
    mlp.fit(scaler.transform(inputs), targets)
    scores["MLP head"] = {split: mlp.predict_proba(scaler.transform(features[split]))[:, 1]
                          for split in ("val", "test", "held_out")}

    y_test = np.asarray(cifar10["y_test"])
    rows = []
    for name, by_split in scores.items():
        threshold = ood.threshold_for(by_split["val"])
        rows.append({"score": name, "auroc": ood.auroc(by_split["test"], by_split["held_out"]),
                     "fpr_at_95_tpr": ood.fpr_at_tpr(by_split["test"], by_split["held_out"]),
                     "kept": float(np.mean(by_split["held_out"] >= threshold)),
                     "test_kept": float(np.mean(by_split["test"] >= threshold))})
    return {"model_id": metadata["model_id"], "path": str(model_path),
            "outlier_exposure": bool((metadata.get("recipe") or {}).get("outlier_dataset")),
            "reproduce": metadata.get("reproduce"), "temperature": temperature,
            "test_top1": float(np.mean(logits["test"].argmax(axis=1) == y_test)),
            "test_top1_flip": float(np.mean((logits["test"] + flipped["test"]).argmax(axis=1) == y_test)),
            "images": {name: len(images) for name, images in sets.items()}, "rows": rows,
            "seconds": time.perf_counter() - started}


def _normalised(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)


def _kth_similarity(queries: np.ndarray, bank: np.ndarray, k: int, chunk: int = 2000) -> np.ndarray:
    """(N,) cosine similarity of each query to its k-th most similar row of `bank` (both normalised)."""
    out = []
    for start in range(0, len(queries), chunk):
        similarities = queries[start:start + chunk] @ bank.T
        out.append(np.partition(similarities, -k, axis=1)[:, -k])
    return np.concatenate(out)


def table(results: list[dict], total_seconds: float) -> list[str]:
    lines = [
        "# Out-of-distribution scores",
        "",
        per_model.machine_line("ood_scores.py", total_seconds, keras=True) + " In-distribution: the CIFAR-10 JPEG test set (positives) and validation "
        "split (thresholds); outliers: CIFAR-100 JPEG test images of the held-out half of its non-CIFAR-10 "
        "classes, never trained on (tasks/data/outliers.py). Goal of issue 14: FPR at 95% TPR <= 0.35.",
        "",
    ]
    for result in results:
        images = result["images"]
        lines += [
            f"## `{result['model_id']}`" + (" (outlier exposure)" if result["outlier_exposure"] else
                                            " (no outlier exposure)"),
            "",
            f"`{result['reproduce']}`; top-1 on the JPEG test set {result['test_top1']:.2%} "
            f"({result['test_top1_flip']:.2%} with flip TTA); temperature {result['temperature']:.3f}. "
            f"{images['test']:,} test, {images['val']:,} validation, {images['held_out']:,} held-out outlier "
            f"images; heads and knn fitted on {images['train']:,} training and {images['exposure']:,} exposure "
            "images.",
            "",
            "| score | AUROC | FPR at 95% TPR | outliers kept by the validation threshold | test images kept |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in result["rows"]:
            lines.append(f"| {row['score']} | {row['auroc']:.4f} | {row['fpr_at_95_tpr']:.4f} | "
                         f"{row['kept']:.2%} | {row['test_kept']:.2%} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    config = StudyConfig()
    return per_model.run(argv, __doc__.split("\n\n")[0], "a CIFAR-10 model artifact folder",
                         [str(REPO / "models" / "bundled" / "cifar10")], REPO / "reports" / "ood_scores.md",
                         lambda path: study(path, config), table)


if __name__ == "__main__":
    sys.exit(main())
