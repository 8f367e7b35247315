"""VGG16 with batch norm after every conv and dropout after every pool, filters reduced to 16-128.

The report's best CIFAR-10 network (93.48%), shrunk so it trains on a CPU: the 13 convolutions keep the
VGG16 layout (2-2-3-3-3 per block) with 16/32/64/128/128 filters, then one dense layer of 512 units.

For 32x32x3 input and 10 classes: 999,738 parameters (1,045,908 for 100 classes) and 40 MFLOPs
forward per image (2 x multiply-adds of the convolutions and dense layers, models/flops.py).
"""

from __future__ import annotations

import dataclasses

import keras

from models.layers import batch_norm, conv_bn_relu, inputs_and_preprocessing


@dataclasses.dataclass(frozen=True)
class Config:
    block_filters: tuple[int, ...] = (16, 32, 64, 128, 128)  # VGG16's 64..512 divided by 4
    convs_per_block: tuple[int, ...] = (2, 2, 3, 3, 3)  # VGG16's layout
    pool_dropout_rate: float = 0.1  # after each pool; small because the reduced net underfits first
    dense_units: int = 512
    dense_dropout_rate: float = 0.4


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    inputs, x = inputs_and_preprocessing(input_shape)
    for filters, convs in zip(config.block_filters, config.convs_per_block):
        for _ in range(convs):
            x = conv_bn_relu(x, filters)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(config.pool_dropout_rate)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(config.dense_units, use_bias=False)(x)
    x = batch_norm()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(config.dense_dropout_rate)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="vgg16")
