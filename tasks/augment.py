"""On-device augmentation (Keras preprocessing layers): active in training, identity at inference."""

from __future__ import annotations

import keras

PIXEL_RANGE = (0.0, 255.0)  # augmentation runs on raw pixels, before the model's own preprocessing


def layers_for(names: tuple[str, ...], seed: int = 0) -> list[keras.layers.Layer]:
    makers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        # 4 px of 32 each way, like the classic pad-4-and-crop
        "translate": lambda: keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed),
        "rotate": lambda: keras.layers.RandomRotation(15 / 360, fill_mode="reflect", seed=seed),  # +-15 deg
        "hue": lambda: keras.layers.RandomHue(0.05, value_range=PIXEL_RANGE, seed=seed),
        "saturation": lambda: keras.layers.RandomSaturation((0.4, 0.6), value_range=PIXEL_RANGE, seed=seed),
        "noise": lambda: keras.layers.GaussianNoise(4.0, seed=seed),  # about 1.5% of the pixel range
    }
    unknown = [name for name in names if name not in makers]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {', '.join(makers)}")
    return [makers[name]() for name in names]


def training_model(model: keras.Model, names: tuple[str, ...], seed: int = 0) -> keras.Model:
    """`model` behind the augmentation layers; train this, save `model`."""
    inputs = keras.Input(shape=model.input_shape[1:], name="pixels")
    x = keras.ops.cast(inputs, "float32")
    for layer in layers_for(names, seed):
        x = layer(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_training")
