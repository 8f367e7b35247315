"""`hashtagger train`: train one architecture with one recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tasks import errors, pipeline
from tasks.config import Settings


def register(commands) -> None:
    train = commands.add_parser("train", help="train one architecture and save a model artifact (train extra)",
                                description="Train one architecture with one recipe on a prepared dataset "
                                            "version, evaluate it, save it under $HASHTAGGER_HOME/models/ and "
                                            "register it as a candidate. Needs the train extra: "
                                            "pip install 'hashtagger[train]'.")
    train.add_argument("--arch", required=True, choices=pipeline.architectures(),
                       help="the network (README: Models, recipes and promotion)")
    train.add_argument("--dataset", default="cifar10", help="a prepared dataset (hashtagger data prepare NAME)")
    train.add_argument("--dataset-version", help="a prepared version (default: the latest)")
    train.add_argument("--recipe", default="fast", choices=pipeline.recipe_names(),
                       help="seed: the report's; fast: one-cycle SGD; airbench: airbench94's; airbench96: "
                            "airbench96's, for its network (README: Models, recipes and promotion)")
    train.add_argument("--epochs", type=positive_int, help="epochs to train (default: the recipe's own)")
    train.add_argument("--budget-minutes", type=positive_float, help="stop after this much wall-clock time")
    train.add_argument("--train-limit", type=positive_int, metavar="N",
                       help="train on the first N images only (smoke runs; default: all)")
    train.add_argument("--seed", type=int, default=0, help="random seed of weights, shuffling, augmentation")
    train.add_argument("--recipe-set", action="append", metavar="KEY=VALUE",
                       help="override a recipe field (repeatable), e.g. batch_size=64")
    train.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                       help="override an architecture field (repeatable), e.g. dense_units=256")
    train.add_argument("--init-from", metavar="MODEL",
                       help="fine-tune: start from this saved model's weights (a model folder of the same "
                            "architecture and settings, e.g. models/bundled/cifar10) instead of random ones")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="the summary as one JSON document on stdout")
    train.set_defaults(func=run)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "integer >= 1"  # what argparse's "invalid ... value" message names


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


positive_float.__name__ = "number > 0"


def pairs(items: list[str] | None, flag: str = "--recipe-set") -> tuple[tuple[str, object], ...]:
    """KEY=VALUE strings -> ((key, parsed value), ...); values are parsed as JSON when they can be.

    A key given twice is a UserError: which of the two values a run trained with would otherwise be a
    guess (a pasted command with an edited copy of a setting left beside the original)."""
    parsed, seen = [], {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not key or not equals:
            raise errors.UserError(f"hashtagger train: {item!r} is not KEY=VALUE")
        if key in seen:
            raise errors.UserError(f"hashtagger train: {flag} {key} given twice ({seen[key]!r} and {item!r})",
                                   "keep the one you mean")
        seen[key] = item
        try:
            parsed.append((key, json.loads(value)))
        except json.JSONDecodeError:
            parsed.append((key, value))
    return tuple(parsed)


def check_dataset(name: str, settings: Settings, version: str | None = None) -> Path:
    """The dataset version's folder; a UserError, before TensorFlow is imported, when training would find no
    such version: the lookup training itself makes (pipeline.find_dataset: the artifact store, then this disk)."""
    try:
        return pipeline.find_dataset(name, version, settings)
    except (*pipeline.user_errors(), OSError) as error:  # OSError: the artifact store's StoreError
        raise errors.UserError(f"hashtagger train: {error}") from None


def check_settings(spec: dict, dataset_folder: Path) -> None:
    """A UserError, before training starts, for recipe and network settings that cannot train on this
    dataset's images (tasks/train/train.py check_settings)."""
    try:
        pipeline.check_training_settings(spec, dataset_folder)
    except ValueError as error:
        raise errors.UserError(f"hashtagger train: {error}") from None


def run(args) -> int:
    from tasks import quiet
    from tasks.cli import progress

    settings = Settings.from_env()
    spec = pipeline.training_spec(
        architecture=args.arch, dataset=args.dataset, dataset_version=args.dataset_version, recipe=args.recipe,
        epochs=args.epochs, budget_minutes=args.budget_minutes, train_limit=args.train_limit, seed=args.seed,
        recipe_overrides=pairs(args.recipe_set), model_overrides=pairs(args.model_set, "--model-set"), verbose=0,
        init_from=args.init_from)
    if args.init_from and not Path(args.init_from, "metadata.json").exists():
        raise errors.UserError(f"hashtagger train: --init-from {args.init_from}: not a saved model (no metadata.json)")
    quiet.require_train_extra("training")
    folder = check_dataset(args.dataset, settings, args.dataset_version)
    quiet.import_keras("training")
    check_settings(spec, folder)
    live = progress.enabled(args.quiet or args.json)
    callbacks = () if args.quiet else (progress.keras_callback(live),)
    metadata = pipeline.train(spec, register=True, callbacks=callbacks)
    metrics = metadata.metrics
    if args.json:
        json.dump({"model_id": metadata.model_id, "path": str(metadata.path),
                   "epochs_done": metadata.epochs_done, "training_seconds": metadata.training_seconds,
                   "test_top1": metrics["test_top1"], "test_top5": metrics["test_top5"],
                   "calibration": metrics.get("calibration"), "ood": metrics.get("ood")}, sys.stdout, indent=1)
        print()
        return errors.EXIT_OK
    epochs = metadata.epochs_done
    print(f"trained {metadata.model_id} in {metadata.training_seconds:.0f} s "
          f"({epochs} epoch{'' if epochs == 1 else 's'}): test top-1 {metrics['test_top1']:.2%}, "
          f"top-5 {metrics['test_top5']:.2%}")
    for line in outcome_lines(metadata.recipe, metrics):
        print(line)
    print(f"saved to {metadata.path}")
    return errors.EXIT_OK


def outcome_lines(recipe: dict | str | None, metrics: dict) -> list[str]:
    """What the summary adds to the accuracy: outlier exposure (what the run trained against), calibration,
    and the held-out outlier figures its evaluation measured."""
    from tasks.cli import evaluate

    lines = []
    if isinstance(recipe, dict) and recipe.get("outlier_dataset"):
        lines.append(f"  outlier exposure: {recipe['outlier_dataset']}'s exposure classes"
                     + (f", {recipe['outlier_batch_fraction']:.0%} of each batch at weight {recipe['outlier_weight']:g}"
                        if "outlier_batch_fraction" in recipe and "outlier_weight" in recipe else ""))
    if (metrics.get("calibration") or {}).get("test_ece_after") is not None:
        lines.append(evaluate.calibration_line(metrics["calibration"]))
    return lines + evaluate.held_out_lines(metrics.get("ood") or {})
