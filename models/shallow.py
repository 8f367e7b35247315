"""The Keras example CNN of the report: two blocks of two 3x3 convs and a max pool, dense 512.

Keras' `cifar10_cnn.py` example with the report's widths: per block a padded and an unpadded 3x3 conv,
2x2 max pool and dropout 0.25 (64 then 128 filters), then dense 512 with dropout 0.5 and dense classes.

For 32x32x3 input and 10 classes: 2,628,170 parameters (2,674,340 for 100 classes), 90% of them in
the first dense layer, and 158 MFLOPs forward per image (2 x multiply-adds of the convolutions and
dense layers, models/flops.py).
"""

from __future__ import annotations

import dataclasses

import keras

from models.layers import inputs_and_preprocessing


@dataclasses.dataclass(frozen=True)
class Config:
    block_filters: tuple[int, ...] = (64, 128)  # the report's widths (the Keras example used 32/64)
    block_dropout_rate: float = 0.25  # between blocks, as in the Keras example
    dense_units: int = 512
    dense_dropout_rate: float = 0.5


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    inputs, x = inputs_and_preprocessing(input_shape)
    for filters in config.block_filters:
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(config.block_dropout_rate)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(config.dense_units, activation="relu")(x)
    x = keras.layers.Dropout(config.dense_dropout_rate)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="shallow")
