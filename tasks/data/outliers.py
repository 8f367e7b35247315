"""Outlier classes for outlier exposure and for measuring out-of-distribution detection.

A CIFAR-10 model knows ten things; CIFAR-100's classes that are not CIFAR-10 concepts are "other
things" it should not be sure about. The vehicle superclasses (bicycle, bus, motorcycle, pickup truck,
train, lawn mower, rocket, streetcar, tank, tractor) are dropped: several are automobiles or trucks in
CIFAR-10's sense. The remaining 90 classes are split into two disjoint halves by their position in
CIFAR-100's official order (even: `exposure`, trained on; odd: `held_out`, measured on), so no OOD
figure is ever reported on classes used in training.
"""

from __future__ import annotations

import numpy as np

VEHICLE_SUPERCLASSES = ("vehicles_1", "vehicles_2")
HALVES = ("exposure", "held_out")


def outlier_classes(dataset) -> list[int]:
    """Indices of `dataset`'s (CIFAR-100) fine classes that are not CIFAR-10 concepts."""
    coarse_names = dataset.manifest.get("coarse_class_names")
    fine_to_coarse = dataset.manifest.get("fine_to_coarse")
    if not coarse_names or not fine_to_coarse:
        raise ValueError(f"{dataset.name} has no coarse labels: outliers come from CIFAR-100")
    vehicles = {coarse_names.index(name) for name in VEHICLE_SUPERCLASSES}
    return [index for index, coarse in enumerate(fine_to_coarse) if coarse not in vehicles]


def half(dataset, which: str) -> list[int]:
    """The fine class indices of one half: `exposure` (even positions) or `held_out` (odd)."""
    if which not in HALVES:
        raise ValueError(f"unknown half {which!r}; choose {' or '.join(HALVES)}")
    classes = outlier_classes(dataset)
    return classes[0::2] if which == "exposure" else classes[1::2]


def held_out_sets(dataset_name: str, class_names: list[str], settings) -> dict[str, np.ndarray]:
    """Outlier sets to measure a model of `dataset_name` on: for a CIFAR-10 model, the held-out half's
    CIFAR-100 test images when CIFAR-100 is prepared here; otherwise none (synthetic ones are always
    measured, tasks/evaluate/ood.py)."""
    from tasks.data import dataset as datasets
    from tasks.data.prepare import CIFAR10_CLASSES

    if list(class_names) != list(CIFAR10_CLASSES):
        return {}
    try:
        cifar100 = datasets.load("cifar100", None, settings)
    except datasets.DatasetNotFound:
        return {}
    return {"cifar100_held_out": images(cifar100, "held_out", "test")}


def images(dataset, which: str, split: str) -> np.ndarray:
    """uint8 images of one half's classes from one split (`train`, `val` or `test`) of CIFAR-100."""
    labels = np.asarray(dataset[f"y_{split}"])
    keep = np.isin(labels, half(dataset, which))
    return np.asarray(dataset[f"x_{split}"])[keep]
