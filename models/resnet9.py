"""ResNet-9 (Myrtle / airbench class): the fast modern network, trained with the `fast` recipe.

Page's ResNet-9 from "How to train your ResNet" (Myrtle.ai, 2018): a 64-filter prep conv, then three
layers of conv + max pool at 128, 256 and 512 filters, a two-conv residual after the first and the
last, global max pool, a bias-free dense layer and logits scaled by 1/8.

For 32x32x3 input and 10 classes: 6,580,672 parameters (6,626,752 for 100 classes) and 759 MFLOPs
forward per image (2 x multiply-adds of the convolutions and dense layers, models/flops.py).
"""

from __future__ import annotations

import dataclasses

import keras

from models.layers import BATCH_NORM_MOMENTUM, conv_bn_relu, inputs_and_preprocessing


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)  # prep, layer1, layer2, layer3
    logit_scale: float = 0.125  # scales logits before softmax, as in the Myrtle recipe (sharper training)
    batch_norm_momentum: float = BATCH_NORM_MOMENTUM  # PyTorch's default, as in Myrtle's code


def residual(x, filters: int, batch_norm_momentum: float):
    shortcut = x
    x = conv_bn_relu(x, filters, batch_norm_momentum=batch_norm_momentum)
    x = conv_bn_relu(x, filters, batch_norm_momentum=batch_norm_momentum)
    return keras.layers.Add()([shortcut, x])


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    prep, layer1, layer2, layer3 = config.widths
    momentum = config.batch_norm_momentum
    inputs, x = inputs_and_preprocessing(input_shape)
    x = conv_bn_relu(x, prep, batch_norm_momentum=momentum)
    x = conv_bn_relu(x, layer1, batch_norm_momentum=momentum)
    x = keras.layers.MaxPooling2D()(x)
    x = residual(x, layer1, momentum)
    x = conv_bn_relu(x, layer2, batch_norm_momentum=momentum)
    x = keras.layers.MaxPooling2D()(x)
    x = conv_bn_relu(x, layer3, batch_norm_momentum=momentum)
    x = keras.layers.MaxPooling2D()(x)
    x = residual(x, layer3, momentum)
    x = keras.layers.GlobalMaxPooling2D()(x)  # Myrtle's MaxPool(4) over the last 4x4 map
    x = keras.layers.Dense(num_classes, use_bias=False)(x)
    x = keras.layers.Rescaling(config.logit_scale)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="resnet9")
