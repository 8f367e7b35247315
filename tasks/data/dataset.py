"""Read a prepared dataset version (written by `tasks.data.prepare`)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from tasks.config import BUNDLED_DATASETS, Settings

ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


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
        raise DatasetNotFound(f"dataset {name!r} has no version {version!r} under {root}")
    return folder


def _not_prepared(name: str, datasets_dir: Path) -> str:
    import difflib

    prepared = sorted(path.name for path in datasets_dir.glob("*") if (path / "LATEST").exists()) \
        if datasets_dir.is_dir() else []
    close = difflib.get_close_matches(name, prepared + list(BUNDLED_DATASETS), n=1)
    meant = f"did you mean {close[0]}? " if close and close[0] != name else ""
    return (f"dataset {name!r} is not prepared under {datasets_dir}: {meant}"
            f"run `hashtagger data prepare {close[0] if close else name}` first")


def load(name: str, version: str | None = None, settings: Settings | None = None) -> Dataset:
    """The given version of dataset `name`, or its latest prepared one; arrays are memory-mapped."""
    folder = find(name, version, settings)
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in ARRAY_NAMES}
    return Dataset(manifest, arrays)
