"""ResNet-9 (Myrtle / airbench class): the fast modern network, trained with the `fast` recipe."""

from __future__ import annotations

import dataclasses

import keras

from models.layers import conv_bn_relu, inputs_and_preprocessing


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)  # prep, layer1, layer2, layer3
    logit_scale: float = 0.125  # scales logits before softmax, as in the Myrtle recipe (sharper training)


def residual(x, filters: int):
    shortcut = x
    x = conv_bn_relu(x, filters)
    x = conv_bn_relu(x, filters)
    return keras.layers.Add()([shortcut, x])


def make_model(input_shape, num_classes: int, config: Config = Config()) -> keras.Model:
    prep, layer1, layer2, layer3 = config.widths
    inputs, x = inputs_and_preprocessing(input_shape)
    x = conv_bn_relu(x, prep)
    x = conv_bn_relu(x, layer1)
    x = keras.layers.MaxPooling2D()(x)
    x = residual(x, layer1)
    x = conv_bn_relu(x, layer2)
    x = keras.layers.MaxPooling2D()(x)
    x = conv_bn_relu(x, layer3)
    x = keras.layers.MaxPooling2D()(x)
    x = residual(x, layer3)
    x = keras.layers.GlobalMaxPooling2D()(x)
    x = keras.layers.Dense(num_classes, use_bias=False)(x)
    x = keras.layers.Rescaling(config.logit_scale)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="resnet9")
