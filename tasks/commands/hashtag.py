"""`hashtag IMAGE...`: for each image, its top labels with probabilities and ranked hashtags.

What the report's `python Hashtag.py cat1.jpg` did, on the serving path (ONNX Runtime when the model is
exported, so no TensorFlow import). A bad file gets a message on stderr, the other images are still
answered, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.hashtags.rank import PLATFORM_LIMITS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashtag", description="Images in, labels and hashtags out.")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", help="a model artifact folder (default: the bundled CIFAR-10 model)")
    parser.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                        help="instagram: at most 5 hashtags, x: 3, generic: 10")
    parser.add_argument("--labels", type=int, default=3, help="top labels to show")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from tasks import decode, predictor
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig

    try:
        model = predictor.load(args.model) if args.model else predictor.load()
    except (predictor.ModelNotFound, OSError, ValueError) as error:
        print(f"hashtag: cannot load the model: {error}", file=sys.stderr)
        return 2
    engine = providers.engine_for(None, RankConfig(platform=args.platform))
    answers, tiles, failures = [], [], 0
    for name in args.images:
        try:
            tiles.append((name, decode.decode(Path(name).read_bytes())))
        except (OSError, decode.ImageError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            print(f"hashtag: {name}: {reason}", file=sys.stderr)
            answers.append({"image": name, "error": reason})
            failures += 1
    if tiles:
        probabilities = model.predict(np.stack([tile for _, tile in tiles]))
        for (name, _), probs in zip(tiles, probabilities):
            top = model.top_labels(probs, max(args.labels, 1))
            ranked = engine.hashtags(top, model.coarse_labels(probs))
            answers.append({"image": name,
                            "labels": [{"label": label, "probability": round(p, 4)} for label, p in top],
                            "hashtags": [{"hashtag": tag.hashtag, "source": tag.source,
                                          "label": tag.label, "score": round(tag.score, 4)} for tag in ranked]})
    order = {name: index for index, name in enumerate(args.images)}
    answers.sort(key=lambda answer: order[answer["image"]])
    if args.json:
        json.dump({"model": model.model_version, "results": answers}, sys.stdout, indent=1)
        print()
    else:
        for answer in answers:
            if "error" in answer:
                continue
            labels = ", ".join(f"{item['label']} {item['probability']:.0%}" for item in answer["labels"])
            print(f"{answer['image']}: {labels}")
            print("  " + " ".join(item["hashtag"] for item in answer["hashtags"]))
    return 1 if failures else 0
