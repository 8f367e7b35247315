"""Accuracy for the same wall-clock budget: every architecture trained for M minutes on one dataset.

For each architecture: a short probe measures training images/s on the real data, the epochs that fit
the budget are planned from it (so the one-cycle schedule ends near the budget instead of being cut
at a high learning rate), then `tasks.train.train` trains with that epoch cap and the budget as a hard stop.
Writes `reports/accuracy-<dataset>.md` (+ .json and plots), with the report's own figures beside ours.

    python benchmarks/accuracy.py --budget-minutes 60 --dataset cifar10
    python benchmarks/accuracy.py --budget-minutes 0.1 --train-limit 512 --output-dir /tmp/smoke   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"  # the JPEG archives beside the checkout
sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput  # noqa: E402  (benchmarks/ is not a package)

ARCHITECTURES = ("shallow", "allconv", "resnet", "vgg16", "resnet9", "airbench")
# The report's published test accuracies (original pixels; it trained VGG16 on CIFAR-10 only).
REPORT_FIGURES = {"cifar10": {"shallow": 0.813, "allconv": 0.8799, "resnet": 0.781, "vgg16": 0.9348},
                  "cifar100": {"shallow": 0.4751, "allconv": 0.5145, "resnet": 0.631}}
REPORT_NOTE = {"cifar10": "the report's figures: shallow 81.3%, all-conv 87.99%, ResNet 78.1%, VGG16-BN 93.48%",
               "cifar100": "the report's figures: shallow 47.51%, all-conv 51.45%, ResNet 63.1% (no VGG16 run)"}

log = logging.getLogger("benchmarks.accuracy")


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    probe_steps: int = 8  # timed training steps of the probe, after 2 warm-up steps
    safety: float = 0.85  # plan for 85% of the budget: graph build, validation and noise (+-25% here)
    inference_speedup: float = 3.0  # validation images/s relative to training (forward only)


def ensure_dataset(name: str, source: str | None):
    """The latest prepared version of `name`, prepared from ../shared/data when there is none."""
    from tasks.data import prepare
    from tasks.data.dataset import DatasetNotFound, load

    try:
        return load(name)
    except DatasetNotFound:
        archive = Path(source) if source else SHARED_DATA / f"{name}-jpeg.tar.gz"
        if not archive.exists():
            raise SystemExit(f"{name} is not prepared and {archive} does not exist: give --source")
        print(f"preparing {name} from {archive}", flush=True)
        prepare.prepare(name, str(archive), progress=False)
        return load(name)


def plan_epochs(architecture: str, recipe: str, budget_minutes: float, train_images: int, val_images: int,
                num_classes: int, plan: BudgetPlan = BudgetPlan(), recipe_overrides: dict | None = None,
                model_overrides: dict | None = None) -> tuple[int, float, float]:
    """(epochs that fit the budget, 0 when not even one does; training images/s; seconds per epoch)."""
    measured = train_throughput.measure(
        architecture, recipe, train_throughput.ThroughputConfig(warmup_steps=2, steps=plan.probe_steps),
        num_classes=num_classes, recipe_overrides=recipe_overrides, model_overrides=model_overrides)
    rate = measured["images_per_second"]
    epoch_seconds = train_images / rate + val_images / (rate * plan.inference_speedup)
    # the run builds (on a GPU: compiles) its step again, as the probe's warm-up did: not epoch time
    usable_seconds = budget_minutes * 60 * plan.safety - measured["warmup_seconds"]
    return max(0, math.floor(usable_seconds / epoch_seconds)), rate, epoch_seconds


def first_reaching(history: dict, target: float) -> tuple[int, float] | None:
    """(epoch, seconds of training) when validation accuracy first reached `target`, else None."""
    pairs = zip(history.get("val_accuracy", []), history.get("seconds", []))
    for epoch, (accuracy, seconds) in enumerate(pairs, 1):
        if accuracy >= target:
            return epoch, seconds
    return None


def time_to_target(history: dict, target: float | None) -> float | None:
    """Seconds of training until validation accuracy first reached `target` (None: never)."""
    reached = first_reaching(history, target) if target else None
    return reached[1] if reached else None


def run(args):
    """Train every architecture; returns (result rows, the dataset used)."""
    from tasks import pipeline
    from tasks.train import train
    from tasks.cli.train import pairs

    recipe_overrides, model_overrides = pairs(args.recipe_set), pairs(args.model_set)
    plan = BudgetPlan(probe_steps=args.probe_steps)
    dataset = ensure_dataset(args.dataset, args.source)
    train_images = min(args.train_limit or len(dataset["y_train"]), len(dataset["y_train"]))
    results = []
    for architecture in args.archs.split(","):
        started = time.monotonic()
        epochs, rate, epoch_seconds = plan_epochs(
            architecture, args.recipe, args.budget_minutes, train_images, len(dataset["y_val"]),
            len(dataset.class_names), plan, dict(recipe_overrides), dict(model_overrides))
        if args.max_epochs:
            epochs = min(epochs, args.max_epochs)
        print(f"{architecture}: {rate:,.0f} img/s in the probe -> {epochs} epochs planned "
              f"for {args.budget_minutes} min", flush=True)
        if epochs == 0:  # a model that never saw all the data is no comparison: say so instead
            results.append({"architecture": architecture, "recipe": args.recipe,
                            "settings": settings_text(recipe_overrides + model_overrides),
                            "probe_images_per_second": rate, "epoch_seconds": epoch_seconds,
                            "skipped": f"one epoch takes about {epoch_seconds / 60:.0f} min here",
                            "report": REPORT_FIGURES.get(args.dataset, {}).get(architecture)})
            continue
        metadata = train.train(train.TrainConfig(
            architecture=architecture, dataset=args.dataset, dataset_version=dataset.version,
            recipe=args.recipe, epochs=epochs, budget_minutes=args.budget_minutes,
            train_limit=args.train_limit, seed=args.seed, recipe_overrides=recipe_overrides,
            model_overrides=model_overrides, verbose=2),
            dataset=dataset)
        if not args.no_register:
            pipeline.register_saved_model(metadata)
        metrics = metadata["metrics"]
        results.append({
            "architecture": architecture, "recipe": args.recipe, "model_id": metadata["model_id"],
            "settings": settings_text(recipe_overrides + model_overrides),
            "path": metadata["path"], "parameters": metadata["parameters"],
            "forward_mflops": metadata["forward_flops"] / 1e6, "probe_images_per_second": rate,
            "epochs_planned": epochs, "epochs_done": metadata["epochs_done"],
            "training_seconds": metadata["training_seconds"], "wall_seconds": time.monotonic() - started,
            "test_top1": metrics["test_top1"], "test_top5": metrics["test_top5"],
            "test_top1_tta": metrics.get("test_top1_tta"),
            "ece_before": metrics["calibration"]["test_ece_before"],
            "ece_after": metrics["calibration"]["test_ece_after"],
            "ece_served": metrics["calibration"].get("test_ece_served"),
            "time_to_target": time_to_target(metadata["history"], args.target),
            "history": metadata["history"], "report": REPORT_FIGURES.get(args.dataset, {}).get(architecture)})
        print(f"{architecture}: test top-1 {metrics['test_top1']:.2%} after {metadata['epochs_done']} epochs, "
              f"{metadata['training_seconds']:.0f} s", flush=True)
    return results, dataset


def settings_text(overrides) -> str:
    """((key, value), ...) -> 'batch_size=512, widths=32/64/128/256' ('defaults' when empty)."""
    def text(value):
        return "/".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return ", ".join(f"{key}={text(value)}" for key, value in overrides) or "defaults"


def _percent(value) -> str:
    return "—" if value is None else f"{value:.2%}"


def markdown(results: list[dict], args, machine: str, dataset_version: str, train_images: int) -> str:
    target = f"time to {args.target:.0%} val" if args.target else None
    header = ["architecture", "recipe", "overrides", "params", "fwd MFLOP", "epochs (planned)", "train time",
              "test top-1", "top-1 flip TTA", "top-5", "ECE before / after T / served", "report"]
    if target:
        header.insert(7, target)
    lines = [
        f"# Accuracy on {args.dataset} for a {args.budget_minutes:g}-minute training budget", "",
        f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine}.", "",
        f"- Budget: {args.budget_minutes:g} min of training per architecture (wall clock, graph build "
        f"included); epochs planned from a probe of the training speed so that the one-cycle schedule "
        f"ends inside the budget; the budget is also a hard stop.",
        f"- Data: {args.dataset} version {dataset_version}, {train_images:,} training images, the "
        f"prepared validation split, the full test split. These are the JPEG re-encodings of CIFAR "
        f"(about quality 75, ../shared/data), not the original pixels: accuracy on them runs somewhat "
        f"below accuracy on the official arrays.",
        f"- Recipe `{args.recipe}`; test top-1 is without test-time augmentation (what serving does); "
        f"ECE with 15 bins, before calibration, after temperature scaling and as served (then top-label "
        f"Platt scaling), both fitted on the validation split.",
        f"- Report column: {REPORT_NOTE.get(args.dataset, 'no published figure')}, trained for far longer "
        f"on a GPU, on the original images.", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
    ]
    for row in results:
        if row.get("skipped"):
            cells = [row["architecture"], row["recipe"], row["settings"], "", "",
                     f"0: {row['skipped']}"] + ["—"] * (len(header) - 7) + [_percent(row["report"])]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [row["architecture"], row["recipe"], row["settings"], f"{row['parameters'] / 1e6:.2f} M",
                 f"{row['forward_mflops']:.0f}", f"{row['epochs_done']} ({row['epochs_planned']})",
                 f"{row['training_seconds'] / 60:.1f} min", f"**{row['test_top1']:.2%}**",
                 _percent(row["test_top1_tta"]), f"{row['test_top5']:.2%}",
                 f"{row['ece_before']:.3f} / {row['ece_after']:.3f} / "
                 + ("—" if row.get("ece_served") is None else f"{row['ece_served']:.3f}"), _percent(row["report"])]
        if target:
            seconds = row["time_to_target"]
            cells.insert(7, "not reached" if seconds is None else f"{seconds / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    trained = [row for row in results if row.get("path")]
    if trained:
        lines += ["", f"![test top-1 per architecture](accuracy-{args.dataset}.png)", "",
                  f"![validation accuracy against training time](accuracy-{args.dataset}-curves.png)", "",
                  "Each model's own reports (confusion matrix, learning curves, reliability diagram) are "
                  "under its artifact folder's `reports/`:", ""]
        lines += [f"- {row['architecture']}: `{row['path']}`" for row in trained]
    lines += ["", f"Command: `python benchmarks/accuracy.py {' '.join(sys.argv[1:])}`", ""]
    return "\n".join(lines)


def plots(results: list[dict], dataset: str, output_dir: Path) -> None:
    from tasks.evaluate import figures as reports

    results = [row for row in results if not row.get("skipped")]
    if not results:
        return
    try:
        figure = reports.new_figure(8, 4.5)
    except reports.PlottingUnavailable as error:
        print(f"no plots: {error}")
        return
    axes = figure.add_subplot()
    names = [row["architecture"] for row in results]
    positions = range(len(results))
    axes.bar([p - 0.2 for p in positions], [row["test_top1"] for row in results], width=0.4, label="ours")
    published = [(p, row["report"]) for p, row in zip(positions, results) if row["report"] is not None]
    if published:
        axes.bar([p + 0.2 for p, _ in published], [value for _, value in published], width=0.4,
                 label="the report (its best model only)")
    axes.set_xticks(list(positions), names)
    axes.set_ylabel("test top-1")
    axes.set_ylim(0, 1)
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    axes.set_title(f"{dataset}: test top-1 for the same training budget")
    figure.savefig(output_dir / f"accuracy-{dataset}.png")

    figure = reports.new_figure(8, 4.5)
    axes = figure.add_subplot()
    for row in results:
        seconds, accuracy = row["history"].get("seconds", []), row["history"].get("val_accuracy", [])
        axes.plot([s / 60 for s in seconds], accuracy, marker="o", markersize=3, label=row["architecture"])
    axes.set_xlabel("training time (min)")
    axes.set_ylabel("validation accuracy")
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title(f"{dataset}: validation accuracy per epoch")
    figure.savefig(output_dir / f"accuracy-{dataset}-curves.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, required=True, help="training time per architecture")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100"), default="cifar10")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    parser.add_argument("--recipe", default="fast", choices=("fast", "seed"))
    parser.add_argument("--train-limit", type=int, help="train on the first N images only (smoke runs)")
    parser.add_argument("--max-epochs", type=int, help="cap the planned epochs")
    parser.add_argument("--recipe-set", action="append", metavar="KEY=VALUE",
                        help="override a recipe field for every architecture, e.g. batch_size=512")
    parser.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                        help="override an architecture config field, e.g. widths=[32,64,128,256]")
    parser.add_argument("--probe-steps", type=int, default=BudgetPlan.probe_steps,
                        help="timed steps of the speed probe (more on a GPU, where one step is short)")
    parser.add_argument("--target", type=float, help="also report the time to this validation accuracy, e.g. 0.94")
    parser.add_argument("--source", help="archive to prepare the dataset from (default: ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-register", action="store_true", help="do not record the models in the registry")
    parser.add_argument("--output-dir", default=str(REPO / "reports"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    results, dataset = run(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_images = min(args.train_limit or len(dataset["y_train"]), len(dataset["y_train"]))
    text = markdown(results, args, train_throughput.machine_description(), dataset.version, train_images)
    (output_dir / f"accuracy-{args.dataset}.md").write_text(text)
    (output_dir / f"accuracy-{args.dataset}.json").write_text(json.dumps(results, indent=1))
    plots(results, args.dataset, output_dir)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
