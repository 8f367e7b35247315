"""`hashtag IMAGE...`: for each image, its top labels with probabilities and ranked hashtags.

What the report's `python Hashtag.py cat1.jpg` did, on the serving path (ONNX Runtime when the model is
exported, so no TensorFlow import). A bad file gets a message on stderr, the other images are still
answered, and the exit status is then 1, or 2 when a file does not exist (a usage error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tasks import errors, pipeline
from tasks.config import BUNDLED_DATASETS
from tasks.pipeline import PLATFORM_LIMITS


def build_parser() -> argparse.ArgumentParser:
    from tasks.cli.options import Parser, add_common_options

    parser = Parser(prog="hashtag", description="Images in, labels and hashtags out. For a folder or a "
                                                "bucket, with results kept in a database: hashtagger tag.",
                    epilog=errors.EXIT_CODES_HELP)
    add_common_options(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--model", help="a model artifact folder (default: the bundled model of --dataset)")
    parser.add_argument("--dataset", default="cifar10", choices=(*BUNDLED_DATASETS, "both"),
                        help="whose bundled model answers when --model is not given; both: the CIFAR-10 and "
                             "CIFAR-100 models on the same image, their labels merged")
    parser.add_argument("--min-confidence", type=float, metavar="P",
                        help="no confident label below this calibrated probability, 0 to 1 (default: each "
                             "model's own threshold, chosen to keep 95%% of the images it knows)")
    parser.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                        help="instagram: at most 5 hashtags, x: 3, generic: 10")
    parser.add_argument("--labels", type=int, default=3, choices=range(1, 11), metavar="{1..10}",
                        help="top labels to show")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise errors.UserError(f"hashtag: --min-confidence {args.min_confidence} is not between 0 and 1")
    folders = [name for name in args.images if os.path.isdir(name)]
    if folders:
        raise errors.UserError(f"hashtag: {_shown(folders[0])} is a folder; hashtag takes image files",
                               f"to tag a folder use: hashtagger tag {_shown(folders[0])}")
    try:
        model_id, answers = pipeline.hashtag_images(args.images, args.model, args.dataset, args.platform,
                                                    args.labels, args.min_confidence)
    except (*pipeline.user_errors(), OSError, ValueError) as error:
        raise errors.UserError(f"hashtag: cannot load the model: {error}") from None
    failures = [answer for answer in answers if "error" in answer]
    for answer in failures:
        print(f"hashtag: {_shown(answer['image'])}: {answer['error']}", file=sys.stderr)
    if args.json:
        # a file name that is not UTF-8 goes out escaped, as the results database stores it
        shown = [{**answer, "image": pipeline.escaped_name(answer["image"])} for answer in answers]
        json.dump({"model": model_id, "results": shown}, sys.stdout, indent=1)
        print()
    else:
        for answer in answers:
            if "error" in answer:
                continue
            labels = _labels_line(answer)
            if answer["abstained"]:
                print(f"{_shown(answer['image'])}: no confident label (candidates: {labels})")
                continue
            print(f"{_shown(answer['image'])}: {labels}")
            print("  " + " ".join(item["hashtag"] for item in answer["hashtags"]))
    if any(not os.path.lexists(answer["image"]) for answer in failures):
        return errors.EXIT_USAGE  # a file that does not exist: a usage error (the README's table), not a bad image
    return errors.EXIT_FAILED_IMAGES if failures else errors.EXIT_OK


def _labels_line(answer: dict) -> str:
    """The candidates, per model when several answered (each says which dataset it knows and whether it
    was confident)."""
    models = answer["models"]
    if len(models) == 1:
        return ", ".join(f"{item['label']} {item['probability']:.0%}" for item in answer["labels"])
    parts = []
    for model in models:
        named = ", ".join(f"{item['label']} {item['probability']:.0%}" for item in answer["labels"]
                          if item["dataset"] == model["dataset"])
        parts.append(f"{model['dataset']}: " + (f"no confident label ({named})" if model["abstained"] else named))
    return " | ".join(parts)


def _shown(name: str) -> str:
    """A file name safe to print: escape sequences and non-UTF-8 bytes escaped (printing them raw crashes
    on a UTF-8 terminal, or acts on it)."""
    return pipeline.shown_name(name)
