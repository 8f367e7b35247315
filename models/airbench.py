"""airbench: the fastest known CIFAR-10 network family (Keller Jordan, "94% on CIFAR-10 in 3.29
seconds on a single GPU", 2024, KellerJordan/cifar10-airbench), trained with the `airbench` recipe.

The network, as in `airbench94.py`: inputs standardised per channel; a 2x2 "whitening" convolution
(no padding) whose 24 filters are the 12 eigenvectors of the training set's 2x2 patch covariance,
scaled by 1/sqrt(eigenvalue), and their negatives (set by `init_whitening`, then frozen: only its bias
learns, and only for the first epochs); GELU; three groups of conv 3x3 -> max pool 2 -> batch norm ->
GELU -> conv 3x3 -> batch norm -> GELU at 64, 256 and 256 filters; a max pool over the last 3x3 map;
a bias-free dense layer; logits times 1/9. Batch norm has no learnable scale (only a bias), momentum
0.6 in Keras' sense (airbench's 0.6 is PyTorch's 0.4). Each 3x3 conv starts as a partial identity:
its first `in_channels` filters pass their input channel through (PyTorch's `dirac_`), the others
draw from PyTorch's default uniform(+-1/sqrt(fan_in)).

Differences from airbench94, on purpose: the standardisation statistics and the whitening are fitted
on the training split the model is trained on (airbench uses fixed CIFAR-10 constants and its first
5,000 training images), so the same builder serves CIFAR-100 and users' own datasets; the model ends
in a softmax, as every hashtagger model does (serving and calibration read probabilities); batch-norm
epsilon is 1e-5 (PyTorch's default; airbench's 1e-12 buys nothing in float32).

`widths=(128, 384, 384)` gives airbench95's network (the same blocks, wider). `residual=True` gives
airbench96's groups (`airbench96.py`, as updated 2024-06-13): a third conv 3x3 -> batch norm after the
second, the group's first GELU output added back to it before the last GELU; with
`widths=(128, 512, 512)` and `batch_norm_momentum=0.9` (PyTorch's default 0.1, which airbench96 keeps)
it is airbench96's network, trained with the `airbench96` recipe (tasks/train/recipes.py).

For 32x32x3 input and 10 classes: 1,973,950 parameters (1,996,990 for 100 classes) and 236 MFLOPs
forward per image (2 x multiply-adds of the convolutions and dense layers, models/flops.py); airbench96's
network (128/512/512, residual): 12,724,670 parameters and 1,230 MFLOPs (airbench95's width: 4,608,318
and 603 MFLOPs).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from models.layers import ChannelStandardization

WHITEN_LAYER = "whiten"  # name of the whitening conv: the recipe freezes its kernel and times its bias


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, int, int] = (64, 256, 256)  # the three conv groups; airbench95: (128, 384, 384)
    whiten_kernel: int = 2  # whitening patch size: 2x2 patches of 3 channels -> 12 eigenvectors, 24 filters
    batch_norm_momentum: float = 0.6  # Keras' sense (moving = 0.6 moving + 0.4 batch); airbench's own
    batch_norm_epsilon: float = 1e-5
    logit_scale: float = 1 / 9  # airbench's `scaling_factor`: logits times 1/9 before the softmax
    whiten_epsilon: float = 5e-4  # added to the eigenvalues before 1/sqrt (airbench's)
    residual: bool = False  # airbench96: a third conv per group, the group's first activation added back


@keras.saving.register_keras_serializable(package="hashtagger")
class PartialIdentity(keras.initializers.Initializer):
    """3x3 conv kernel whose first min(in, out) filters are the identity (PyTorch's `dirac_` on
    `weight[:in_channels]`), the rest uniform(+-1/sqrt(fan_in)), PyTorch's default conv init."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        height, width, in_channels, out_channels = shape
        bound = 1.0 / math.sqrt(height * width * in_channels)
        kernel = keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)
        identity = np.zeros(shape, dtype="float32")
        count = min(in_channels, out_channels)
        identity[height // 2, width // 2, np.arange(count), np.arange(count)] = 1.0
        keep = np.ones(shape, dtype="float32")
        keep[:, :, :, :count] = 0.0  # the identity filters are exactly the identity, nothing else
        return ops.cast(kernel, "float32") * keep + identity

    def get_config(self):
        return {"seed": self.seed}


def conv(x, filters: int, name: str):
    return keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name,
                               kernel_initializer=PartialIdentity())(x)


def batch_norm(x, config: Config, name: str):
    return keras.layers.BatchNormalization(momentum=config.batch_norm_momentum, scale=False,
                                           epsilon=config.batch_norm_epsilon, name=name)(x)


def conv_group(x, filters: int, config: Config, index: int):
    x = conv(x, filters, f"group{index}_conv1")
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Activation("gelu")(batch_norm(x, config, f"group{index}_norm1"))
    if not config.residual:
        x = conv(x, filters, f"group{index}_conv2")
        return keras.layers.Activation("gelu")(batch_norm(x, config, f"group{index}_norm2"))
    shortcut = x
    x = conv(x, filters, f"group{index}_conv2")
    x = keras.layers.Activation("gelu")(batch_norm(x, config, f"group{index}_norm2"))
    x = batch_norm(conv(x, filters, f"group{index}_conv3"), config, f"group{index}_norm3")
    return keras.layers.Activation("gelu")(keras.layers.Add()([x, shortcut]))


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    channels = input_shape[-1]
    whiten_filters = 2 * channels * config.whiten_kernel ** 2
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = ChannelStandardization(channels, name="preprocess")(inputs)
    whiten = keras.layers.Conv2D(whiten_filters, config.whiten_kernel, padding="valid", name=WHITEN_LAYER)
    x = keras.layers.Activation("gelu")(whiten(x))
    whiten.kernel.trainable = False  # set by init_whitening and kept: only its bias learns
    for index, filters in enumerate(config.widths, start=1):
        x = conv_group(x, filters, config, index)
    x = keras.layers.GlobalMaxPooling2D()(x)  # airbench's MaxPool2d(3) over the last 3x3 map
    bound = 1.0 / math.sqrt(config.widths[-1])  # PyTorch's default nn.Linear init
    x = keras.layers.Dense(num_classes, use_bias=False, name="head",
                           kernel_initializer=keras.initializers.RandomUniform(-bound, bound))(x)
    x = keras.layers.Rescaling(config.logit_scale)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="airbench")


def init_whitening(model: keras.Model, images: np.ndarray, config: Config = Config(),
                   sample: int = 5000) -> None:
    """Set the whitening conv from the patch covariance of `images` (uint8, (N, H, W, C); the first
    `sample` are used, as airbench uses its first 5,000 training images).

    The covariance is airbench's: uncentred, of standardised pixels. Filters 0..11 are the
    eigenvectors (largest eigenvalue first) divided by sqrt(eigenvalue + epsilon), 12..23 their
    negatives, so that GELU keeps both signs of each whitened component.
    """
    standardise = model.get_layer("preprocess")
    whiten = model.get_layer(WHITEN_LAYER)
    size = config.whiten_kernel
    pixels = np.asarray(standardise(np.asarray(images[:sample], dtype="float32")), dtype=np.float64)
    count, height, width, channels = pixels.shape
    patches = np.lib.stride_tricks.sliding_window_view(pixels, (size, size), axis=(1, 2))
    # (N, H-size+1, W-size+1, C, size, size) -> flatten each patch in (row, col, channel) order,
    # Keras' kernel layout
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * channels)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + config.whiten_epsilon)
    kernel = np.concatenate([scaled, -scaled], axis=1).reshape(size, size, channels, -1)
    whiten.kernel.assign(kernel.astype("float32"))
