"""What one evaluation of a model found: the record that leaves the evaluate stage (issue 23).

`EvaluationResult` is defined here once. Its JSON form (`as_dict`, `from_dict`) is the `metrics` of an
artifact's metadata.json, its reports/metrics.json, a registry evaluation's `metrics` column and the
train_models DAG's XCom between evaluate and promote; the keys are the field names, a field that is None
is left out, and a key this version does not know is kept in `extra` and written back unchanged, so
files written before (or by a newer version) read and round-trip.

Standard library only: the registry and the DAG files import it without NumPy or TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluationResult:
    """A model on one dataset version's test split. Accuracies are fractions in [0, 1] of the
    `test_images` test images; without `tta` they are the plain figures serving gets (the registry
    compares `test_top1`). None: not measured (metadata from before the field, or written by hand)."""

    dataset: str | None = None  # the dataset evaluated on (a reviewed dataset's own name, e.g. cifar10-reviewed)
    dataset_version: str | None = None  # the version whose test split this is: compare only on the same one
    # the dataset its models are registered and served under when not `dataset`: a reviewed dataset's base
    family: str | None = None
    test_top1: float  # share of test images whose most probable class is the true one
    test_top5: float | None = None  # share whose true class is among the 5 most probable (all, under 5 classes)
    test_images: int | None = None  # images in the test split
    tta: str | None = None  # test-time augmentation also measured: none, flip or flip_translate
    test_top1_tta: float | None = None  # test_top1 under `tta` (only when tta is not none)
    test_top5_tta: float | None = None
    per_class_accuracy: dict[str, float | None] | None = None  # class name -> top-1 on its test images (None: none)
    calibration: dict[str, Any] | None = None  # tasks/evaluate/calibration.py: temperature, ECE and NLL before/after
    ood: dict[str, Any] | None = None  # tasks/evaluate/ood.py via evaluate.out_of_distribution: threshold, sets
    reviewed_slice: dict[str, Any] | None = None  # tasks/evaluate/reviewed.py SliceFigures.as_dict(), when prepared
    serving_tta: str | None = None  # TTA inside the evaluated model itself (tasks/registry/tta.py); none: plain
    # which model, and where the reports went: set by the use case, not part of the artifact's metrics
    model_id: str | None = None
    path: str | None = None  # the artifact folder
    architecture: str | None = None
    reports_dir: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # keys unknown to this version, kept

    @classmethod
    def from_dict(cls, document: dict) -> "EvaluationResult":
        """The record of a metrics document (metadata.json's `metrics`, metrics.json, an XCom value)."""
        names = {field.name for field in dataclasses.fields(cls)} - {"extra"}
        extra = {**(document.get("extra") or {}), **{key: value for key, value in document.items()
                                                        if key not in names and key != "extra"}}
        return cls(**{key: value for key, value in document.items() if key in names}, extra=extra)

    def as_dict(self) -> dict:
        """The JSON form: field names as keys in declaration order, None left out, then `extra`'s keys."""
        document = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                    if field.name != "extra" and getattr(self, field.name) is not None}
        return {**document, **{key: value for key, value in self.extra.items() if key not in document}}

    @property
    def registered_dataset(self) -> str | None:
        """The dataset the registry files the evaluated model under (whose champion it may replace)."""
        return self.family or self.dataset

    def identified(self, model_id: str | None = None, path: str | None = None,
                   architecture: str | None = None, reports_dir: str | None = None) -> "EvaluationResult":
        """This result, naming its model and reports folder (the arguments that are not None)."""
        given = dict(model_id=model_id, path=path, architecture=architecture, reports_dir=reports_dir)
        return dataclasses.replace(self, **{key: value for key, value in given.items() if value is not None})
