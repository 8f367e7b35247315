"""`hashtag IMAGE...`: for each image, its top labels with probabilities and ranked hashtags.

What the report's `python Hashtag.py cat1.jpg` did, on the serving path (ONNX Runtime when the model is
exported, so no TensorFlow import). A bad file gets a message on stderr, the other images are still
answered, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from tasks import pipeline
from tasks.pipeline import PLATFORM_LIMITS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashtag", description="Images in, labels and hashtags out.")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", help="a model artifact folder (default: the bundled model of --dataset)")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"),
                        help="whose bundled model answers when --model is not given")
    parser.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                        help="instagram: at most 5 hashtags, x: 3, generic: 10")
    parser.add_argument("--labels", type=int, default=3, help="top labels to show")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model_id, answers = pipeline.hashtag_images(args.images, args.model, args.dataset, args.platform, args.labels)
    except (*pipeline.user_errors(), OSError, ValueError) as error:
        print(f"hashtag: cannot load the model: {error}", file=sys.stderr)
        return 2
    failures = [answer for answer in answers if "error" in answer]
    for answer in failures:
        print(f"hashtag: {answer['image']}: {answer['error']}", file=sys.stderr)
    if args.json:
        json.dump({"model": model_id, "results": answers}, sys.stdout, indent=1)
        print()
    else:
        for answer in answers:
            if "error" in answer:
                continue
            labels = ", ".join(f"{item['label']} {item['probability']:.0%}" for item in answer["labels"])
            print(f"{answer['image']}: {labels}")
            print("  " + " ".join(item["hashtag"] for item in answer["hashtags"]))
    return 1 if failures else 0
