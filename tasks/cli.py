"""Command line: `hashtagger` (the pipeline's stages) and `hashtag` (images in, hashtags out)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tasks.config import Settings


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def cmd_data_prepare(args) -> int:
    from tasks import prepare

    config = prepare.PrepareConfig(validation_size=args.validation_size, seed=args.seed)
    manifest = prepare.prepare(args.dataset, args.source, Settings.from_env(), config, md5=args.md5,
                               progress=not args.quiet)
    counts = manifest["counts"]
    per_class = manifest["test_per_class"]
    print(f"{manifest['name']} version {manifest['version']}: {counts['train']:,} train, "
          f"{counts['validation']:,} validation, {counts['test']:,} test images; "
          f"{len(manifest['class_names'])} classes, "
          f"{min(per_class):,}-{max(per_class):,} test images per class")
    if manifest["skipped_files"]:
        print(f"skipped {len(manifest['skipped_files'])} unreadable files, e.g. {manifest['skipped_files'][0]}")
    return 0


def _pairs(items: list[str] | None) -> tuple[tuple[str, object], ...]:
    """KEY=VALUE strings -> ((key, parsed value), ...); values are parsed as JSON when they can be."""
    pairs = []
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            pairs.append((key, json.loads(value)))
        except json.JSONDecodeError:
            pairs.append((key, value))
    return tuple(pairs)


def cmd_train(args) -> int:
    from tasks import train

    config = train.TrainConfig(
        architecture=args.arch, dataset=args.dataset, dataset_version=args.dataset_version,
        recipe=args.recipe, epochs=args.epochs, budget_minutes=args.budget_minutes,
        train_limit=args.train_limit, seed=args.seed, recipe_overrides=_pairs(args.recipe_set),
        model_overrides=_pairs(args.model_set))
    metadata = train.train(config, Settings.from_env())
    metrics = metadata["metrics"]
    print(f"trained {metadata['model_id']} in {metadata['training_seconds']:.0f} s "
          f"({metadata['epochs_done']} epochs): test top-1 {metrics['test_top1']:.2%}, "
          f"top-5 {metrics['test_top5']:.2%}")
    print(f"saved to {metadata['path']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashtagger", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", help="build a dataset version from the official archive or a tree")
    prep.add_argument("dataset", help="cifar10, cifar100, or a name for your own labelled tree")
    prep.add_argument("--source", help="URL, .tar.gz (official or a class-per-folder tree) or folder")
    prep.add_argument("--md5", help="expected md5 of a downloaded archive (official ones are known)")
    prep.add_argument("--validation-size", type=int, default=5000)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(func=cmd_data_prepare)

    train = commands.add_parser("train", help="train one architecture and save a model artifact")
    train.add_argument("--arch", default="vgg16", help="shallow, allconv, resnet, vgg16 or resnet9")
    train.add_argument("--dataset", default="cifar10")
    train.add_argument("--dataset-version", help="default: the latest prepared version")
    train.add_argument("--recipe", default="fast", help="seed (the report's) or fast")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--budget-minutes", type=float, help="stop after this much wall-clock time")
    train.add_argument("--train-limit", type=int, help="train on the first N images only")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--recipe-set", action="append", metavar="KEY=VALUE", help="override a recipe field")
    train.add_argument("--model-set", action="append", metavar="KEY=VALUE", help="override a model field")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
