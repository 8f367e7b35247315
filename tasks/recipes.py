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
    weight_decay: float = 5e-4  # decoupled, applied to kernels only (not batch-norm scales or biases)
    label_smoothing: float = 0.1
    batch_size: int = 128  # the best images/s on 2 CPU cores in FACTS.md; fine on a GPU too
    # on-device augmentation, in order: flip, translate (pad-and-crop by 4 px), rotate, hue, saturation, noise
    augment: tuple[str, ...] = ("flip", "translate")
    flip_tta: bool = True  # evaluate on the image and its mirror, averaged


FAST = Recipe(name="fast")

# The report's recipes: plain optimizers, its augmentation, no label smoothing.
REPORT_AUGMENT = ("flip", "translate", "rotate", "hue", "saturation", "noise")
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
    # VGG16-BN: 1e-3 halved on plateau, weight decay 5e-4.
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
        recipe = SEED[architecture]
    else:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dataclasses.replace(recipe, **(overrides or {}))
