"""Keras 3 architectures, backend-agnostic (keras / keras.ops only), one module each.

Every module has a frozen `Config` and `make_model(input_shape, num_classes, config) -> keras.Model`,
and states in its docstring its parameter count and forward FLOPs per 32x32x3 image (counted by
`models.flops`; tests/models/test_models.py checks the stated figures against the built models).
Importing this package does not import Keras; `build` does.
"""

from __future__ import annotations

import dataclasses
import importlib

ARCHITECTURES = ("shallow", "allconv", "resnet", "vgg16", "resnet9", "airbench")


class UnknownArchitecture(ValueError):
    """The name is not one of ARCHITECTURES."""


def module(name: str):
    if name not in ARCHITECTURES:
        raise UnknownArchitecture(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return importlib.import_module(f"models.{name}")


def config_for(name: str, overrides: dict | None = None):
    """The architecture's Config, with overrides (lists become tuples, as the dataclass declares)."""
    config_class = module(name).Config
    fields = {field.name for field in dataclasses.fields(config_class)}
    values = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ValueError(f"{name} has no config field {key!r}; fields: {', '.join(sorted(fields))}")
        values[key] = tuple(value) if isinstance(value, list) else value
    return config_class(**values)


def build(name: str, input_shape=(32, 32, 3), num_classes: int = 10, overrides: dict | None = None):
    """A fresh, untrained model of architecture `name`."""
    return module(name).make_model(tuple(input_shape), num_classes, config_for(name, overrides))
