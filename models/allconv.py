"""The all-convolutional net (Springenberg et al. 2015, All-CNN-C) of the report: strided convs, no pooling.

Two blocks of three 3x3 convs (96 then 192 filters) whose last conv has stride 2 in place of a pool,
then a 3x3 and a 1x1 conv at 192, a final 1x1 conv to the number of classes and global average
pooling. No dropout by default: the report describes none (the paper's 0.2 on the input and 0.5 after
each strided conv are `--model-set input_dropout_rate=0.2 --model-set block_dropout_rate=0.5`).

Ambiguity: the report gives the widths as "92/192"; 96/192 is chosen, All-CNN-C's own widths, as 92
is most likely a typo (nothing else in the report uses a width that is not a multiple of 32).

For 32x32x3 input and 10 classes: 1,372,810 parameters (1,390,180 for 100 classes) and 542 MFLOPs
forward per image (2 x multiply-adds of the convolutions, models/flops.py): the most arithmetic per
parameter of the five, since the first block runs 96 filters at full 32x32 resolution.
"""

from __future__ import annotations

import dataclasses

import keras

from models.layers import inputs_and_preprocessing


@dataclasses.dataclass(frozen=True)
class Config:
    block_filters: tuple[int, ...] = (96, 192)  # three 3x3 convs per block, the last one with stride 2
    input_dropout_rate: float = 0.0  # the paper: 0.2; the report: none
    block_dropout_rate: float = 0.0  # after each strided conv; the paper: 0.5; the report: none
    head_filters: int = 192  # 3x3 valid conv then 1x1 conv before the class conv


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    inputs, x = inputs_and_preprocessing(input_shape)
    if config.input_dropout_rate:
        x = keras.layers.Dropout(config.input_dropout_rate)(x)
    for filters in config.block_filters:
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        if config.block_dropout_rate:
            x = keras.layers.Dropout(config.block_dropout_rate)(x)
    x = keras.layers.Conv2D(config.head_filters, 3, padding="valid", activation="relu")(x)
    x = keras.layers.Conv2D(config.head_filters, 1, activation="relu")(x)
    x = keras.layers.Conv2D(num_classes, 1)(x)  # the final 1x1 conv to the number of classes
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="allconv")
