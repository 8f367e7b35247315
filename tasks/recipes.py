"""Training recipes: the report's own (`seed`) and a modern fast one (`fast`), one frozen config each."""

from __future__ import annotations

import dataclasses

RECIPES = ("seed", "fast")


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str = "sgd"  # sgd (Nesterov momentum), adam or rmsprop
    learning_rate: float = 0.1  # peak rate for one_cycle, the starting rate otherwise
    # constant | one_cycle (linear warm-up then linear decay to 0) | steps | plateau (halve when stuck)
    schedule: str = "one_cycle"
    warmup_fraction: float = 0.2  # one_cycle: share of the steps spent rising to the peak
    # steps: (fraction of training done, learning rate from then on), e.g. ((0.5, 1e-4), (0.75, 7e-5))
    step_rates: tuple[tuple[float, float], ...] = ()
    plateau_patience: int = 3  # plateau: epochs without validation gain before the rate is halved
    momentum: float = 0.9
    # Decoupled (Keras: w -= learning_rate * weight_decay * w each step), kernels only (not batch-norm
    # scales or biases). 5e-3 here shrinks weights as fast as the usual coupled L2 of 5e-4 under SGD with
    # momentum 0.9 does (that one acts through the momentum buffer, 1 / (1 - 0.9) = 10 times).
    weight_decay: float = 5e-3
    label_smoothing: float = 0.1
    batch_size: int = 128  # the best images/s on 2 CPU cores in FACTS.md; fine on a GPU too
    # on-device augmentation (tasks/augment.py), in order: flip, crop (pad 4 px and crop), translate,
    # rotate, hue, saturation, noise
    augment: tuple[str, ...] = ("flip", "crop")
    flip_tta: bool = True  # evaluate on the image and its mirror, averaged


FAST = Recipe(name="fast")

# The report's recipes: plain optimizers, its augmentation (flips, small rotations, hue and saturation
# jitter, noise), no label smoothing, no test-time augmentation.
REPORT_AUGMENT = ("flip", "rotate", "hue", "saturation", "noise")
SEED = {
    # Keras example CNN and all-conv: RMSprop at 1e-4, no decay.
    "shallow": Recipe(name="seed", optimizer="rmsprop", learning_rate=1e-4, schedule="constant",
                      weight_decay=0.0, label_smoothing=0.0, augment=REPORT_AUGMENT, flip_tta=False),
    "allconv": Recipe(name="seed", optimizer="rmsprop", learning_rate=1e-4, schedule="constant",
                      weight_decay=0.0, label_smoothing=0.0, augment=REPORT_AUGMENT, flip_tta=False),
    # ResNet: Adam with the stepped 1e-3 / 1e-4 / 7e-5 / 7e-6 schedule.
    "resnet": Recipe(name="seed", optimizer="adam", learning_rate=1e-3, schedule="steps",
                     step_rates=((0.5, 1e-4), (0.75, 7e-5), (0.9, 7e-6)), weight_decay=0.0,
                     label_smoothing=0.0, augment=REPORT_AUGMENT, flip_tta=False),
    # VGG16-BN: 1e-3 halved on plateau, weight decay 5e-4 (AdamW's decoupled decay).
    "vgg16": Recipe(name="seed", optimizer="adam", learning_rate=1e-3, schedule="plateau",
                    weight_decay=5e-4, label_smoothing=0.0, augment=REPORT_AUGMENT, flip_tta=False),
}
# ResNet-9 is not in the report; its `seed` recipe is the report's ResNet one.
SEED["resnet9"] = SEED["resnet"]


def recipe_for(name: str, architecture: str, overrides: dict | None = None) -> Recipe:
    """The recipe `name` as it applies to `architecture`, with field overrides (e.g. batch_size)."""
    if name == "fast":
        recipe = FAST
    elif name == "seed":
        if architecture not in SEED:
            raise ValueError(f"the seed recipe has no settings for architecture {architecture!r}")
        recipe = SEED[architecture]
    else:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    fields = {field.name for field in dataclasses.fields(Recipe)} - {"name"}
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise ValueError(f"recipe has no field {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(recipe, **{key: _frozen(value) for key, value in (overrides or {}).items()})


def _frozen(value):
    """JSON lists (from --recipe-set) -> the tuples the frozen dataclass declares."""
    return tuple(_frozen(item) for item in value) if isinstance(value, list) else value
