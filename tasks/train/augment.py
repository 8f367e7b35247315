"""On-device augmentation (Keras layers, keras.ops only): active in training, identity at inference.

The layers sit in front of the model inside a separate training model, so the saved model never
carries them and any Keras backend runs them on the accelerator with the rest of the step.
"""

from __future__ import annotations

import keras
from keras import ops

PIXEL_RANGE = (0.0, 255.0)  # augmentation runs on raw pixels, before the model's own preprocessing
AUGMENTATIONS = ("flip", "crop", "translate", "rotate", "hue", "saturation", "noise")


@keras.saving.register_keras_serializable(package="hashtagger")
class RandomPadCrop(keras.layers.Layer):
    """Pad each side by `padding` pixels (reflected) and crop a random window of the original size.

    The classic CIFAR crop: whole-pixel shifts, no interpolation (Keras' RandomTranslation shifts by
    fractions of a pixel and blurs). Unlike keras.layers.RandomCrop it is the identity at inference.
    """

    def __init__(self, padding: int = 4, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.padding == 0:
            return inputs
        pad = self.padding
        batch = ops.shape(inputs)[0]
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        padded = ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")
        offsets = keras.random.randint((batch, 2), 0, 2 * pad + 1, seed=self.seed_generator)
        rows = offsets[:, 0:1] + ops.arange(height, dtype=offsets.dtype)[None, :]  # (batch, height)
        cols = offsets[:, 1:2] + ops.arange(width, dtype=offsets.dtype)[None, :]  # (batch, width)
        rows = ops.broadcast_to(rows[:, :, None, None], (batch, height, width + 2 * pad, channels))
        picked_rows = ops.take_along_axis(padded, rows, axis=1)
        cols = ops.broadcast_to(cols[:, None, :, None], (batch, height, width, channels))
        return ops.take_along_axis(picked_rows, cols, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}


@keras.saving.register_keras_serializable(package="hashtagger")
class PixelNoise(keras.layers.Layer):
    """Additive Gaussian noise in pixel units (0-255), in training only.

    keras.layers.GaussianNoise accepts a standard deviation of at most 1, meant for [0, 1] inputs.
    """

    def __init__(self, stddev: float = 4.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.stddev == 0:
            return inputs
        return inputs + keras.random.normal(ops.shape(inputs), stddev=self.stddev, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


def layers_for(names: tuple[str, ...], seed: int = 0) -> list[keras.layers.Layer]:
    makers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "crop": lambda: RandomPadCrop(4, seed=seed),  # pad 4 px (of 32) and crop: the fast recipe's
        # +-4 px in fractions of a pixel, as the report's Keras ImageDataGenerator shifted
        "translate": lambda: keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed),
        "rotate": lambda: keras.layers.RandomRotation(15 / 360, fill_mode="reflect", seed=seed),  # +-15 deg
        "hue": lambda: keras.layers.RandomHue(0.05, value_range=PIXEL_RANGE, seed=seed),
        # 0.5 leaves saturation as it is; (0.4, 0.6) scales it by roughly 0.7-1.5
        "saturation": lambda: keras.layers.RandomSaturation((0.4, 0.6), value_range=PIXEL_RANGE, seed=seed),
        "noise": lambda: PixelNoise(4.0, seed=seed),  # sigma 4 of 255: about 1.5% of the range
    }
    unknown = [name for name in names if name not in makers]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {', '.join(AUGMENTATIONS)} (or, on the "
                         f"host, alternating_flip with translateN and cutoutN: tasks/train/batches.py)")
    return [makers[name]() for name in names]


def training_model(model: keras.Model, names: tuple[str, ...], seed: int = 0) -> keras.Model:
    """`model` behind the augmentation layers; train this, save `model`."""
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    x = keras.ops.cast(inputs, "float32")
    for layer in layers_for(names, seed):
        x = layer(x)
    if set(names) & {"hue", "saturation", "noise"}:
        x = keras.ops.clip(x, *PIXEL_RANGE)  # colour jitter and noise can leave the pixel range
    return keras.Model(inputs, model(x), name=f"{model.name}_training")
