"""Prepare stage: turn an official CIFAR archive or a class-per-folder image tree into a dataset version.

A dataset version is a folder of uint8 arrays plus `manifest.json`, named by a hash of its content, under
`$HASHTAGGER_HOME/datasets/<name>/<version>/`. The validation split is carved out of train, stratified and
deterministic; the test split is kept for final evaluation only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import tarfile
import urllib.parse
from pathlib import Path
from typing import Iterator

import numpy as np

from tasks.data import download, images
from tasks.config import Settings
from tasks.data.dataset import ARRAY_NAMES, REVIEW_ARRAY_NAMES, DatasetManifest, write_latest

log = logging.getLogger(__name__)

IMAGE_SIZE = 32
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# The pickled batches inside the official archives; they also hold other files (cifar-10's readme.html,
# cifar-100's file.txt~) that are not pickles and must not be unpickled.
OFFICIAL_BATCHES = {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                    "test_batch", "batches.meta", "train", "test", "meta"}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class OfficialArchive:
    url: str
    md5: str  # published by the dataset's authors next to the archive
    folder: str  # top folder inside the archive


OFFICIAL = {
    "cifar10": OfficialArchive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                               "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
    "cifar100": OfficialArchive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
}


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How a dataset version is carved; part of the version's identity."""

    validation_size: int = 5000  # images carved out of train, stratified by class (CIFAR: 500 or 50 a class)
    test_fraction: float = 0.1  # only for trees without a test/ folder: share of each class held out for test
    seed: int = 0  # fixes which images go to validation (and test), so a rerun gives the same version


class DataError(ValueError):
    """The source is not a dataset hashtagger can read; the message says what is wrong."""


DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # one folder under datasets/, no path


def check_name(name: str) -> str:
    """`name` when it can name a dataset (a folder of its own under HASHTAGGER_HOME/datasets/); DataError
    otherwise, before anything is read or written."""
    if not DATASET_NAME.fullmatch(name or "") or ".." in name:
        raise DataError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-' only, starting with a "
                        "letter or digit (e.g. cifar10-reviewed); it names a folder under the datasets folder")
    return name


@dataclasses.dataclass
class RawSplits:
    """Images and labels as read from a source, before validation is carved out."""

    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    coarse_class_names: list[str] | None = None
    fine_to_coarse: list[int] | None = None
    skipped: list[str] = dataclasses.field(default_factory=list)


def cifar100_labels() -> dict:
    """Official CIFAR-100 fine and coarse names and the fine-to-coarse mapping (shipped as data)."""
    return json.loads((Path(__file__).resolve().parent.parent / "resources" / "cifar100-labels.json").read_text())


# ---------------------------------------------------------------------------------------------- readers

def read_official(archive: Path, name: str) -> RawSplits:
    """Read `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` (pickled batches, CHW rows)."""
    batches: dict[str, dict] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.isfile() and Path(member.name).name in OFFICIAL_BATCHES:
                batches[Path(member.name).name] = pickle.load(tar.extractfile(member), encoding="bytes")

    def images(batch: dict) -> np.ndarray:
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        return rows.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1).copy()

    if name not in OFFICIAL:  # an official archive prepared under a name of the user's own
        name = "cifar10" if "data_batch_1" in batches else "cifar100"
    try:
        if name == "cifar10":
            train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
            meta = batches["batches.meta"]
            classes = [label.decode() for label in meta[b"label_names"]]
            return RawSplits(
                class_names=classes,
                x_train=np.concatenate([images(b) for b in train]),
                y_train=np.concatenate([np.asarray(b[b"labels"]) for b in train]).astype(np.int16),
                x_test=images(batches["test_batch"]),
                y_test=np.asarray(batches["test_batch"][b"labels"], dtype=np.int16))
        train, test, meta = batches["train"], batches["test"], batches["meta"]
        fine = [label.decode() for label in meta[b"fine_label_names"]]
        coarse = [label.decode() for label in meta[b"coarse_label_names"]]
        fine_labels = np.asarray(train[b"fine_labels"])
        coarse_labels = np.asarray(train[b"coarse_labels"])
    except KeyError as missing:
        raise DataError(f"{archive}: not an official {name} archive (no {missing} inside)") from None
    fine_to_coarse = [-1] * len(fine)
    for fine_label, coarse_label in zip(fine_labels, coarse_labels):
        fine_to_coarse[fine_label] = int(coarse_label)
    return RawSplits(class_names=fine, x_train=images(train), y_train=fine_labels.astype(np.int16),
                     x_test=images(test), y_test=np.asarray(test[b"fine_labels"], dtype=np.int16),
                     coarse_class_names=coarse, fine_to_coarse=fine_to_coarse)


def _member_name(name: str) -> str:
    """A tar member's name without the `./` (or `/`) that `tar -C dir -czf x.tar.gz .` puts in front."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _tree_entries(source: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, file bytes) for every file of a folder or a .tar(.gz) of one, in sorted order."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield path.relative_to(source).as_posix(), path.read_bytes()
        return
    if not tarfile.is_tarfile(source):
        raise DataError(f"{source}: neither a folder nor a tar archive of one")
    # A gzip stream cannot seek back cheaply: read members in archive order, then sort by name.
    with tarfile.open(source, "r:*") as tar:
        entries = [(_member_name(member.name), tar.extractfile(member).read())
                   for member in tar if member.isfile()]
    yield from sorted(entries)


def _split_and_class(relative: str) -> tuple[str, str] | None:
    """('train'|'test'|'', class) from a path like [top/]train/cat/0001.jpg or [top/]cat/0001.jpg."""
    parts = relative.split("/")
    if len(parts) < 2 or any(part.startswith(".") for part in parts):
        return None
    for index, part in enumerate(parts[:-2]):
        if part in ("train", "test"):
            return part, parts[index + 1]
    return "", parts[-2]


def decode_tile(data: bytes) -> np.ndarray:
    """Any image file -> 32x32x3 uint8, by the decoder serving uses (tasks.data.images), so a model
    trains on the very pixels it is later served: same EXIF rotation, alpha on white, resize filter."""
    return images.decode(data)


def read_image_tree(source: Path, class_order: list[str] | None = None) -> RawSplits:
    """Read a class-per-folder tree (optionally under train/ and test/), from a folder or a tarball."""
    tiles: dict[str, list[np.ndarray]] = {"train": [], "test": [], "": []}
    labels: dict[str, list[str]] = {"train": [], "test": [], "": []}
    skipped: list[str] = []
    for relative, data in _tree_entries(source):
        place = _split_and_class(relative)
        if place is None or Path(relative).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            tile = decode_tile(data)
        except Exception as error:  # noqa: BLE001  a user's tree may hold broken files: keep going, report them
            skipped.append(f"{relative}: {error}")
            continue
        split, label = place
        tiles[split].append(tile)
        labels[split].append(label)
    if tiles["train"] and tiles[""]:
        raise DataError(f"{source}: mixes class folders at the top with train/ and test/ folders")
    train_key = "train" if tiles["train"] else ""
    if not tiles[train_key]:
        raise DataError(f"{source}: no images found in class folders (expected [train/]<class>/<image>)")
    found = set(labels[train_key]) | set(labels["test"])
    if class_order is not None and set(class_order) != found:
        missing, unexpected = sorted(set(class_order) - found), sorted(found - set(class_order))
        raise DataError(f"{source}: class folders do not match the expected {len(class_order)} classes "
                        f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                        f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})")
    class_names = list(class_order) if class_order else sorted(found)
    index = {name: i for i, name in enumerate(class_names)}

    def stack(split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not tiles[split]:
            return None, None
        return (np.stack(tiles[split]),
                np.asarray([index[label] for label in labels[split]], dtype=np.int16))

    x_train, y_train = stack(train_key)
    x_test, y_test = stack("test")
    return RawSplits(class_names, x_train, y_train, x_test, y_test, skipped=skipped)


# ---------------------------------------------------------------------------------------------- splitting

def stratified_take(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Boolean mask choosing `size` items, each class in proportion to its count, deterministically."""
    classes, counts = np.unique(labels, return_counts=True)
    if not 0 < size < len(labels):
        raise DataError(f"cannot carve {size} images out of {len(labels)}")
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(int)
    for extra in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[extra] += 1  # largest remainders get the leftover places, so the total is exact
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label, take in zip(classes, quota):
        members = np.flatnonzero(labels == label)
        mask[rng.permutation(members)[:take]] = True
    return mask


def split(raw: RawSplits, config: PrepareConfig) -> dict[str, np.ndarray]:
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_test is None:
        test_mask = stratified_take(y_train, max(1, round(len(y_train) * config.test_fraction)),
                                    config.seed + 1)
        x_test, y_test = x_train[test_mask], y_train[test_mask]
        x_train, y_train = x_train[~test_mask], y_train[~test_mask]
    validation_size = min(config.validation_size, len(y_train) // 10 or 1)
    val_mask = stratified_take(y_train, validation_size, config.seed)
    # Sources list images class by class; store each split in a fixed shuffled order so that
    # the first N images of a split are a fair sample of it (smoke tests, --train-limit).
    rng = np.random.default_rng(config.seed)
    arrays = {}
    for key, x, y in (("train", x_train[~val_mask], y_train[~val_mask]),
                      ("val", x_train[val_mask], y_train[val_mask]), ("test", x_test, y_test)):
        order = rng.permutation(len(y))
        arrays[f"x_{key}"], arrays[f"y_{key}"] = x[order], y[order]
    return arrays


# ---------------------------------------------------------------------------------------------- writing

def _array_names(arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The arrays a version holds: the six splits, and the reviewed ones of a dataset prepared from reviews."""
    return ARRAY_NAMES + tuple(key for key in REVIEW_ARRAY_NAMES if key in arrays)


def content_version(arrays: dict[str, np.ndarray], class_names: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(class_names).encode())
    for key in _array_names(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()[:16]


def write_version(settings: Settings, name: str, raw: RawSplits, arrays: dict[str, np.ndarray],
                  source: str, config: PrepareConfig, extra: dict | None = None,
                  files: dict[str, str] | None = None) -> DatasetManifest:
    """Write the version folder atomically (or find it written); `extra`: more DatasetManifest fields,
    `files`: more text files (name -> content) beside manifest.json."""
    version = content_version(arrays, raw.class_names)
    root = settings.datasets_dir / check_name(name)
    final = root / version
    if (final / "manifest.json").exists():
        write_latest(root, version)
        return DatasetManifest.from_dict(json.loads((final / "manifest.json").read_text()))
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        manifest = _write_staging(staging, name, version, raw, arrays, source, config, extra or {})
        for file_name, text in (files or {}).items():
            (staging / file_name).write_text(text)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a disk-full or interrupted write leaves nothing
        raise
    try:
        os.rename(staging, final)  # atomic: a version folder is either complete or absent
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process wrote the same version first
        if not (final / "manifest.json").exists():
            raise
        manifest = DatasetManifest.from_dict(json.loads((final / "manifest.json").read_text()))
    write_latest(root, version)
    return manifest


def _write_staging(staging: Path, name: str, version: str, raw: RawSplits,
                   arrays: dict[str, np.ndarray], source: str, config: PrepareConfig, extra: dict) -> DatasetManifest:
    for key in _array_names(arrays):
        np.save(staging / f"{key}.npy", arrays[key])
    num_classes = len(raw.class_names)
    manifest = DatasetManifest(
        name=name,
        version=version,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source=source,
        class_names=raw.class_names,
        coarse_class_names=raw.coarse_class_names,
        fine_to_coarse=raw.fine_to_coarse,
        image_shape=[IMAGE_SIZE, IMAGE_SIZE, 3],
        counts={"train": len(arrays["y_train"]), "validation": len(arrays["y_val"]), "test": len(arrays["y_test"])},
        test_per_class=np.bincount(arrays["y_test"], minlength=num_classes).tolist(),
        skipped_files=raw.skipped,
        prepare_config=dataclasses.asdict(config),
        **extra,
    )
    (staging / "manifest.json").write_text(json.dumps(manifest.as_dict(), indent=1))
    return manifest


# ---------------------------------------------------------------------------------------------- stage

def resolve_source(name: str, source: str | None, settings: Settings, md5: str | None,
                   progress: bool = True) -> Path:
    """A local path for `source`: a path as given, or a URL downloaded (with checksum) under home."""
    official = OFFICIAL.get(name)
    if source is None:
        if official is None:
            raise DataError(f"dataset {name!r} has no official archive: give --source")
        source = official.url
    if "://" not in source:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{source}: no such file or folder")
        if md5:  # given for a local archive too, it is checked, never silently ignored
            if path.is_dir():
                raise DataError(f"{source}: --md5 checks an archive, and this is a folder")
            actual = download.md5_of(path)
            if actual != md5.strip().lower():
                raise download.DownloadError(f"{source}: md5 {actual} does not match the given {md5}")
        return path
    file_name = Path(urllib.parse.urlparse(source).path).name  # without any ?query or #fragment
    if not file_name:
        raise DataError(f"{source}: the URL names no file to download")
    if md5 is None and official is not None and file_name == Path(official.url).name:
        md5 = official.md5
    return download.fetch(source, settings.downloads_dir / file_name, md5, progress=progress)


def is_official_archive(path: Path) -> bool:
    if path.is_dir() or not tarfile.is_tarfile(path):
        return False
    with tarfile.open(path, "r:*") as tar:
        first = tar.next()
        while first is not None and not _member_name(first.name):  # a bare "./" entry
            first = tar.next()
    folders = {archive.folder for archive in OFFICIAL.values()}
    return first is not None and _member_name(first.name).split("/")[0] in folders


def prepare(name: str, source: str | None = None, settings: Settings | None = None,
            config: PrepareConfig = PrepareConfig(), md5: str | None = None,
            progress: bool = True) -> DatasetManifest:
    """Build (or find) the dataset version for `source` and return its manifest."""
    check_name(name)
    settings = settings or Settings.from_env()
    path = resolve_source(name, source, settings, md5, progress)
    if is_official_archive(path):
        raw = read_official(path, name)
    else:
        order = None
        if name == "cifar10":
            order = list(CIFAR10_CLASSES)
        elif name == "cifar100":
            order = cifar100_labels()["fine_names"]
        raw = read_image_tree(path, order)
    if name == "cifar100" and raw.fine_to_coarse is None:
        labels = cifar100_labels()
        raw.coarse_class_names, raw.fine_to_coarse = labels["coarse_names"], labels["fine_to_coarse"]
    arrays = split(raw, config)
    if source is None:
        source = OFFICIAL[name].url
    return write_version(settings, name, raw, arrays, source, config)
