"""Prepare stage, from reviews: a dataset version made of a base version plus the images people reviewed.

`hashtagger data prepare NAME --from-reviews --base cifar10` reads the answer that stands for each reviewed
image (the latest one not retracted: an undo is a row that retracts an answer, sql/018_image_reviews.sql),
reads the picture through the source of the run that tagged it (a folder or a bucket, as the review page
does), decodes it as serving does, and writes a version under NAME whose splits are:

- train: the reviewed images with their reviewed labels, then the base's training images (reviewed first, so
  that a short fine-tune with `--train-limit N` trains on all of them and the first base images);
- validation and test: the base's, unchanged (so test top-1 is still the base's test set);
- x_outliers: the reviewed images a person said none of the classes fits, for outlier exposure;
- x_reviewed, y_reviewed: the reviewed slice, a test set of the user's own images (label -1: none of these).

Which reviewed images form the slice depends only on each image's bytes (a hash of its content hash), so an
image once held out stays held out as reviews accumulate, and a copy of it under another name is held out
too: no later version trains on an earlier slice.
`reviews.json` beside the manifest lists every reviewed image with its split, or why it was skipped (a file
gone or changed since it was tagged, a label the base does not have): a skipped image never fails the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np
import sqlalchemy as sa

from tasks.config import Settings
from tasks.data import dataset as datasets
from tasks.data import images, prepare
from tasks.data.dataset import DatasetManifest

log = logging.getLogger(__name__)
NONE = -1  # y_reviewed of an image a person said none of the classes fits
SPLITS = ("train", "outliers", "slice", "skipped")


@dataclasses.dataclass(frozen=True)
class ReviewedConfig:
    """How a dataset is prepared from reviews; part of the version's identity (recorded in its manifest)."""

    base: str = "cifar10"  # the prepared dataset whose splits it extends; its classes are the labels allowed
    base_version: str | None = None  # None: the base's latest prepared version
    # Share of the reviewed images held out as the reviewed slice (the test set of the user's own images).
    # 0.2: of 500 reviews about 100 held out, enough for a confidence interval of about +-8 points.
    slice_fraction: float = 0.2
    # Times each reviewed training image appears in train: a few hundred among 45,000 base images are
    # seen once an epoch; a fine-tune of a few epochs may weigh them up (1: as many as any base image).
    repeat: int = 1
    max_read_bytes: int = 50 * 2**20  # a bigger file is skipped, as the review page shows no picture for it

    def __post_init__(self):
        if not 0.0 <= self.slice_fraction < 1.0:
            raise prepare.DataError(f"slice fraction {self.slice_fraction} is not in [0, 1)")
        if self.repeat < 1:
            raise prepare.DataError(f"repeat {self.repeat} must be at least 1")


def in_slice(content_hash: str, fraction: float) -> bool:
    """Whether the image of these bytes belongs to the reviewed slice: a uniform hash of its content hash
    below `fraction` (its name plays no part, so copies of one picture fall on one side)."""
    digest = hashlib.sha256(content_hash.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def read_reviewed(engine: sa.Engine, class_names: list[str], config: ReviewedConfig) -> tuple[list[dict], list]:
    """(manifest entries, tiles): one entry per image whose answer stands, in key order, with its `split`
    (train, outliers, slice or skipped, with `reason`); tiles (32x32x3 uint8, or None when skipped) alike."""
    from tasks.review import pictures
    from tasks.store import reviews_sql

    entries, tiles, opened = [], [], {}
    for answer in reviews_sql.standing_answers(engine):
        entry = {"image_key": answer["image_uri"], "name": answer["uri_text"] or answer["image_uri"],
                 "content_hash": answer["content_hash"], "label": answer["label"],
                 "reviewer": answer["reviewer"], "reviewed_at": _iso(answer["reviewed_at"]),
                 "model_version": answer["model_version"], "review_id": answer["review_id"]}
        tile, reason = None, None
        if answer["label"] is not None and answer["label"] not in class_names:
            reason = f"label {answer['label']!r} is not a class of {config.base}"
        else:
            try:
                data = pictures.stored_bytes(engine, answer["image_uri"], answer["content_hash"],
                                             config.max_read_bytes, opened)
                tile = images.decode(data)
            except (pictures.NoPicture, images.ImageError) as error:
                reason = str(error)
        if reason is not None:
            entry.update(split="skipped", reason=reason)
        elif in_slice(answer["content_hash"], config.slice_fraction):
            entry["split"] = "slice"
        else:
            entry["split"] = "outliers" if answer["label"] is None else "train"
        entries.append(entry)
        tiles.append(tile)
    return entries, tiles


def _iso(value) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value is not None else None)


def reviewed_arrays(base: datasets.Dataset, entries: list[dict], tiles: list,
                    config: ReviewedConfig) -> dict[str, np.ndarray]:
    """The version's arrays: the base's splits, train led by the reviewed training images (`repeat` times
    each), and the outliers and slice (uint8 (N, 32, 32, 3); labels int16, -1 for none)."""
    index = {name: position for position, name in enumerate(base.class_names)}
    shape = tuple(base.manifest["image_shape"])

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        chosen = [(tile, NONE if entry["label"] is None else index[entry["label"]])
                  for entry, tile in zip(entries, tiles) if entry["split"] == split]
        if not chosen:
            return np.zeros((0, *shape), np.uint8), np.zeros(0, np.int16)
        return np.stack([tile for tile, _ in chosen]), np.asarray([label for _, label in chosen], np.int16)

    x_new, y_new = stack("train")
    x_slice, y_slice = stack("slice")
    arrays = {key: np.asarray(base[key]) for key in datasets.ARRAY_NAMES}
    arrays["x_train"] = np.concatenate([x_new] * config.repeat + [arrays["x_train"]])
    arrays["y_train"] = np.concatenate([y_new] * config.repeat + [arrays["y_train"]]).astype(np.int16)
    arrays["x_outliers"] = stack("outliers")[0]
    arrays["x_reviewed"], arrays["y_reviewed"] = x_slice, y_slice
    return arrays


def prepare_from_reviews(name: str, engine: sa.Engine, settings: Settings | None = None,
                         config: ReviewedConfig = ReviewedConfig()) -> tuple[DatasetManifest, list[dict]]:
    """Build (or find) the version of `name` from `config.base` plus the reviews in the results database
    behind `engine`; returns its manifest and the entries of reviews.json. DataError when `name` is the
    base's, the base was itself prepared from reviews, or no answer stands; DatasetNotFound when the base
    is not prepared."""
    settings = settings or Settings.from_env()
    prepare.check_name(name)
    if name == config.base:
        raise prepare.DataError(f"give the reviewed dataset a name of its own, not the base's {name!r} "
                                f"(e.g. {name}-reviewed): the base's latest version stays what it is")
    base = datasets.load(config.base, config.base_version, settings)
    if base.manifest.get("base"):
        raise prepare.DataError(f"{config.base} was itself prepared from reviews: name the dataset it was "
                                f"built on ({base.manifest['base']['name']}) as --base")
    entries, tiles = read_reviewed(engine, base.class_names, config)
    if not entries:
        raise prepare.DataError("no reviewed images: answer some in `hashtagger review` first")
    counts = {split: sum(entry["split"] == split for entry in entries) for split in SPLITS}
    if counts["skipped"] == len(entries):
        raise prepare.DataError(f"none of the {len(entries)} reviewed images could be used, e.g. "
                                f"{entries[0]['name']}: {entries[0]['reason']}")
    arrays = reviewed_arrays(base, entries, tiles, config)
    counts["slice_none"] = int(np.sum(arrays["y_reviewed"] == NONE))
    raw = prepare.RawSplits(base.class_names, arrays["x_train"], arrays["y_train"], None, None,
                            base.manifest.get("coarse_class_names"), base.manifest.get("fine_to_coarse"),
                            [f"{entry['name']}: {entry['reason']}" for entry in entries if entry["split"] == "skipped"])
    extra = {"base": {"name": base.name, "version": base.version}, "reviewed": counts}
    manifest = prepare.write_version(settings, name, raw, arrays, f"{base.name} {base.version} + reviews",
                                     config, extra, {"reviews.json": json.dumps(entries, indent=1)})
    return manifest, entries


def new_answers(engine: sa.Engine, name: str, settings: Settings | None = None) -> int:
    """Answers that stand now and are not in the latest prepared version of `name` (its reviews.json):
    new images reviewed, and changed answers; all standing answers when `name` is not prepared yet."""
    from tasks.store import reviews_sql

    try:
        folder = datasets.find(name, None, settings or Settings.from_env())
        known = {entry["review_id"] for entry in json.loads((folder / "reviews.json").read_text())}
    except datasets.DatasetNotFound:
        known = set()
    return sum(answer["review_id"] not in known for answer in reviews_sql.standing_answers(engine))
