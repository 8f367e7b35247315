"""The report's ResNet: per stage two identity blocks then one projection block (1x1 conv shortcut).

Both block types are two 3x3 convs with batch norm; the identity block adds its input back unchanged,
the projection block downsamples (first conv strided) and its shortcut is a strided 1x1 conv to the
new width. A 32-filter stem, then stages at 32, 64 and 128 filters, each two identity blocks followed
by the projection block that leads into the next stage (the last stage ends at its identity blocks,
where the head takes over); global average pooling and a dense layer to the classes. The report
describes no hidden dense head or dropout; `--model-set dense_units=256 --model-set dense_dropout_rate=0.3`
adds the ones earlier versions of this module had.

Ambiguity: the report gives the block pattern but not the depth; three stages (32, 64, 128 filters) of
two identity blocks and one projection block are chosen: 8 residual blocks, 17 weighted layers plus
the classifier, the size of the CIFAR ResNets of He et al. (ResNet-20) that the pattern comes from.

For 32x32x3 input and 10 classes: 1,072,106 parameters (1,083,716 for 100 classes) and 287 MFLOPs
forward per image (2 x multiply-adds of the convolutions and dense layers, models/flops.py).
"""

from __future__ import annotations

import dataclasses

import keras

from models.layers import batch_norm, conv_bn_relu, inputs_and_preprocessing


@dataclasses.dataclass(frozen=True)
class Config:
    stem_filters: int = 32
    stage_filters: tuple[int, ...] = (32, 64, 128)  # identity blocks at this width, projection to the next
    dense_units: int = 0  # a hidden dense layer before the classes; 0: none (the report's)
    dense_dropout_rate: float = 0.0


def identity_block(x, filters: int):
    """Two 3x3 convs; the input is added back unchanged."""
    shortcut = x
    x = conv_bn_relu(x, filters)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
    x = batch_norm()(x)
    return keras.layers.ReLU()(keras.layers.Add()([shortcut, x]))


def projection_block(x, filters: int, strides: int = 2):
    """Two 3x3 convs (the first strided); the shortcut is a strided 1x1 conv to the new width."""
    shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                   kernel_initializer="he_normal")(x)
    shortcut = batch_norm()(shortcut)
    x = conv_bn_relu(x, filters, strides=strides)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
    x = batch_norm()(x)
    return keras.layers.ReLU()(keras.layers.Add()([shortcut, x]))


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    inputs, x = inputs_and_preprocessing(input_shape)
    x = conv_bn_relu(x, config.stem_filters)
    widths = list(config.stage_filters)
    for index, filters in enumerate(widths):
        if x.shape[-1] != filters:
            x = projection_block(x, filters, strides=1)
        x = identity_block(x, filters)
        x = identity_block(x, filters)
        if index + 1 < len(widths):
            x = projection_block(x, widths[index + 1])
    x = keras.layers.GlobalAveragePooling2D()(x)
    if config.dense_units:
        x = keras.layers.Dense(config.dense_units, activation="relu")(x)
    if config.dense_dropout_rate:
        x = keras.layers.Dropout(config.dense_dropout_rate)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="resnet")
