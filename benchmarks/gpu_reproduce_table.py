"""The table of benchmarks/gpu_reproduce.sh: one row per `hashtagger train` run, beside the report's figure.

Standard library only (it runs on the lent GPU machine, before anything is copied back). Each run's
folder under --runs holds what the script wrote: spec.json (network, dataset, recipe, budget), exit
(exit status and wall seconds), train.json (`hashtagger train --json`) and train.log (its stderr);
the row's details come from the saved model's metadata.json (epochs, training time, test accuracy,
the exact command).

    python benchmarks/gpu_reproduce_table.py --runs /tmp/gpu-reproduce.X/runs \
        --machine /tmp/gpu-reproduce.X/machine.txt --usage /tmp/gpu-reproduce.X/gpu-usage.csv --output table.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The report's published test top-1 (original CIFAR pixels; it trained VGG16 on CIFAR-10 only). The same
# figures as benchmarks/accuracy.py's REPORT_FIGURES, repeated here so that this file imports nothing.
REPORT_FIGURES = {"cifar10": {"shallow": 0.813, "allconv": 0.8799, "resnet": 0.781, "vgg16": 0.9348},
                  "cifar100": {"shallow": 0.4751, "allconv": 0.5145, "resnet": 0.631}}


def read_json(path: Path):
    """A JSON file's value, or None when missing or not JSON. Text before the document (a library's
    stray print on stdout) is skipped: the document is taken from its first line that opens with '{'."""
    try:
        text = path.read_text()
    except OSError:
        return None
    lines = text.splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith("{")), None)
    if start is None:
        return None
    try:
        return json.loads("\n".join(lines[start:]))
    except json.JSONDecodeError:
        return None


def last_error(log: Path) -> str:
    """The last line of a run's stderr that names an error, else its last line ('' without a log)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if "error" in line.lower() or "interrupted" in line.lower():
            return line[:160]
    return lines[-1][:160] if lines else ""


def row_of(folder: Path) -> dict:
    spec = read_json(folder / "spec.json") or {}
    row = {"run": folder.name, "arch": spec.get("arch", folder.name), "dataset": spec.get("dataset", "?"),
           "recipe": spec.get("recipe", "?"), "budget_s": spec.get("budget_s"), "exit": None, "wall_s": None}
    try:
        status, wall = (folder / "exit").read_text().split()[:2]
        row["exit"], row["wall_s"] = int(status), float(wall)
    except (OSError, ValueError):
        pass
    summary = read_json(folder / "train.json")
    metadata = read_json(Path(summary["path"]) / "metadata.json") if summary and summary.get("path") else None
    if summary is None or metadata is None:
        row["error"] = last_error(folder / "train.log") or "no output"
        return row
    metrics = metadata.get("metrics") or {}
    row.update({
        "model_id": summary["model_id"], "path": summary["path"], "epochs_done": metadata.get("epochs_done"),
        "epochs_planned": (metadata.get("train_config") or {}).get("epochs"),
        "training_seconds": metadata.get("training_seconds"), "test_top1": metrics.get("test_top1"),
        "test_top5": metrics.get("test_top5"), "test_images": metrics.get("test_images"),
        "train_images": metadata.get("train_images"), "parameters": metadata.get("parameters"),
        "reproduce": metadata.get("reproduce"), "dataset_version": metadata.get("dataset_version"),
        "backend": metadata.get("backend"),
        "keras_version": metadata.get("keras_version")})
    return row


def usage_line(path: Path | None) -> str:
    """Peak GPU memory used and mean utilisation from `nvidia-smi --query-gpu=timestamp,utilization.gpu,
    memory.used --format=csv,noheader,nounits -l N` samples; '' without any."""
    if path is None or not path.exists():
        return ""
    utilisation, memory = [], []
    for line in path.read_text().splitlines():
        parts = [part.strip() for part in line.split(",")]
        try:
            utilisation.append(float(parts[1]))
            memory.append(float(parts[2]))
        except (IndexError, ValueError):
            continue
    if not memory:
        return ""
    return (f"GPU while training (nvidia-smi every few seconds, {len(memory)} samples): mean utilisation "
            f"{sum(utilisation) / len(utilisation):.0f}%, peak memory used {max(memory) / 1024:.1f} GiB, "
            "all runs together")


def percent(value) -> str:
    return "—" if value is None else f"{value:.2%}"


def markdown(rows: list[dict], machine: list[str], usage: str) -> str:
    trained = [row for row in rows if "error" not in row]
    test_images = sorted({row["test_images"] for row in trained if row.get("test_images")})
    lines = [
        "# The report's networks under `hashtagger train`, all at once on one machine (benchmarks/gpu_reproduce.sh)",
        "",
        *(f"- {line}" for line in machine),
        *([f"- {usage}"] if usage else []),
        f"- {len(trained)} of {len(rows)} runs trained and saved a model.",
        "- Test top-1 is on the **JPEG test set** (the CIFAR test images re-encoded as JPEG at about quality 75, "
        f"{', '.join(f'{count:,}' for count in test_images) or '?'} images), which runs somewhat below accuracy on "
        "the original pixels. The report's figures are on the original pixels and after its full epoch counts "
        "(hundreds of epochs for the seed recipes); these runs stop at a wall-clock budget (`--budget-minutes`), "
        "so they are far shorter: compare with the epochs column in mind.",
        "- Train time is wall clock inside Keras `fit` (the first epoch's compile included); wall is the whole "
        "process (start-up, training, evaluation, saving).",
        "",
        "| network | dataset | recipe | epochs trained (of planned) | test top-1, JPEG test set "
        "| report (original pixels) | train s | wall s | budget s | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        report = REPORT_FIGURES.get(row["dataset"], {}).get(row["arch"]) if row["recipe"] == "seed" else None
        report_text = percent(report) if report is not None else (
            "not in the report" if row["recipe"] != "seed" else "— (no run in the report)")
        wall = "—" if row.get("wall_s") is None else f"{row['wall_s']:.0f}"
        budget = "—" if row.get("budget_s") is None else f"{row['budget_s']:.0f}"
        if "error" in row:
            stopped = " at the hard stop" if row.get("exit") in (124, 137) else ""  # timeout's exit statuses
            status = f"failed (exit {row.get('exit')}{stopped}): {row['error']}".replace("|", "/")
            lines.append(f"| {row['arch']} | {row['dataset']} | {row['recipe']} | — | — | {report_text} | — | "
                         f"{wall} | {budget} | {status} |")
            continue
        planned = row.get("epochs_planned")
        epochs = f"{row['epochs_done']}" + (f" (of {planned})" if planned else "")
        train_s = "—" if row.get("training_seconds") is None else f"{row['training_seconds']:.0f}"
        status = "ok" + (f", {row['train_images']:,} train images" if row.get("train_images") else "")
        lines.append(f"| {row['arch']} | {row['dataset']} | {row['recipe']} | {epochs} "
                     f"| **{percent(row['test_top1'])}** | {report_text} | {train_s} | {wall} | {budget} | {status} |")
    lines += ["", "Each model's exact command (its metadata's `reproduce`), its id and the dataset version it "
              "trained on:", ""]
    lines += [f"- {row['arch']} / {row['dataset']}: `{row['reproduce']}` ({row['model_id']}, dataset version "
              f"{row['dataset_version']})" for row in trained if row.get("reproduce")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="the folder with one subfolder per run")
    parser.add_argument("--machine", help="a text file: the machine and software, one line each")
    parser.add_argument("--usage", help="nvidia-smi samples (csv: timestamp, utilization.gpu, memory.used)")
    parser.add_argument("--order", help="run names, comma-separated, in the table's order (default: sorted)")
    parser.add_argument("--output", required=True, help="the markdown file to write")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    names = args.order.split(",") if args.order else sorted(path.name for path in runs.iterdir() if path.is_dir())
    rows = [row_of(runs / name) for name in names if (runs / name).is_dir()]
    machine = []
    if args.machine and Path(args.machine).exists():
        machine = [line.strip() for line in Path(args.machine).read_text().splitlines() if line.strip()]
    text = markdown(rows, machine, usage_line(Path(args.usage) if args.usage else None))
    Path(args.output).write_text(text)
    print(text)
    return 0 if rows and all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
