"""Layers shared by the architectures: the report's preprocessing, inside the model."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="hashtagger")
class PixelMeanSubtraction(keras.layers.Layer):
    """Raw 0-255 pixels -> [0, 1] minus the training set's per-pixel mean (the report's preprocessing).

    The mean is a (32, 32, 3) weight saved with the model, so a saved model takes raw pixels and needs
    nothing else at serving time.
    """

    def __init__(self, image_shape=(32, 32, 3), **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.pixel_mean = self.add_weight(shape=self.image_shape, initializer="zeros",
                                          trainable=False, name="pixel_mean")

    def fit_statistics(self, images: np.ndarray) -> None:
        """Fit the mean on uint8 training images (N, H, W, C), in chunks to keep memory flat."""
        total = np.zeros(self.image_shape, dtype=np.float64)
        for start in range(0, len(images), 10_000):
            total += np.asarray(images[start:start + 10_000], dtype=np.float64).sum(axis=0)
        self.pixel_mean.assign((total / len(images) / 255.0).astype("float32"))

    def call(self, inputs):
        return ops.cast(inputs, "float32") / 255.0 - self.pixel_mean

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape)}


@keras.saving.register_keras_serializable(package="hashtagger")
class ChannelStandardization(keras.layers.Layer):
    """Raw 0-255 pixels -> [0, 1], minus the training set's per-channel mean, over its per-channel
    standard deviation (airbench's preprocessing). Mean and deviation are weights saved with the model.
    """

    def __init__(self, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.channel_mean = self.add_weight(shape=(self.channels,), initializer="zeros",
                                            trainable=False, name="channel_mean")
        self.channel_std = self.add_weight(shape=(self.channels,), initializer="ones",
                                           trainable=False, name="channel_std")

    def fit_statistics(self, images: np.ndarray) -> None:
        """Fit mean and deviation on uint8 training images (N, H, W, C), in chunks."""
        total = np.zeros(self.channels, dtype=np.float64)
        squares = np.zeros(self.channels, dtype=np.float64)
        count = 0
        for start in range(0, len(images), 10_000):
            chunk = np.asarray(images[start:start + 10_000], dtype=np.float64).reshape(-1, self.channels) / 255.0
            total += chunk.sum(axis=0)
            squares += np.square(chunk).sum(axis=0)
            count += len(chunk)
        mean = total / count
        self.channel_mean.assign(mean.astype("float32"))
        self.channel_std.assign(np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12)).astype("float32"))

    def call(self, inputs):
        return (ops.cast(inputs, "float32") / 255.0 - self.channel_mean) / self.channel_std

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="hashtagger")
class ErfGelu(keras.layers.Layer):
    """Exact GELU written as 0.5 x (1 + erf(x / sqrt 2)): the same function as Activation("gelu"),
    in an op ONNX has (TensorFlow's own GELU uses Erfc, which tf2onnx cannot export)."""

    def call(self, inputs):
        return 0.5 * inputs * (1.0 + ops.erf(inputs * 0.7071067811865476))

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_gelu(layer) -> bool:
    return isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.gelu


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, those of the models nested in it (a served-TTA wrapper's) included."""
    found = []
    for layer in model.layers:
        found.extend(all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return found


def exportable(model: keras.Model) -> keras.Model:
    """`model` with every exact-GELU activation replaced by `ErfGelu` (same weights, same outputs to
    float rounding), so that tf2onnx can export it; nested models (a served-TTA wrapper's) too."""
    def swap(layer):
        if isinstance(layer, keras.Model):
            return exportable(layer)
        if _is_gelu(layer):
            return ErfGelu(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    if not any(_is_gelu(layer) for layer in all_layers(model)):
        return model
    clone = keras.models.clone_model(model, clone_function=swap)
    clone.set_weights(model.get_weights())
    return clone


def preprocessing_layer(model: keras.Model) -> PixelMeanSubtraction | ChannelStandardization:
    """The model's input preprocessing, whose statistics `fit_statistics` sets from training images."""
    for layer in all_layers(model):
        if isinstance(layer, (PixelMeanSubtraction, ChannelStandardization)):
            return layer
    raise ValueError(f"model {model.name} has no preprocessing layer")


@keras.saving.register_keras_serializable(package="hashtagger")
class HorizontalFlip(keras.layers.Layer):
    """Images (N, H, W, C) mirrored left-right (the width axis reversed); any dtype, same shape."""

    def call(self, inputs):
        return ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


FLIP_TTA_OUTPUT = "flip_tta_mean"  # the name of a served-TTA wrapper's output layer: how `tta_mode` knows one


def with_flip_tta(model: keras.Model) -> keras.Model:
    """A model whose output is the mean of `model`'s probabilities for each image and its mirror.

    `model`: float32 (N, H, W, C) raw pixels -> (N, classes) probabilities. The result takes the same
    input and gives (N, classes) probabilities that still sum to 1, the same figures as
    tasks/evaluate/evaluate.py `tta_probabilities(model.predict_on_batch, x, "flip")` at twice the
    inference cost. `model` is nested (called twice, one set of weights). ValueError for a model that
    already is such a wrapper.
    """
    if tta_mode(model) != "none":
        raise ValueError(f"model {model.name} already averages over flips (test-time augmentation inside)")
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="pixels")
    mirrored = HorizontalFlip(name="mirror")(inputs)
    outputs = keras.layers.Average(name=FLIP_TTA_OUTPUT, dtype="float32")([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_tta")


def tta_mode(model: keras.Model) -> str:
    """The test-time augmentation built into `model`: flip (a `with_flip_tta` wrapper) or none."""
    return "flip" if any(layer.name == FLIP_TTA_OUTPUT for layer in model.layers) else "none"


# Batch-norm moving statistics: PyTorch's default (its momentum 0.1 is 1 - Keras' momentum). With Keras'
# own 0.99 the inference statistics lag the weights for hundreds of steps: after two epochs of 4,096
# images a VGG16 scored 27% with batch statistics and 9% (chance) with its moving ones.
BATCH_NORM_MOMENTUM = 0.9


def batch_norm():
    return keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)


def conv_bn_relu(x, filters: int, strides: int = 1, kernel_size: int = 3, name: str | None = None,
                 batch_norm_momentum: float = BATCH_NORM_MOMENTUM):
    """3x3 conv (no bias: batch norm follows) -> batch norm -> ReLU."""
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=name)(x)
    x = keras.layers.BatchNormalization(momentum=batch_norm_momentum)(x)
    return keras.layers.ReLU()(x)


def inputs_and_preprocessing(input_shape):
    """Model input for raw pixels (any numeric dtype, 0-255) and the preprocessed tensor."""
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    return inputs, PixelMeanSubtraction(tuple(input_shape), name="preprocess")(inputs)
