"""Learning-rate schedules in keras.ops, so they run under any Keras backend."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hashtagger")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear rise from peak/10 to the peak over the warm-up, then linear decay to zero."""

    def __init__(self, peak: float, total_steps: int, warmup_fraction: float = 0.2):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = max(1.0, self.total_steps * self.warmup_fraction)
        rising = self.peak * (0.1 + 0.9 * step / warmup)
        falling = self.peak * ops.maximum(0.0, (self.total_steps - step) / max(1.0, self.total_steps - warmup))
        return ops.where(step < warmup, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction}


@keras.saving.register_keras_serializable(package="hashtagger")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """airbench's: linear from start x peak to the peak over the warm-up, then linear to end x peak."""

    def __init__(self, peak: float, total_steps: int, warmup_fraction: float = 0.23, start: float = 0.2,
                 end: float = 0.07):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.warmup_fraction, self.start, self.end = float(warmup_fraction), float(start), float(end)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(1, int(self.total_steps * self.warmup_fraction)))
        rising = self.start + (1.0 - self.start) * step / warmup
        fraction = ops.minimum(1.0, (step - warmup) / max(1.0, self.total_steps - warmup))
        falling = 1.0 + (self.end - 1.0) * fraction
        return self.peak * ops.where(step < warmup, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction,
                "start": self.start, "end": self.end}


def build(recipe, steps_per_epoch: int, epochs: int):
    """The learning rate (a float or a schedule) that `recipe` asks for over this many steps."""
    total = steps_per_epoch * epochs
    if recipe.schedule == "one_cycle":
        return OneCycle(recipe.learning_rate, total, recipe.warmup_fraction)
    if recipe.schedule == "triangle":
        return Triangle(recipe.learning_rate, total, recipe.warmup_fraction, recipe.schedule_start,
                        recipe.schedule_end)
    if recipe.schedule == "epoch_steps":
        boundaries = [max(1, int(epoch * steps_per_epoch)) for epoch, _ in recipe.step_rates]
        values = [recipe.learning_rate] + [rate for _, rate in recipe.step_rates]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if recipe.schedule == "steps":
        boundaries = [max(1, int(fraction * total)) for fraction, _ in recipe.step_rates]
        values = [recipe.learning_rate] + [rate for _, rate in recipe.step_rates]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if recipe.schedule in ("constant", "plateau"):
        return recipe.learning_rate
    raise ValueError(f"unknown schedule {recipe.schedule!r}")
