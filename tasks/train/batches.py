"""Training batches made on the host in numpy, for recipes whose augmentation depends on the epoch.

airbench's augmentation: every image is mirrored with probability 1/2 in the first epoch, and from
then on every other epoch mirrors exactly the images the epoch before did not ("alternating flip",
more diverse than a coin toss each epoch), plus a random translation of up to `translate` pixels
with reflected borders, and (airbench96) cutout: a random square of each image set to the mean pixel
(DeVries & Taylor 2017; airbench96 zeroes it after standardisation: the same to within the rounding of
the mean to a whole pixel value). Optional outlier
exposure (Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure", ICLR 2019) appends `outlier_batch` images of classes outside the label set to
each batch, with the uniform distribution as their target.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def translate(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Each image shifted by a random whole number of pixels in [-pad, pad] per axis, reflected borders."""
    if pad == 0:
        return images
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rows = rng.integers(0, 2 * pad + 1, count)
    cols = rng.integers(0, 2 * pad + 1, count)
    out = np.empty_like(images)
    for row in range(2 * pad + 1):  # one slice per offset pair: (2 pad + 1)^2 vectorised copies
        for col in range(2 * pad + 1):
            picked = np.flatnonzero((rows == row) & (cols == col))
            out[picked] = padded[picked, row:row + height, col:col + width]
    return out


def cutout(images: np.ndarray, size: int, rng: np.random.Generator, fill) -> np.ndarray:
    """Each image (N, H, W, C) with one `size` x `size` square, placed at random wholly inside it, set
    to `fill` (one value per channel)."""
    if size == 0:
        return images
    count, height, width, _ = images.shape
    if not 0 < size <= min(height, width):
        raise ValueError(f"cutout of {size} pixels does not fit {height}x{width} images")
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(0, width - size + 1, count)
    rows = np.arange(height)[None, :] - tops[:, None]  # (N, H): each row's offset from its square's top
    cols = np.arange(width)[None, :] - lefts[:, None]  # (N, W)
    square = ((rows >= 0) & (rows < size))[:, :, None, None] & ((cols >= 0) & (cols < size))[:, None, :, None]
    return np.where(square, np.asarray(fill, dtype=images.dtype), images)


class AugmentedBatches(keras.utils.PyDataset):
    """(images, soft targets, sample weights) batches over the training images, reshuffled each epoch.

    Targets are one-hot (the loss applies label smoothing); outliers get 1/K in every class. Sample
    weights make the mean loss over a batch equal to airbench's mean loss over the labelled images
    plus `outlier_weight` times the mean uniform-target loss over the outliers (Hendrycks' lambda).
    The last incomplete batch is dropped, as airbench does.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                 translate_pixels: int = 2, alternating_flip: bool = True, seed: int = 0,
                 outliers: np.ndarray | None = None, outlier_batch: int = 0, outlier_weight: float = 0.5,
                 cutout_pixels: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
        self.num_classes, self.batch_size = num_classes, batch_size
        self.translate_pixels, self.alternating_flip = translate_pixels, alternating_flip
        self.cutout_pixels = cutout_pixels
        # the mean pixel: what the model's standardisation maps to zero, airbench96's cutout value
        self.fill = None if not cutout_pixels else \
            np.round(self.images.reshape(-1, self.images.shape[-1]).mean(axis=0)).astype(self.images.dtype)
        self.outliers = outliers if outliers is not None and outlier_batch else None
        self.outlier_batch = outlier_batch if self.outliers is not None else 0
        self.outlier_weight = outlier_weight
        self.seed = seed
        self.first_flips = np.random.default_rng(seed).random(len(self.images)) < 0.5
        self.start_at(0)

    def start_at(self, epoch: int) -> None:
        """Make the next batches those of `epoch` (0-based): a resumed run continues the same stream,
        since each epoch draws from its own generator, seeded by (seed, epoch)."""
        self.epoch = epoch
        self._prepare_epoch()

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def _prepare_epoch(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        flips = self.first_flips if self.epoch % 2 == 0 else ~self.first_flips
        if not self.alternating_flip:
            flips = rng.random(len(self.images)) < 0.5
        images = np.where(flips[:, None, None, None], self.images[:, :, ::-1], self.images)
        images = translate(images, self.translate_pixels, rng)
        self.epoch_images = cutout(images, self.cutout_pixels, rng, self.fill)
        self.order = rng.permutation(len(self.images))
        if self.outliers is not None:
            needed = len(self) * self.outlier_batch
            picked = rng.choice(len(self.outliers), needed, replace=needed > len(self.outliers))
            outliers = self.outliers[picked]
            mirror = rng.random(needed) < 0.5
            outliers = np.where(mirror[:, None, None, None], outliers[:, :, ::-1], outliers)
            outliers = translate(outliers, self.translate_pixels, rng)
            self.epoch_outliers = cutout(outliers, self.cutout_pixels, rng, self.fill)

    def on_epoch_end(self) -> None:
        self.start_at(self.epoch + 1)

    def __getitem__(self, index: int):
        picked = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.epoch_images[picked]
        targets = np.eye(self.num_classes, dtype="float32")[self.labels[picked]]
        if not self.outlier_batch:
            return images.astype("float32"), targets
        outliers = self.epoch_outliers[index * self.outlier_batch:(index + 1) * self.outlier_batch]
        total = self.batch_size + self.outlier_batch
        weights = np.concatenate([
            np.full(self.batch_size, total / self.batch_size, dtype="float32"),
            np.full(self.outlier_batch, self.outlier_weight * total / self.outlier_batch, dtype="float32")])
        uniform = np.full((self.outlier_batch, self.num_classes), 1.0 / self.num_classes, dtype="float32")
        return (np.concatenate([images, outliers]).astype("float32"),
                np.concatenate([targets, uniform]), weights)


def steps(images: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps of a run: whole batches per epoch times epochs, rounded up."""
    return math.ceil((images // batch_size) * epochs)
