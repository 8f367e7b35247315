"""Summarise the GPU runs of benchmarks/gpu_run.sh: one table and one plot over all of their models.

Reads the model artifacts the runs brought back (their metadata.json: history, metrics, settings) and
the first lines of each run's run.log (the device), and writes `<output>.md` and `<output>-curves.png`.

    python benchmarks/gpu_summary.py --run first=/work/gpu-results/run1 --run second=/work/gpu-results/run2 \
        --output reports/gpu-resnet9
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import first_reaching  # noqa: E402  (benchmarks/ is not a package)

TARGETS = {"cifar10": (0.90, 0.94), "cifar100": (0.60, 0.65)}


def rows_of(runs: list[tuple[str, Path]]) -> list[dict]:
    rows = []
    for run_name, folder in runs:
        for metadata_path in sorted(folder.glob("*/metadata.json")):
            metadata = json.loads(metadata_path.read_text())
            history, metrics = metadata["history"], metadata["metrics"]
            seconds = history["seconds"]
            rows.append({
                "run": run_name, "dataset": metadata["dataset"], "model_id": metadata["model_id"],
                "widths": "/".join(map(str, metadata["architecture_config"]["widths"])),
                "parameters": metadata["parameters"], "epochs": metadata["epochs_done"],
                "training_seconds": metadata["training_seconds"], "first_epoch_seconds": seconds[0],
                "epoch_seconds": (seconds[-1] - seconds[0]) / max(1, len(seconds) - 1),
                "best_val": max(history["val_accuracy"]), "test_top1": metrics["test_top1"],
                "test_top1_tta": metrics.get("test_top1_tta"), "test_top5": metrics["test_top5"],
                "targets": {target: first_reaching(history, target) for target in TARGETS[metadata["dataset"]]},
                "history": history, "reproduce": metadata["reproduce"]})
    return rows


def device_lines(runs: list[tuple[str, Path]]) -> list[str]:
    lines = []
    for run_name, folder in runs:
        head = (folder / "run.log").read_text().splitlines()[:2] if (folder / "run.log").exists() else []
        lines.append(f"- {run_name} run: " + "; ".join(head))
    return lines


def markdown(rows: list[dict], runs: list[tuple[str, Path]], output: Path) -> str:
    lines = [
        "# ResNet-9 on one GPU under JAX (benchmarks/gpu_run.sh)", "",
        "Recipe `fast` (SGD with Nesterov momentum, one-cycle schedule, label smoothing 0.1, pad-and-crop "
        "and flip on the device), batch 512, peak learning rate 0.4, `KERAS_BACKEND=jax`, float32. "
        "Training time is wall clock inside `fit`, the first epoch's compile included (the first-epoch "
        "column); accuracy is on the CIFAR test sets **as JPEG re-encodings** (about quality 75, "
        "../shared/data), which runs somewhat below accuracy on the original pixels. Time to a target is "
        "measured on the 5,000-image validation split, checked once per epoch.", "",
        *device_lines(runs), "",
        "| run | dataset | widths | params | epochs | train time | first epoch | later epochs | best val | "
        "test top-1 | flip TTA | top-5 | time to target (val) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reached = []
        for target, hit in row["targets"].items():
            reached.append(f"{target:.0%}: " + ("not reached" if hit is None else f"{hit[1]:.0f} s (epoch {hit[0]})"))
        tta = "—" if row["test_top1_tta"] is None else f"{row['test_top1_tta']:.2%}"
        lines.append(
            f"| {row['run']} | {row['dataset']} | {row['widths']} | {row['parameters'] / 1e6:.2f} M | "
            f"{row['epochs']} | {row['training_seconds']:.0f} s | {row['first_epoch_seconds']:.1f} s | "
            f"{row['epoch_seconds']:.2f} s | {row['best_val']:.2%} | **{row['test_top1']:.2%}** | {tta} | "
            f"{row['test_top5']:.2%} | {'; '.join(reached)} |")
    lines += ["", f"![validation accuracy against training time]({output.name}-curves.png)", "",
              "Commands (from each model's metadata):", ""]
    lines += [f"- {row['run']}, {row['dataset']}, widths {row['widths']}: `{row['reproduce']}`" for row in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    from tasks.evaluate import figures as reports

    figure = reports.new_figure(10, 4.5)
    for index, dataset in enumerate(("cifar10", "cifar100"), 1):
        axes = figure.add_subplot(1, 2, index)
        for row in (row for row in rows if row["dataset"] == dataset):
            history = row["history"]
            axes.plot(history["seconds"], history["val_accuracy"], linewidth=1,
                      label=f"{row['run']}: widths {row['widths']}, {row['epochs']} epochs")
        axes.set_xscale("log")
        axes.set_xlabel("training time (s, log scale)")
        axes.set_ylabel("validation accuracy")
        axes.set_title(dataset)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=FOLDER",
                        help="a run's unpacked results: model artifact folders and run.log")
    parser.add_argument("--output", default=str(REPO / "reports" / "gpu-resnet9"))
    args = parser.parse_args(argv)
    runs = [(name, Path(folder)) for name, _, folder in (item.partition("=") for item in args.run)]
    rows = rows_of(runs)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, runs, output)
    output.with_suffix(".md").write_text(text)
    plot(rows, output.with_name(f"{output.name}-curves.png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
