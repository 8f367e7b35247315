"""Report figures (PNG) and the markdown summary of an evaluation; matplotlib is imported lazily.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never through pyplot, so
nothing here touches global plotting state or needs a display.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "learning_curves.png"
RELIABILITY_PNG = "reliability.png"
OOD_PNG = "ood_scores.png"
SUMMARY_MD = "report.md"
MAX_TICK_LABELS = 20  # more classes than this (CIFAR-100): the confusion matrix has no per-class ticks


class PlottingUnavailable(ImportError):
    """matplotlib is not installed (pip install 'hashtagger[reports]')."""


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no display)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlottingUnavailable("plots need matplotlib: pip install 'hashtagger[reports]'") from error
    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    return np.bincount(np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (each true class sums to 1)."""
    count = len(class_names)
    size = 6.5 if count <= MAX_TICK_LABELS else 9.0
    figure = new_figure(size, size * 0.9)
    axes = figure.add_subplot()
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    if count <= MAX_TICK_LABELS:
        axes.set_xticks(range(count), class_names, rotation=45, ha="right")
        axes.set_yticks(range(count), class_names)
        for row in range(count):
            for column in range(count):
                if matrix[row, column]:
                    axes.text(column, row, f"{rows[row, column]:.2f}".lstrip("0"), ha="center", va="center",
                              fontsize=7, color="white" if rows[row, column] > 0.5 else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    return _save(figure, path)


def plot_learning_curves(history: dict, path: Path, title: str) -> Path | None:
    """Training and validation accuracy and loss per epoch (the report's figures); None without history."""
    if not history or not history.get("loss"):
        return None
    figure = new_figure(10, 4)
    for axes, metric in zip(figure.subplots(1, 2), ("accuracy", "loss")):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values:
                axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(f"{title} (training figures on augmented images)")
    return _save(figure, path)


RELIABILITY_TITLES = {"before": "before calibration", "after": "after temperature scaling",
                      "served": "then top-label Platt scaling"}


def plot_reliability(tables: dict, metrics: dict, path: Path, title: str) -> Path:
    """Reliability diagrams of the test split before calibration, after temperature scaling and, for models
    evaluated since top-label scaling exists, after it too (tasks/evaluate/calibration.py)."""
    figure = new_figure(5 * len(tables), 4.5)
    for axes, (name, table) in zip(np.atleast_1d(figure.subplots(1, len(tables))), tables.items()):
        edges = np.asarray(table["edges"])
        accuracy = np.nan_to_num(np.asarray(table["accuracy"], dtype=float))
        width = edges[1] - edges[0]
        axes.bar(edges[:-1], accuracy, width=width, align="edge", edgecolor="black", label="accuracy")
        confidence = np.asarray(table["confidence"], dtype=float)
        filled = ~np.isnan(confidence)
        axes.bar(edges[:-1][filled], confidence[filled] - accuracy[filled], bottom=accuracy[filled],
                 width=width, align="edge", color="red", alpha=0.3, label="gap to confidence")
        axes.plot([0, 1], [0, 1], "k--", linewidth=1)
        ece = metrics[f"test_ece_{name}"]
        suffix = f" (T = {metrics['temperature']:.2f})" if name == "after" else ""
        axes.set_title(f"{RELIABILITY_TITLES.get(name, name)}{suffix}: ECE {ece:.3f}", fontsize=10)
        axes.set_xlabel("confidence")
        axes.set_ylabel("accuracy")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.legend(loc="upper left")
    figure.suptitle(title)
    return _save(figure, path)


def write_summary(metrics: dict, class_names: list[str], path: Path, title: str, figures: list[str]) -> Path:
    """A markdown page with the headline figures, per-class accuracy and links to the PNGs."""
    lines = [f"# {title}", "", f"Dataset {metrics['dataset']} version {metrics['dataset_version']}, "
             f"{metrics['test_images']:,} test images.", "",
             "| measure | value |", "|---|---|",
             f"| top-1 | {metrics['test_top1']:.2%} |", f"| top-5 | {metrics['test_top5']:.2%} |"]
    if "test_top1_tta" in metrics:
        tta = metrics.get("tta", "flip")
        lines += [f"| top-1 with {tta} TTA | {metrics['test_top1_tta']:.2%} |",
                  f"| top-5 with {tta} TTA | {metrics['test_top5_tta']:.2%} |"]
    calibration = metrics.get("calibration")
    if calibration:
        lines += [f"| temperature (fitted on validation) | {calibration['temperature']:.3f} |"]
        served = "test_ece_served" in calibration  # evaluated since top-label scaling exists
        if served:
            top_label = calibration["top_label"]
            lines += [f"| top-label Platt scaling (fitted on validation): slope, intercept | "
                      f"{top_label['slope']:.3f}, {top_label['intercept']:.3f} |" if top_label["method"] == "platt"
                      else f"| top-label Platt scaling | left out: {top_label.get('why')} |"]
        stages = ("before", "after", "served") if served else ("before", "after")
        heads = "before / after temperature" + (" / then top-label scaling" if served else "")

        def values(measure: str) -> str:
            return " / ".join(format(calibration[f"test_{measure}_{stage}"], ".4f") for stage in stages)

        lines += [f"| ECE, {calibration['ece_bins']} bins, {heads} | {values('ece')} |",
                  f"| NLL, {heads} | {values('nll')} |"]
    lines += ood_summary(metrics.get("ood"))
    if metrics.get("reviewed_slice"):
        from tasks.evaluate import reviewed

        lines += ["", "## The reviewed slice (your own images, held out)", "",
                  reviewed.summary(metrics["reviewed_slice"])]
    lines += ["", "## Per-class accuracy", "", "| class | top-1 |", "|---|---|"]
    per_class = metrics["per_class_accuracy"]
    lines += [f"| {name} | {'—' if per_class[name] is None else format(per_class[name], '.2%')} |"
              for name in class_names]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _calibration_words(ood: dict) -> str:
    """The calibration the OOD score was read after, in words."""
    words = f"temperature {ood['temperature']:.3f}"
    top_label = ood.get("top_label") or {"slope": 1.0, "intercept": 0.0}  # evaluated before it existed
    if (top_label["slope"], top_label["intercept"]) != (1.0, 0.0):
        words += (f", then top-label Platt scaling, slope {top_label['slope']:.3f}, "
                  f"intercept {top_label['intercept']:.3f}")
    return words


def ood_summary(ood: dict | None) -> list[str]:
    """Markdown lines: the abstention threshold and, per outlier set, AUROC and FPR at 95% TPR."""
    if not ood:
        return []
    kept = "—" if ood["test_top1_kept"] is None else f"{ood['test_top1_kept']:.2%}"
    lines = ["", "## Out-of-distribution detection", "",
             f"Score: maximum calibrated probability ({_calibration_words(ood)}). Threshold "
             f"{ood['threshold']:.4f}, chosen on the validation split to keep {ood['target_tpr']:.0%} of it: "
             f"it keeps {ood['test_kept']:.2%} of the test images, whose top-1 is {kept}.", "",
             "| outliers | images | AUROC (MSP) | FPR@95%TPR (MSP) | kept by the threshold | AUROC (energy) | "
             "FPR@95%TPR (energy) |", "|---|---|---|---|---|---|---|"]
    for name, entry in ood["sets"].items():
        msp, energy = entry["msp"], entry.get("energy")
        lines.append(f"| {name} | {msp['images']:,} | {msp['auroc']:.4f} | {msp['fpr_at_95_tpr']:.4f} | "
                     f"{msp['kept_by_threshold']:.2%} | "
                     + (f"{energy['auroc']:.4f} | {energy['fpr_at_95_tpr']:.4f} |" if energy else "— | — |"))
    return lines


def plot_ood_scores(scores: dict[str, np.ndarray], threshold: float, path: Path, title: str) -> Path:
    """Histograms of the calibrated maximum probability, in-distribution test images against each
    outlier set, with the serving threshold."""
    figure = new_figure(7.5, 4.2)
    axes = figure.add_subplot()
    bins = np.linspace(0, 1, 41)
    for name, values in scores.items():
        axes.hist(values, bins=bins, density=True, histtype="step", linewidth=1.6, label=name)
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    axes.set(xlabel="maximum calibrated probability (score)", ylabel="density", title=f"{title}: OOD scores")
    axes.legend(fontsize=7)
    return _save(figure, path)


def write_figures(output_dir: Path, title: str, class_names: list[str], matrix: np.ndarray,
                  history: dict | None, calibration_metrics: dict, tables: dict,
                  ood_scores: dict[str, np.ndarray] | None = None, ood: dict | None = None) -> list[str]:
    """Every PNG of an evaluation; returns the file names written (none without matplotlib)."""
    try:
        written = [plot_confusion_matrix(matrix, class_names, output_dir / CONFUSION_PNG, title)]
        written.append(plot_learning_curves(history or {}, output_dir / CURVES_PNG, title))
        written.append(plot_reliability(tables, calibration_metrics, output_dir / RELIABILITY_PNG, title))
        if ood_scores and ood:
            written.append(plot_ood_scores(ood_scores, ood["threshold"], output_dir / OOD_PNG, title))
    except PlottingUnavailable as error:
        log.warning("no report figures: %s", error)
        return []
    return [path.name for path in written if path is not None]
