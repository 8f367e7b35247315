"""Training recipes: the report's own (`seed`) and a modern fast one (`fast`), one frozen config each."""

from __future__ import annotations

import dataclasses

RECIPES = ("seed", "fast", "airbench", "airbench96")


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    # sgd (Nesterov momentum), adam, rmsprop, or airbench_sgd (tasks/train/optimizers.py: Nesterov SGD with
    # coupled L2, a larger rate for batch-norm biases, a timed whitening bias and lookahead)
    optimizer: str = "sgd"
    learning_rate: float = 0.1  # peak rate for one_cycle, the starting rate otherwise
    # constant | one_cycle (linear warm-up then linear decay to 0) | steps | epoch_steps
    # | plateau (halve when stuck)
    # | triangle (airbench: schedule_start x peak rising to the peak, then falling to schedule_end x peak)
    schedule: str = "one_cycle"
    warmup_fraction: float = 0.2  # one_cycle, triangle: share of the steps spent rising to the peak
    schedule_start: float = 0.2  # triangle: the rate at step 0, as a share of the peak
    schedule_end: float = 0.07  # triangle: the rate at the last step, as a share of the peak
    # steps: (fraction of training done, learning rate from then on), e.g. ((0.5, 1e-4), (0.75, 7e-5));
    # epoch_steps: (epochs done, learning rate from then on), e.g. ((7, 1e-4), (16, 7e-5))
    step_rates: tuple[tuple[float, float], ...] = ()
    plateau_patience: int = 3  # plateau: epochs without validation gain before the rate is halved
    momentum: float = 0.9
    # Decoupled (Keras: w -= learning_rate * weight_decay * w each step), kernels only (not batch-norm
    # scales or biases). 5e-3 here shrinks weights as fast as the usual coupled L2 of 5e-4 under SGD with
    # momentum 0.9 does (that one acts through the momentum buffer, 1 / (1 - 0.9) = 10 times).
    weight_decay: float = 5e-3
    label_smoothing: float = 0.1
    batch_size: int = 128  # the best images/s on 2 CPU cores in FACTS.md; fine on a GPU too
    # on-device augmentation (tasks/train/augment.py), in order: flip, crop (pad 4 px and crop), translate,
    # rotate, hue, saturation, noise; or host-side, per epoch (tasks/train/batches.py): alternating_flip,
    # translateN (whole pixels, up to N), cutoutN (an N x N square set to the mean pixel)
    augment: tuple[str, ...] = ("flip", "crop")
    # test-time augmentation at evaluation: none, flip (the image and its mirror, averaged), or
    # flip_translate (also shifted one pixel up-left and down-right, each with its mirror: airbench's level 2)
    tta: str = "flip"
    epochs: int = 10  # what the recipe is planned for; `hashtagger train --epochs` overrides it
    # fewer epochs than this (or a train_limit) make a smoke run, never promoted automatically
    min_epochs: int = 8
    # coupled L2 on kernels: the gradient gains l2 * w (PyTorch's SGD weight_decay; Keras' L2(x) is
    # l2 = 2x), for a mean loss; any optimizer
    l2: float = 0.0
    # airbench_sgd only: batch-norm bias rate scale, epochs the whitening bias learns, lookahead period
    bias_lr_scale: float = 1.0
    whiten_bias_epochs: int = 0
    lookahead_every: int = 0  # steps; 0: no lookahead
    # outlier exposure (tasks/train/batches.py): images of classes outside the label set, appended to each
    # batch with a uniform target; the weight is Hendrycks et al.'s lambda
    # "" off; "cifar100" for a CIFAR-10 model, "cifar10" for a CIFAR-100 model (tasks/data/outliers.py)
    outlier_dataset: str = ""
    outlier_batch_fraction: float = 0.25  # outliers per batch, as a share of batch_size
    outlier_weight: float = 0.5


FAST = Recipe(name="fast", epochs=30, min_epochs=8)

# airbench94 (KellerJordan/cifar10-airbench, models/airbench.py), its units converted for a mean loss:
# airbench's rate 11.5 per 1,024 images of summed loss over 1024 x (1 + 1 / (1 - momentum)) is 1.5 for
# a mean loss at batch 1,024 (scale it with batch_size); its decay 0.0153 per 1,024 images is a coupled
# L2 of 0.0153 / 11.5 per unit of rate. It trains 9.9 epochs; 10 here. airbench95 is the same recipe
# with --model-set widths=[128,384,384] --recipe-set learning_rate=1.305 --epochs 15 (rate x 0.87).
AIRBENCH = Recipe(
    name="airbench", optimizer="airbench_sgd", learning_rate=1.5, schedule="triangle",
    warmup_fraction=0.23, momentum=0.85, weight_decay=0.0, l2=0.0153 / 11.5, bias_lr_scale=64.0,
    whiten_bias_epochs=3, lookahead_every=5, label_smoothing=0.2, batch_size=1024,
    augment=("alternating_flip", "translate2"), tta="flip_translate", epochs=10, min_epochs=8)

# airbench96 (`airbench96.py` as updated 2024-06-13: 96.01% in 31 epochs on the original pixels), for its
# network: --model-set 'widths=[128,512,512]' --model-set residual=true --model-set batch_norm_momentum=0.9
# (models/airbench.py). Its changes to airbench94's recipe: rate 9.0 (1.5 x 9.0 / 11.5 for a mean loss),
# decay 0.012 per 1,024 images, warm-up over 10% of the steps from 0.2 x the peak and warm-down all the way
# to 0, 12-pixel cutout and translation by up to 4 pixels, 31 epochs.
AIRBENCH96_NETWORK = {"widths": (128, 512, 512), "residual": True, "batch_norm_momentum": 0.9}
AIRBENCH96 = dataclasses.replace(
    AIRBENCH, name="airbench96", learning_rate=1.5 * 9.0 / 11.5, l2=0.012 / 9.0, warmup_fraction=0.1,
    schedule_start=0.2, schedule_end=0.0, augment=("alternating_flip", "translate4", "cutout12"), epochs=31,
    min_epochs=20)

# The report's recipes: plain optimizers, its augmentation (flips, small rotations, hue and saturation
# jitter, noise), no label smoothing, no test-time augmentation, its epoch counts. A full seed run is
# hundreds of CPU-hours here (reports/reproduction.md says which rows ran); min_epochs keeps shorter
# runs from being promoted automatically.
REPORT_AUGMENT = ("flip", "rotate", "hue", "saturation", "noise")
SEED = {
    # Keras example CNN: RMSprop at 1e-4, no decay, 250 epochs (the report's).
    "shallow": Recipe(name="seed", optimizer="rmsprop", learning_rate=1e-4, schedule="constant",
                      weight_decay=0.0, label_smoothing=0.0, augment=REPORT_AUGMENT, tta="none",
                      epochs=250, min_epochs=20),
    # All-conv: RMSprop at 1e-4 like the shallow net; 350 epochs, All-CNN-C's own (the report gives none).
    "allconv": Recipe(name="seed", optimizer="rmsprop", learning_rate=1e-4, schedule="constant",
                      weight_decay=0.0, label_smoothing=0.0, augment=REPORT_AUGMENT, tta="none",
                      epochs=350, min_epochs=20),
    # ResNet: Adam 1e-3 for epochs 1-7, 1e-4 for 8-16, 7e-5 for 17-30, 7e-6 after; 40 epochs. The steps
    # are at epoch boundaries, as the report states them (not fractions of the run).
    "resnet": Recipe(name="seed", optimizer="adam", learning_rate=1e-3, schedule="epoch_steps",
                     step_rates=((7, 1e-4), (16, 7e-5), (30, 7e-6)), weight_decay=0.0,
                     label_smoothing=0.0, augment=REPORT_AUGMENT, tta="none", epochs=40, min_epochs=10),
    # VGG16-BN: Adam 1e-3 halved on plateau, with the reference implementation's L2 term of 5e-4 on the
    # kernels (Keras L2(5e-4): the loss gains 5e-4 * sum(w^2), so the gradient gains 1e-3 * w; coupled,
    # as an L2 term is, not AdamW's decoupled decay, which at this rate was 2,000 times weaker); 250 epochs.
    "vgg16": Recipe(name="seed", optimizer="adam", learning_rate=1e-3, schedule="plateau",
                    weight_decay=0.0, l2=1e-3, label_smoothing=0.0, augment=REPORT_AUGMENT, tta="none",
                    epochs=250, min_epochs=20),
}
# ResNet-9 and airbench are not in the report; their `seed` recipe is the report's ResNet one.
SEED["resnet9"] = SEED["airbench"] = SEED["resnet"]


def recipe_for(name: str, architecture: str, overrides: dict | None = None) -> Recipe:
    """The recipe `name` as it applies to `architecture`, with field overrides (e.g. batch_size)."""
    if name == "fast":
        recipe = FAST
    elif name == "airbench":
        recipe = AIRBENCH
    elif name == "airbench96":
        recipe = AIRBENCH96
    elif name == "seed":
        if architecture not in SEED:
            raise ValueError(f"the seed recipe has no settings for architecture {architecture!r}")
        recipe = SEED[architecture]
    else:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dataclasses.replace(recipe, **checked_overrides(overrides))


# what a field's value must satisfy beyond its kind (models.kind_problem), and the words that say so
RANGES = {
    "learning_rate": (lambda v: v >= 0, "at least 0"), "batch_size": (lambda v: v >= 1, "at least 1"),
    "epochs": (lambda v: v >= 1, "at least 1"), "min_epochs": (lambda v: v >= 0, "at least 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "from 0 up to (not including) 1"),
    "momentum": (lambda v: 0 <= v < 1, "from 0 up to (not including) 1"),
    "warmup_fraction": (lambda v: 0 <= v <= 1, "from 0 to 1"),
    "schedule_start": (lambda v: v >= 0, "at least 0"), "schedule_end": (lambda v: v >= 0, "at least 0"),
    "weight_decay": (lambda v: v >= 0, "at least 0"), "l2": (lambda v: v >= 0, "at least 0"),
    "plateau_patience": (lambda v: v >= 1, "at least 1"), "bias_lr_scale": (lambda v: v > 0, "above 0"),
    "whiten_bias_epochs": (lambda v: v >= 0, "at least 0"), "lookahead_every": (lambda v: v >= 0, "at least 0"),
    "outlier_batch_fraction": (lambda v: 0 < v <= 1, "above 0, at most 1"),
    "outlier_weight": (lambda v: v >= 0, "at least 0"),
}


CHOICES = {  # text fields: the values the training code knows (tasks/train/train.py, schedules.py, evaluate.py)
    "optimizer": ("sgd", "adam", "rmsprop", "airbench_sgd"),
    "schedule": ("constant", "one_cycle", "steps", "epoch_steps", "plateau", "triangle"),
    "tta": ("none", "flip", "flip_translate"),
    "outlier_dataset": ("", "cifar10", "cifar100"),
}


def _value_problem(key: str, value) -> str | None:
    """Why an override of the right kind still cannot train (checked_overrides), else None."""
    import math

    numbers = [value] if isinstance(value, (int, float)) else \
        [item for part in value for item in (part if isinstance(part, tuple) else (part,))] \
        if isinstance(value, tuple) else []
    if any(isinstance(number, float) and not math.isfinite(number) for number in numbers):
        return "expected finite numbers"
    if key in CHOICES and value not in CHOICES[key]:
        return f"expected one of {', '.join(repr(choice) for choice in CHOICES[key])}"
    if key == "step_rates" and not all(
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(item, (int, float))
                                                                and not isinstance(item, bool) and item >= 0
                                                                for item in pair) for pair in value):
        return "expected a list of [when, rate] pairs of numbers at least 0, e.g. [[7, 1e-4], [16, 7e-5]]"
    if key in RANGES and not RANGES[key][0](value):
        return f"expected a value {RANGES[key][1]}"
    return None


def checked_overrides(overrides: dict | None) -> dict:
    """Recipe field overrides (from --recipe-set, JSON-parsed) as the frozen dataclass holds them; ValueError
    naming the field for one the recipe lacks, a value of another kind than the field's default
    (batch_size=abc) or one outside what trains (batch_size=0, label_smoothing=1.5)."""
    import difflib

    import models

    fields = {field.name: field for field in dataclasses.fields(Recipe) if field.name != "name"}
    unknown = sorted(set(overrides or {}) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        raise ValueError(f"recipe has no field {', '.join(unknown)}"
                         + (f" (did you mean {close[0]}?)" if close else "") + f"; fields: {', '.join(sorted(fields))}")
    values = {}
    for key, value in (overrides or {}).items():
        value = _frozen(value)
        problem = models.kind_problem(fields[key], value) or _value_problem(key, value)
        if problem:
            raise ValueError(f"recipe field {key}={overrides[key]!r}: {problem}")
        values[key] = value
    return values


def _frozen(value):
    """JSON lists (from --recipe-set) -> the tuples the frozen dataclass declares."""
    return tuple(_frozen(item) for item in value) if isinstance(value, list) else value
