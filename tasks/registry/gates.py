"""Promotion gates: what a challenger must show before automatic promotion makes it champion.

1. A full training run: a run with `train_limit`, or fewer epochs done than its recipe's `min_epochs`,
   is a smoke run (it proves the pipeline works, not that the model is good).
2. A floor per dataset, well above chance, so that a broken run never serves even on an empty registry.
3. Beating the serving champion by `margin` on the test split of the same dataset version
   (tasks/registry/registry.py `decide_promotion`: it needs both models' evaluations).
4. Not doing worse than the champion on the reviewed slice (the user's own reviewed images, held out:
   tasks/data/reviewed.py) by more than `reviewed_margin`, when both were evaluated on the same slice.
5. One pass per image: a model that serves test-time augmentation inside (`hashtagger models tta`) is
   promoted by hand only; its figure is not comparable to a one-pass champion's, and it multiplies the
   nightly inference cost, a trade a person makes.

A manual `hashtagger models promote` skips these gates; every refusal is recorded in `model_events`.
"""

from __future__ import annotations

import dataclasses
import types

from tasks.evaluate.result import EvaluationResult


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Thresholds of automatic promotion; override with dataclasses.replace, never by editing."""

    # test top-1 gain over the champion, on the same dataset version: 0.002 = 0.2 points, about 20 of
    # CIFAR's 10,000 test images, more than two seeds of one recipe differ by
    margin: float = 0.002
    # test top-1 below which a model never serves automatically: chance is 0.10 (CIFAR-10) and 0.01
    # (CIFAR-100); these sit far above chance and far below what a full run of any recipe reaches here
    floors: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({"cifar10": 0.5, "cifar100": 0.3}))
    default_floor: float = 0.3  # datasets without their own floor
    # reviewed-slice top-1 a challenger may lose against the champion on the same slice: 0.0 = none at all.
    # The slice is the user's own photos, the figure they judge the tagger by; a model that gets fewer of
    # them right does not serve automatically, whatever its CIFAR test figure (promote by hand to override).
    reviewed_margin: float = 0.0


DEFAULT = GateConfig()


def smoke_reason(metadata: dict) -> str | None:
    """Why the artifact is a smoke run (not promotable automatically), or None for a full run.

    Reads the artifact's `train_config` (epochs, train_limit), `epochs_done` and `recipe` (min_epochs;
    recipes saved before that field existed take the current recipe's value).
    """
    train_config = metadata.get("train_config")
    if not isinstance(train_config, dict) or "epochs_done" not in metadata:
        return "no training record (train_config, epochs_done) in its metadata: promote it by hand if you trust it"
    if train_config.get("train_limit"):
        return f"smoke run: trained on the first {train_config['train_limit']} images only (train_limit)"
    minimum = _min_epochs(metadata.get("recipe"))
    done = int(metadata["epochs_done"])
    if done < minimum:
        return f"smoke run: {done} epochs done, below the recipe's minimum of {minimum}"
    return None


def serving_tta_reason(metadata: dict) -> str | None:
    """Why a model that serves test-time augmentation inside is not promoted automatically, or None."""
    mode = metadata.get("serving_tta")
    if not mode:
        return None
    return (f"serves {mode} test-time augmentation (more passes per image than a plain model): its figure is "
            f"not comparable to a one-pass champion's and it multiplies the nightly inference; promote it by "
            f"hand (`hashtagger models promote {metadata.get('model_id')}`) to accept that cost")


def floor_reason(dataset: str, test_top1: float, config: GateConfig = DEFAULT) -> str | None:
    """Why `test_top1` is too low to serve `dataset`, or None when it clears the floor."""
    floor = config.floors.get(dataset, config.default_floor)
    if test_top1 < floor:
        return f"test top-1 {test_top1:.2%} is below the floor of {floor:.0%} for {dataset}"
    return None


def _min_epochs(recipe) -> int:
    if isinstance(recipe, dict) and recipe.get("min_epochs") is not None:
        return int(recipe["min_epochs"])
    from tasks.train import recipes  # dataclasses only: no TensorFlow

    name = str(recipe.get("name") if isinstance(recipe, dict) else recipe).upper()
    known = getattr(recipes, name, None)  # FAST, AIRBENCH; SEED is per architecture
    return (known if isinstance(known, recipes.Recipe) else recipes.Recipe(name="default")).min_epochs


def reviewed_slice_reason(ours: dict[str, EvaluationResult], theirs: dict[str, EvaluationResult],
                          preferred: str | None,
                          config: GateConfig = DEFAULT) -> str | None:
    """Why the challenger is refused on the reviewed slice, or None. `ours`, `theirs`: {dataset version:
    evaluation} of challenger and champion, newest first; the slice compared is that of
    `preferred` (the version test top-1 was compared on) when both have it there, else the newest version
    on which both were measured on a reviewed slice. None when there is no such version."""
    common = [version for version in ours if version in theirs
              and _slice_top1(ours[version]) is not None and _slice_top1(theirs[version]) is not None]
    if not common:
        return None
    version = preferred if preferred in common else common[0]
    challenger, champion = _slice_top1(ours[version]), _slice_top1(theirs[version])
    if challenger >= champion - config.reviewed_margin - 1e-9:  # counts over the same images: rounding only
        return None
    count = ours[version].reviewed_slice["labelled"]
    return (f"reviewed slice of version {version} ({count} of your images): top-1 {challenger:.2%} against the "
            f"champion's {champion:.2%}, worse by more than the margin of {config.reviewed_margin * 100:.2f} "
            f"points (rule: a challenger must not do worse than the champion on your reviewed images)")


def _slice_top1(result: EvaluationResult) -> float | None:
    return (result.reviewed_slice or {}).get("top1")
