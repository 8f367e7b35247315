"""`hashtagger evaluate MODEL`: test accuracy, per-class accuracy, calibration and plots of a saved model."""

from __future__ import annotations

import json
import sys

from tasks import errors


def register(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on a dataset version's test split "
                                                    "(train extra)",
                                   description="Test accuracy, per-class accuracy, calibration and figures of a "
                                               "saved model. Reports go beside a model trained here (under "
                                               "$HASHTAGGER_HOME/models/), else under "
                                               "$HASHTAGGER_HOME/evaluations/<model_id>/: never into the "
                                               "installed package or a checkout. Needs the train extra.")
    evaluate.add_argument("model", help="a model artifact folder (holding model.keras and metadata.json)")
    evaluate.add_argument("--dataset-version", help="default: the model's own version, else the latest")
    evaluate.add_argument("--tta", nargs="?", const="recipe", default="none",
                          choices=("recipe", "none", "flip", "flip_translate"),
                          help="also measure with test-time augmentation; alone: the model recipe's "
                               "(flip_translate for airbench, else flip) (default: %(default)s)")
    evaluate.add_argument("--output", help="write the reports here (default: beside a model trained here, else "
                                           "$HASHTAGGER_HOME/evaluations/<model_id>/)")
    evaluate.add_argument("--no-figures", action="store_true", help="metrics and report.md only, no PNGs")
    evaluate.add_argument("--no-record", action="store_true",
                          help="do not record the result in the registry (results database)")
    evaluate.add_argument("--json", action="store_true", help="the metrics summary as one JSON document on stdout")
    evaluate.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from tasks import pipeline, quiet

    quiet.require_train_extra("evaluation")
    local = "://" not in args.model and not args.model.startswith(("bundled:", "home:"))
    if local and not Path(args.model, "metadata.json").exists():  # before the 4 s TensorFlow import
        raise errors.UserError(f"hashtagger evaluate: {args.model}: not a hashtagger model (no metadata.json)",
                               "name a folder that `hashtagger train` wrote, e.g. ~/.hashtagger/models/<model_id>")
    quiet.import_keras("evaluation")
    try:
        result = pipeline.evaluate(args.model, args.dataset_version, args.tta, args.output,
                                   figures=not args.no_figures, record=not args.no_record)
    except pipeline.user_errors() as error:
        raise errors.UserError(f"hashtagger evaluate: {error}") from None
    if args.json:
        keys = ("model_id", "dataset", "dataset_version", "test_images", "test_top1", "test_top5",
                "test_top1_tta", "tta", "calibration", "ood", "reviewed_slice", "reports_dir")
        document = result.as_dict()
        json.dump({key: document[key] for key in keys if key in document}, sys.stdout, indent=1, default=str)
        print()
        return errors.EXIT_OK
    _print_summary(result)
    return errors.EXIT_OK


def _print_summary(result) -> None:
    """The evaluation (pipeline.EvaluationResult) in a few lines: accuracy, the reviewed slice, the weakest
    classes, calibration, OOD."""
    from tasks import pipeline

    tta, calibration, ood = result.tta or "none", result.calibration, result.ood or {}
    print(f"{result.model_id} on {result.dataset} {result.dataset_version} ({result.test_images:,} test images)")
    print(f"  test set: top-1 {result.test_top1:.2%}  top-5 {result.test_top5:.2%}"
          + (f"  with {tta} TTA: top-1 {result.test_top1_tta:.2%}" if tta != "none" else "")
          + f" ({result.test_images:,} images)")
    if ood.get("test_kept") is not None:  # measured on the plain predictions, one pass as tagging makes
        rest = ood.get("test_top1_kept")
        print(f"  abstention: no label for {1 - ood['test_kept']:.1%} of test images (calibrated confidence below "
              f"{ood['threshold']:.3f}, the threshold that keeps {ood['target_tpr']:.0%} of the validation split)"
              + (f"; top-1 {rest:.2%} on the rest" if rest is not None else ""))
    if result.reviewed_slice is not None:  # a dataset prepared from reviews: the user's own images, held out
        print("  " + pipeline.reviewed_slice_summary(result.reviewed_slice))
    worst = sorted(((name, value) for name, value in result.per_class_accuracy.items() if value is not None),
                   key=lambda item: item[1])[:3]
    print("  weakest classes: " + ", ".join(f"{name} {value:.1%}" for name, value in worst))
    print(calibration_line(calibration))
    for line in held_out_lines(ood):
        print(line)
    print(f"  reports in {result.reports_dir}")


def calibration_line(calibration: dict) -> str:
    """The ECE before calibration, after the temperature and after top-label scaling too (for evaluations
    since it exists; what serving applies once these metrics are the model's own, README "No confident
    label")."""
    line = (f"  calibration (ECE): {calibration['test_ece_before']:.4f} uncalibrated, "
            f"{calibration['test_ece_after']:.4f} after temperature {calibration['temperature']:.3f}")
    if calibration.get("test_ece_served") is not None:
        top_label = calibration.get("top_label") or {}
        line += (f", {calibration['test_ece_served']:.4f} after top-label Platt scaling"
                 if top_label.get("method") == "platt" else f"; no top-label scaling: {top_label.get('why')}")
    return line


def held_out_lines(ood: dict) -> list[str]:
    """One line per held-out outlier set of an evaluation's `ood` figures: AUROC and FPR at 95% TPR per score.
    Synthetic sets are in the report; the held-out classes are the figure to watch."""
    lines = []
    for name, entry in sorted((ood.get("sets") or {}).items()):
        if name.endswith("_held_out"):
            scores = "; ".join(f"{score} AUROC {values['auroc']:.3f}, FPR at 95% TPR {values['fpr_at_95_tpr']:.3f}"
                               for score, values in entry.items() if isinstance(values, dict))
            lines.append(f"  out of distribution ({name}, classes never trained on): {scores}")
    return lines
