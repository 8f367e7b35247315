"""Forward FLOPs per image, counted analytically from a built model's Conv2D and Dense layers.

Convention: one multiply-add is 2 FLOPs, and only convolutions and dense layers count (their
multiply-adds are more than 99% of the arithmetic in these networks); biases, batch norm,
activations, pooling, dropout and the additions of residual shortcuts are left out. A training step
costs about three forward passes (forward, and twice that for the backward pass), the convention
the benchmarks use.
"""

from __future__ import annotations

import math


def _layers(model):
    """Every layer of `model`, descending into nested models (a training model wraps the real one)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers(layer)
        else:
            yield layer


def layer_macs(layer) -> int:
    """Multiply-adds of one layer for one image (0 for layers that are not Conv2D or Dense)."""
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        _, out_height, out_width, out_channels = layer.output.shape
        kernel_height, kernel_width = layer.kernel_size
        in_channels = layer.input.shape[-1]
        per_output = kernel_height * kernel_width * in_channels // layer.groups
        return int(out_height * out_width * out_channels * per_output)
    if isinstance(layer, keras.layers.Dense):
        # a Dense on a (batch, ..., features) tensor runs once per leading position
        positions = math.prod(dim for dim in layer.input.shape[1:-1]) if len(layer.input.shape) > 2 else 1
        return int(positions * layer.input.shape[-1] * layer.units)
    return 0


def forward_flops(model) -> int:
    """Forward FLOPs (2 x multiply-adds of Conv2D and Dense layers) for one image."""
    return 2 * sum(layer_macs(layer) for layer in _layers(model))
