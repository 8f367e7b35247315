"""Keras 3 architectures, backend-agnostic (keras / keras.ops only), one module each.

Every module has a frozen `Config` and `make_model(input_shape, num_classes, config) -> keras.Model`,
and states in its docstring its parameter count and forward FLOPs per 32x32x3 image (counted by
`models.flops`; tests/models/test_models.py checks the stated figures against the built models).
Importing this package does not import Keras; `build` does.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib

ARCHITECTURES = ("shallow", "allconv", "resnet", "vgg16", "resnet9", "airbench")


class UnknownArchitecture(ValueError):
    """The name is not one of ARCHITECTURES."""


def module(name: str):
    if name not in ARCHITECTURES:
        raise UnknownArchitecture(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return importlib.import_module(f"models.{name}")


def config_for(name: str, overrides: dict | None = None):
    """The architecture's Config, with overrides (lists become tuples, as the dataclass declares).

    ValueError for a field the Config lacks or a value of another kind than the field's default: a bool
    for a bool (`residual=maybe` would otherwise switch it on), numbers for numbers, and for a tuple a
    list of the same kind of items, as many as a fixed-length annotation (`tuple[int, int, int]`) says.
    """
    config_class = module(name).Config
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    values = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            raise ValueError(f"{name} has no config field {key!r}" + (f" (did you mean {close[0]}?)" if close else "")
                             + f"; fields: {', '.join(sorted(fields))}")
        value = tuple(value) if isinstance(value, list) else value
        problem = kind_problem(fields[key], value) or range_problem(key, value, fields[key].default)
        if problem:
            raise ValueError(f"{name} config field {key}={overrides[key]!r}: {problem}")
        values[key] = value
    return config_class(**values)


def kind_problem(field: dataclasses.Field, value) -> str | None:
    """Why `value` cannot stand for a frozen dataclass `field` (judged by its default and annotation), else
    None; used for network configs here and training recipes (tasks/train/recipes.py)."""
    default = field.default

    def same_kind(item, example) -> bool:
        if isinstance(example, bool):
            return isinstance(item, bool)
        if isinstance(example, float):
            return isinstance(item, (int, float)) and not isinstance(item, bool)
        if isinstance(example, int):
            return isinstance(item, int) and not isinstance(item, bool)
        return isinstance(item, type(example))

    if isinstance(default, tuple):
        if not default:  # an empty default says nothing of its items: a list is all that can be checked
            return None if isinstance(value, tuple) else "expected a list"
        if not isinstance(value, tuple) or not all(same_kind(item, default[0]) for item in value):
            return f"expected a list like {list(default)}"
        annotation = str(field.type)
        if "..." not in annotation and len(value) != len(default):
            return f"expected {len(default)} items, as {annotation} declares"
        return None
    if not same_kind(value, default):
        return f"expected {'true or false' if isinstance(default, bool) else type(default).__name__}"
    return None


def range_problem(key: str, value, default) -> str | None:
    """Why a network field's value of the right kind still cannot build or train (a zero width, a dropout
    rate of 1.5, a batch-norm momentum of 1.5 or a negative epsilon, which train to NaN), else None. Judged by
    the field's name, shared across the architectures' Configs."""
    import math

    numbers = list(value) if isinstance(value, tuple) else [value]
    if any(isinstance(number, float) and not math.isfinite(number) for number in numbers):
        return "expected finite numbers"
    if key in ("widths", "block_filters", "stage_filters", "convs_per_block") and min(numbers, default=1) < 1:
        return "expected every item at least 1"
    if key in ("whiten_kernel", "head_filters", "stem_filters") and value < 1:
        return "expected a value at least 1"
    if key == "dense_units" and value < (1 if default else 0):  # 0 means no hidden layer only where it is the default
        return f"expected a value at least {1 if default else 0}"
    if (key.endswith("dropout_rate") or key == "batch_norm_momentum") and not 0 <= value < 1:
        return "expected a value from 0 up to (not including) 1"
    if key in ("batch_norm_epsilon", "whiten_epsilon", "logit_scale") and not value > 0:
        return "expected a value above 0"
    return None


def build(name: str, input_shape=(32, 32, 3), num_classes: int = 10, overrides: dict | None = None):
    """A fresh, untrained model of architecture `name`."""
    return module(name).make_model(tuple(input_shape), num_classes, config_for(name, overrides))
