"""`hashtagger train`: train one architecture with one recipe."""

from __future__ import annotations

import json

from tasks import pipeline


def register(commands) -> None:
    train = commands.add_parser("train", help="train one architecture and save a model artifact")
    train.add_argument("--arch", default="vgg16", help="shallow, allconv, resnet, vgg16, resnet9 or airbench")
    train.add_argument("--dataset", default="cifar10")
    train.add_argument("--dataset-version", help="default: the latest prepared version")
    train.add_argument("--recipe", default="fast", help="seed (the report's), fast or airbench")
    train.add_argument("--epochs", type=int, help="default: the recipe's own (airbench 10)")
    train.add_argument("--budget-minutes", type=float, help="stop after this much wall-clock time")
    train.add_argument("--train-limit", type=int, help="train on the first N images only")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--recipe-set", action="append", metavar="KEY=VALUE", help="override a recipe field")
    train.add_argument("--model-set", action="append", metavar="KEY=VALUE", help="override a model field")
    train.set_defaults(func=run)


def pairs(items: list[str] | None) -> tuple[tuple[str, object], ...]:
    """KEY=VALUE strings -> ((key, parsed value), ...); values are parsed as JSON when they can be."""
    parsed = []
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            parsed.append((key, json.loads(value)))
        except json.JSONDecodeError:
            parsed.append((key, value))
    return tuple(parsed)


def run(args) -> int:
    spec = {"architecture": args.arch, "dataset": args.dataset, "dataset_version": args.dataset_version,
            "recipe": args.recipe, "epochs": args.epochs, "budget_minutes": args.budget_minutes,
            "train_limit": args.train_limit, "seed": args.seed, "recipe_overrides": pairs(args.recipe_set),
            "model_overrides": pairs(args.model_set)}
    metadata = pipeline.train(spec, register=True)
    metrics = metadata.metrics
    print(f"trained {metadata.model_id} in {metadata.training_seconds:.0f} s "
          f"({metadata.epochs_done} epochs): test top-1 {metrics['test_top1']:.2%}, "
          f"top-5 {metrics['test_top5']:.2%}")
    print(f"saved to {metadata.path}")
    return 0
