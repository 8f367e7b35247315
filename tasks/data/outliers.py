"""Outlier classes for outlier exposure and for measuring out-of-distribution detection.

A CIFAR-10 model knows ten things; CIFAR-100's classes that are not CIFAR-10 concepts are "other
things" it should not be sure about. The vehicle superclasses (bicycle, bus, motorcycle, pickup truck,
train, lawn mower, rocket, streetcar, tank, tractor) are dropped: several are automobiles or trucks in
CIFAR-10's sense. The remaining 90 classes are split into two disjoint halves by their position in
CIFAR-100's official order (even: `exposure`, trained on; odd: `held_out`, measured on), so no OOD
figure is ever reported on classes used in training.

A CIFAR-100 model's outliers are CIFAR-10's classes (the two label sets are disjoint by construction),
split the same way: airplane, bird, deer, frog, ship (`exposure`); automobile, cat, dog, horse, truck
(`held_out`).
"""

from __future__ import annotations

import numpy as np

VEHICLE_SUPERCLASSES = ("vehicles_1", "vehicles_2")
HALVES = ("exposure", "held_out")


def outlier_classes(dataset) -> list[int]:
    """Indices of `dataset`'s classes that may serve as outliers: CIFAR-100's fine classes that are not
    CIFAR-10 concepts, or all of CIFAR-10's; ValueError for any other dataset."""
    from tasks.data.prepare import CIFAR10_CLASSES

    if list(dataset.class_names) == list(CIFAR10_CLASSES):
        return list(range(len(CIFAR10_CLASSES)))
    coarse_names = dataset.manifest.get("coarse_class_names")
    fine_to_coarse = dataset.manifest.get("fine_to_coarse")
    if not coarse_names or not fine_to_coarse:
        raise ValueError(f"{dataset.name} is neither CIFAR-10 nor CIFAR-100: outliers come from one of them")
    vehicles = {coarse_names.index(name) for name in VEHICLE_SUPERCLASSES}
    return [index for index, coarse in enumerate(fine_to_coarse) if coarse not in vehicles]


def half(dataset, which: str) -> list[int]:
    """The fine class indices of one half: `exposure` (even positions) or `held_out` (odd)."""
    if which not in HALVES:
        raise ValueError(f"unknown half {which!r}; choose {' or '.join(HALVES)}")
    classes = outlier_classes(dataset)
    return classes[0::2] if which == "exposure" else classes[1::2]


def outlier_dataset_for(class_names: list[str]) -> str | None:
    """Which prepared dataset holds the outliers of a model with these classes: cifar100 for a CIFAR-10
    model, cifar10 for a CIFAR-100 model, None for any other."""
    from tasks.data.prepare import CIFAR10_CLASSES, cifar100_labels

    if list(class_names) == list(CIFAR10_CLASSES):
        return "cifar100"
    if list(class_names) == list(cifar100_labels()["fine_names"]):
        return "cifar10"
    return None


def held_out_sets(dataset_name: str, class_names: list[str], settings) -> dict[str, np.ndarray]:
    """Outlier sets to measure a model of `dataset_name` on: the held-out half's test images of the
    other CIFAR (outlier_dataset_for) when it is prepared here; otherwise none (synthetic ones are
    always measured, tasks/evaluate/ood.py). Keys: `<outlier dataset>_held_out`."""
    from tasks.data import dataset as datasets

    other = outlier_dataset_for(class_names)
    if other is None:
        return {}
    try:
        outliers = datasets.load(other, None, settings)
    except datasets.DatasetNotFound:
        return {}
    return {f"{other}_held_out": images(outliers, "held_out", "test")}


def images(dataset, which: str, split: str) -> np.ndarray:
    """uint8 images (N, 32, 32, 3) of one half's classes from one split (`train`, `val` or `test`) of
    CIFAR-100 or CIFAR-10."""
    labels = np.asarray(dataset[f"y_{split}"])
    keep = np.isin(labels, half(dataset, which))
    return np.asarray(dataset[f"x_{split}"])[keep]
