"""airbench's optimizer as one Keras optimizer: Nesterov SGD with coupled L2 weight decay, a larger
learning rate for batch-norm biases, a whitening bias that learns for the first epochs only, and
lookahead (Zhang et al. 2019) on airbench's schedule. keras.ops only, so it runs on any backend.

Units: airbench states its rates for a summed loss and 1,024 images; Keras losses are means, so the
recipe converts (tasks/train/recipes.py). Here `learning_rate` is for the mean loss, `l2` is the coupled
decay coefficient (the gradient gains `l2 * w`, as in PyTorch's SGD `weight_decay`), and batch-norm
biases step `bias_lr_scale` times larger with `l2 / bias_lr_scale`, so every weight decays alike.
"""

from __future__ import annotations

import keras
from keras import ops


KERNEL_NAMES = ("kernel", "embeddings")  # what L2 decays; never batch-norm scales, biases or statistics


def with_l2(optimizer_class):
    """`optimizer_class` with a coupled L2 term on kernels: each kernel's gradient gains `l2 * w`
    before the optimizer's own update (an L2 loss term, unlike Keras' decoupled `weight_decay`)."""

    class CoupledL2(optimizer_class):
        def __init__(self, *args, l2: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.l2 = float(l2)

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            # by index: under TensorFlow, update_step sees the backend's variable, which has no Keras path
            self._l2_indices = {self._get_variable_index(v) for v in variables
                                if v.path.rsplit("/", 1)[-1] in KERNEL_NAMES}

        def update_step(self, gradient, variable, learning_rate):
            if self.l2 and self._get_variable_index(variable) in self._l2_indices:
                gradient = ops.cast(gradient, variable.dtype) + self.l2 * variable
            super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {**super().get_config(), "l2": self.l2}

    CoupledL2.__name__ = f"{optimizer_class.__name__}WithL2"
    return CoupledL2


@keras.saving.register_keras_serializable(package="hashtagger")
class AirbenchSGD(keras.optimizers.SGD):
    """SGD (Nesterov) + coupled L2 + batch-norm bias LR scale + timed whitening bias + lookahead.

    lookahead: every `lookahead_every` steps the slow weights move towards the fast ones,
    slow += (1 - decay) * (fast - slow), and the fast weights restart from them; decay grows as
    `lookahead_decay * (step / total_steps) ** 3`, airbench's `0.95**5 * (step/total)**3`.
    Call `finish(model variables)` after training to end on the slow weights, as airbench does.
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.85, l2: float = 0.0,
                 bias_lr_scale: float = 1.0, bias_names: tuple[str, ...] = ("beta",),
                 frozen_bias_after: int | None = None, frozen_bias_layer: str | None = None,
                 lookahead_every: int = 0, lookahead_decay: float = 0.95 ** 5, total_steps: int = 1,
                 **kwargs):
        kwargs.pop("nesterov", None)  # always Nesterov (get_config hands it back)
        super().__init__(learning_rate=learning_rate, momentum=float(momentum), nesterov=True, **kwargs)
        self.l2 = float(l2)
        self.bias_lr_scale = float(bias_lr_scale)
        self.bias_names = tuple(bias_names)
        self.frozen_bias_after = frozen_bias_after  # steps; None: the bias always learns
        self.frozen_bias_layer = frozen_bias_layer
        self.lookahead_every = int(lookahead_every)
        self.lookahead_decay = float(lookahead_decay)
        self.total_steps = max(1, int(total_steps))

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.slow = self.add_optimizer_variables(variables, "slow") if self.lookahead_every else []
        for slow, variable in zip(self.slow, variables):
            # a copy: under JAX, sharing the variable's buffer would donate one buffer twice per step
            slow.assign(ops.copy(variable.value))
        self._bias_indices = {self._get_variable_index(v) for v in variables
                              if v.path.rsplit("/", 1)[-1] in self.bias_names}
        self._timed_indices = {self._get_variable_index(v) for v in variables
                               if self.frozen_bias_layer and f"{self.frozen_bias_layer}/bias" in v.path}

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        learning_rate = ops.cast(learning_rate, variable.dtype)
        l2 = self.l2
        if index in self._bias_indices:
            learning_rate = learning_rate * self.bias_lr_scale
            l2 = self.l2 / self.bias_lr_scale
        if index in self._timed_indices and self.frozen_bias_after is not None:
            learning_rate = learning_rate * ops.cast(self.iterations < self.frozen_bias_after, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype) + l2 * variable
        if self.lookahead_every:
            # the slow weights start from the weights the run starts from: build()'s copy is lost when Keras
            # builds the optimizer inside fit's stateless symbolic build, which left them at zero (a run of
            # fewer than lookahead_every steps then ended on zeros, and the first pull shrank the weights)
            first = ops.cast(ops.equal(self.iterations, 0), variable.dtype)
            self.assign(self.slow[index], first * variable + (1.0 - first) * self.slow[index])
        super().update_step(gradient, variable, learning_rate)
        if self.lookahead_every:
            self._lookahead(self.slow[index], variable)

    def _lookahead(self, slow, variable):
        step = ops.cast(self.iterations + 1, variable.dtype)
        due = ops.cast(ops.equal(ops.mod(self.iterations + 1, self.lookahead_every), 0), variable.dtype)
        decay = self.lookahead_decay * ops.power(ops.minimum(step / self.total_steps, 1.0), 3.0)
        moved = slow + (1.0 - decay) * (variable - slow)
        self.assign(slow, due * moved + (1.0 - due) * slow)
        self.assign(variable, due * moved + (1.0 - due) * variable)

    def finish(self, variables) -> None:
        """End on the slow weights (airbench's last `lookahead_state.update(model, decay=1.0)`)."""
        if not self.lookahead_every or not self.built:
            return
        for variable in variables:
            index = self._get_variable_index(variable)
            variable.assign(self.slow[index])

    def get_config(self):
        return {**super().get_config(), "l2": self.l2, "bias_lr_scale": self.bias_lr_scale,
                "bias_names": list(self.bias_names), "frozen_bias_after": self.frozen_bias_after,
                "frozen_bias_layer": self.frozen_bias_layer, "lookahead_every": self.lookahead_every,
                "lookahead_decay": self.lookahead_decay, "total_steps": self.total_steps}
