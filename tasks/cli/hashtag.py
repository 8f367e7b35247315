"""`hashtag IMAGE...`: for each image, its top labels with probabilities and ranked hashtags.

What the report's `python Hashtag.py cat1.jpg` did, on the serving path (ONNX Runtime when the model is
exported, so no TensorFlow import). A bad file gets a message on stderr, the other images are still
answered, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tasks import errors
from tasks.hashtags.rank import PLATFORM_LIMITS


def build_parser() -> argparse.ArgumentParser:
    from tasks.cli.main import Parser, add_common_options

    parser = Parser(prog="hashtag", description="Images in, labels and hashtags out. For a folder or a "
                                                "bucket, with results kept in a database: hashtagger tag.",
                    epilog=errors.EXIT_CODES_HELP)
    add_common_options(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--model", help="a model artifact folder (default: the bundled model of --dataset)")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"),
                        help="whose bundled model answers when --model is not given")
    parser.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                        help="instagram: at most 5 hashtags, x: 3, generic: 10")
    parser.add_argument("--labels", type=int, default=3, choices=range(1, 11), metavar="{1..10}",
                        help="top labels to show")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    from tasks.cli.main import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    folders = [name for name in args.images if os.path.isdir(name)]
    if folders:
        raise errors.UserError(f"hashtag: {_shown(folders[0])} is a folder; hashtag takes image files",
                               f"to tag a folder use: hashtagger tag {_shown(folders[0])}")
    import numpy as np

    from tasks.data import images as decode
    from tasks.tag import predictor
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig

    try:
        model = predictor.load(args.model or predictor.bundled_model(args.dataset))
    except (predictor.ModelNotFound, OSError, ValueError) as error:
        raise errors.UserError(f"hashtag: cannot load the model: {error}") from None
    engine = providers.engine_for(None, RankConfig(platform=args.platform))
    answers, tiles, failures = [], [], 0
    for name in args.images:
        try:
            tiles.append((name, _tile(name)))
        except decode.ImageError as error:
            print(f"hashtag: {_shown(name)}: {error}", file=sys.stderr)
            answers.append({"image": name, "error": str(error)})
            failures += 1
    if tiles:
        probabilities = model.predict(np.stack([tile for _, tile in tiles]))
        for (name, _), probs in zip(tiles, probabilities):
            top = model.top_labels(probs, args.labels)
            ranked = engine.hashtags(top, model.coarse_labels(probs))
            answers.append({"image": name,
                            "labels": [{"label": label, "probability": round(p, 4)} for label, p in top],
                            "hashtags": [{"hashtag": tag.hashtag, "source": tag.source,
                                          "label": tag.label, "score": round(tag.score, 4)} for tag in ranked]})
    order = {name: index for index, name in enumerate(args.images)}
    answers.sort(key=lambda answer: order[answer["image"]])
    if args.json:
        # a file name that is not UTF-8 goes out escaped, as the results database stores it
        shown = [{**answer, "image": _escaped(answer["image"])} for answer in answers]
        json.dump({"model": model.model_version, "results": shown}, sys.stdout, indent=1)
        print()
    else:
        for answer in answers:
            if "error" in answer:
                continue
            labels = ", ".join(f"{item['label']} {item['probability']:.0%}" for item in answer["labels"])
            print(f"{_shown(answer['image'])}: {labels}")
            print("  " + " ".join(item["hashtag"] for item in answer["hashtags"]))
    return errors.EXIT_FAILED_IMAGES if failures else errors.EXIT_OK


def _shown(name: str) -> str:
    """A file name safe to print: escape sequences and non-UTF-8 bytes escaped (printing them raw crashes
    on a UTF-8 terminal, or acts on it)."""
    from tasks.tag import sources

    return sources.shown(name)


def _escaped(name: str) -> str:
    from tasks.tag import sources

    return sources.escaped(name)


def _tile(name: str):
    """The 32x32 tile of one image file; every failure is an ImageError with a reason people read."""
    from tasks.data import images as decode
    from tasks.tag import sources

    try:
        data = sources.read_file(name)
    except sources.UnreadableImage as error:
        raise decode.ImageError(str(error)) from None
    try:
        tile = decode.decode(data)
    except decode.ImageError:
        raise
    except Exception as error:  # noqa: BLE001  a decoder bug on one file: still answer the others
        raise decode.ImageError(f"unreadable image ({type(error).__name__}: {error})") from None
    if decode.is_flat(tile):  # nothing to recognise: no confident label for a blank picture
        raise decode.ImageError(decode.FLAT_REASON)
    return tile
