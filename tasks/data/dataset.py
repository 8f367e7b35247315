"""Read a prepared dataset version (written by `tasks.data.prepare`)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from tasks.config import BUNDLED_DATASETS, Settings

ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
# a dataset prepared from reviews (tasks/data/reviewed.py) also holds: the reviewed slice, a test set of the
# user's own images (label -1: a person said none of the classes fits), and the reviewed "none of these"
# images kept for training, as outliers for outlier exposure
REVIEW_ARRAY_NAMES = ("x_reviewed", "y_reviewed", "x_outliers")


class DatasetNotFound(LookupError):
    """No prepared version of that dataset exists yet."""


@dataclasses.dataclass(frozen=True)
class DatasetManifest:
    """`manifest.json` of a prepared dataset version (written by tasks.data.prepare); keys as in the file."""

    name: str  # cifar10, cifar100, or a user's own name
    version: str  # 16 hex digits: sha256 of the class names and the arrays, so equal data = equal version
    created_at: str  # ISO 8601, UTC, seconds
    source: str  # the URL, archive or folder it was prepared from
    class_names: list[str]  # label index -> name
    image_shape: list[int]  # [32, 32, 3]: height, width, RGB channels of every uint8 image
    counts: dict[str, int]  # images per split: train, validation, test
    test_per_class: list[int]  # test images of each class, in class order
    coarse_class_names: list[str] | None = None  # CIFAR-100 superclasses
    fine_to_coarse: list[int] | None = None  # superclass index of each class
    skipped_files: list[str] = dataclasses.field(default_factory=list)  # "path: reason" of unreadable files
    prepare_config: dict = dataclasses.field(default_factory=dict)  # tasks.data.prepare.PrepareConfig's fields
    # prepared from reviews: {"name", "version"} of the base version whose train, validation and test splits
    # it extends (models trained on it serve and compete as the base's), and the counts of what went in
    base: dict | None = None
    reviewed: dict | None = None  # {"train", "outliers", "slice", "slice_none", "skipped"}: image counts

    @classmethod
    def from_dict(cls, values: dict) -> "DatasetManifest":
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> dict:
        """What a DAG passes on: dataset, version, source and counts."""
        return {"dataset": self.name, "version": self.version, "source": self.source, "counts": self.counts}


@dataclasses.dataclass(frozen=True)
class Dataset:
    manifest: dict
    arrays: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @property
    def family(self) -> str:
        """The name its models are registered and served under: the base's for a dataset prepared from
        reviews (its classes are the base's), else its own."""
        return (self.manifest.get("base") or {}).get("name") or self.name


def write_latest(root: Path, version: str) -> None:
    tmp = root / f".LATEST-{os.getpid()}"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / "LATEST")


def find(name: str, version: str | None = None, settings: Settings | None = None) -> Path:
    """The folder of a prepared version of `name` on this disk (its latest when `version` is None);
    DatasetNotFound saying what to run (with the closest prepared name when `name` looks mistyped)."""
    settings = settings or Settings.from_env()
    root = settings.datasets_dir / name
    if version is None:
        latest = root / "LATEST"
        if not latest.exists():
            raise DatasetNotFound(_not_prepared(name, settings.datasets_dir))
        version = latest.read_text().strip()
    folder = root / version
    if not (folder / "manifest.json").exists():
        built_on = _built_on(name, version, settings.datasets_dir)
        if built_on is not None:
            return built_on
        raise DatasetNotFound(f"dataset {name!r} has no version {version!r} under {root}")
    return folder


def _built_on(base: str, version: str, datasets_dir: Path) -> Path | None:
    """The folder of `version` when it is a dataset prepared from reviews on top of `base` (under a name of
    its own): a version of the base's label set, which its models, and the base's champion, are tested on."""
    for manifest in sorted(datasets_dir.glob(f"*/{version}/manifest.json")):
        if (json.loads(manifest.read_text()).get("base") or {}).get("name") == base:
            return manifest.parent
    return None


def _not_prepared(name: str, datasets_dir: Path) -> str:
    import difflib

    prepared = sorted(path.name for path in datasets_dir.glob("*") if (path / "LATEST").exists()) \
        if datasets_dir.is_dir() else []
    close = difflib.get_close_matches(name, prepared + list(BUNDLED_DATASETS), n=1)
    meant = f"did you mean {close[0]}? " if close and close[0] != name else ""
    return (f"dataset {name!r} is not prepared under {datasets_dir}: {meant}"
            f"run `hashtagger data prepare {close[0] if close else name}` first")


def load(name: str, version: str | None = None, settings: Settings | None = None) -> Dataset:
    """The given version of dataset `name`, or its latest prepared one; arrays are memory-mapped (those of
    REVIEW_ARRAY_NAMES only in a dataset prepared from reviews)."""
    folder = find(name, version, settings)
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in ARRAY_NAMES + REVIEW_ARRAY_NAMES
              if key in ARRAY_NAMES or (folder / f"{key}.npy").exists()}
    return Dataset(manifest, arrays)
