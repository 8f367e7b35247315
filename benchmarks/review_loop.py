"""The review loop, measured: does a fine-tune on people's answers help on the user's own kind of images?

    .venv/bin/python benchmarks/review_loop.py                     # ~20-30 min on 2 shared cores
    .venv/bin/python benchmarks/review_loop.py --per-class 20 --none 40 --reviews 150 --train-limit 2000 \
        --epochs 1 --output /tmp/review_loop.md                    # a quick look

1. A folder of images unlike CIFAR's test set: CIFAR-10 JPEG test images made photo-like with Pillow
   (upscaled 8x with bicubic, a random perspective warp, colour, contrast and brightness shifts, JPEG
   quality 35-75), and CIFAR-100 test images of classes that are no CIFAR-10 class (the non-vehicle
   superclasses, tasks/data/outliers.py), whose true answer is "none of these classes".
2. `hashtagger tag` of the folder with the bundled CIFAR-10 model, into an SQLite results database.
3. A real `hashtagger review` server; `--reviews` cards are answered from the true labels through its
   HTTP endpoints (GET /api/queue, POST /api/answers with the page's CSRF token), in the queue's order.
4. `hashtagger data prepare NAME --from-reviews --base cifar10`: the reviewed slice is held out.
5. Before: the bundled model evaluated on that version (the JPEG test set and the reviewed slice).
   After: a fine-tune from the bundled model's weights (`--init-from`) on the reviewed dataset, on the
   reviewed training images (`--repeat` times each) and the first base training images (`--train-limit`).

Everything runs in its own HASHTAGGER_HOME (`--home`), never ~/.hashtagger. Needs the train and review
extras and ../shared/data (cifar10-jpeg.tar.gz, cifar100-jpeg.tar.gz). Writes reports/review_loop.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing
SHARED = REPO.parent / "shared" / "data"
HASHTAGGER = str(Path(sys.executable).parent / "hashtagger")
BUNDLED = REPO / "models" / "bundled" / "cifar10"
NAME = "photos-reviewed"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default="/tmp/hashtagger-review-loop", help="HASHTAGGER_HOME of the run")
    parser.add_argument("--per-class", type=int, default=60, help="photo-like CIFAR-10 test images per class")
    parser.add_argument("--none", type=int, default=150, help="CIFAR-100 images of no CIFAR-10 class")
    parser.add_argument("--reviews", type=int, default=500, help="cards answered through the review app")
    parser.add_argument("--slice-fraction", type=float, default=0.3, help="reviewed images held out")
    parser.add_argument("--repeat", type=int, default=8, help="times each reviewed image is in train")
    parser.add_argument("--train-limit", type=int, default=10000, help="training images of the fine-tune")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.15,
                        help="airbench's peak rate for the fine-tune (its own from scratch: 1.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(REPO / "reports" / "review_loop.md"))
    return parser.parse_args()


def run(env: dict, *args: str) -> str:
    done = subprocess.run([HASHTAGGER, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hashtagger {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def photo_like(data: bytes, rng: np.random.Generator) -> bytes:
    """A CIFAR tile as a photo of it might come out: 256 px, warped, colour-shifted, JPEG-compressed."""
    from PIL import Image, ImageEnhance

    picture = Image.open(io.BytesIO(data)).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)
    corners = np.array([0, 0, 256, 0, 256, 256, 0, 256], dtype=float) + rng.uniform(-20, 20, 8)
    picture = picture.transform((256, 256), Image.Transform.QUAD, tuple(corners), Image.Resampling.BICUBIC,
                                fillcolor=tuple(int(v) for v in rng.integers(0, 256, 3)))
    for enhance, low, high in ((ImageEnhance.Color, 0.5, 1.5), (ImageEnhance.Contrast, 0.7, 1.3),
                               (ImageEnhance.Brightness, 0.7, 1.3)):
        picture = enhance(picture).enhance(rng.uniform(low, high))
    shift = rng.integers(-20, 21, 3)  # a white-balance cast
    picture = Image.fromarray(np.clip(np.asarray(picture, dtype=int) + shift, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=int(rng.integers(35, 76)))
    return out.getvalue()


def build_folder(folder: Path, per_class: int, none: int, seed: int) -> dict[str, str | None]:
    """Write the photo folder; {file name: true CIFAR-10 class, or None for none of these}."""
    from tasks.data import outliers

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str | None] = {}
    with tarfile.open(SHARED / "cifar10-jpeg.tar.gz") as tar:
        members = [m for m in tar if m.isfile() and "/test/" in m.name]
        by_class: dict[str, list] = {}
        for member in members:
            by_class.setdefault(member.name.split("/")[-2], []).append(member)
        for name, listed in sorted(by_class.items()):
            for member in sorted(listed, key=lambda m: m.name)[:per_class]:
                file_name = f"c10-{name}-{Path(member.name).stem}.jpg"
                (folder / file_name).write_bytes(photo_like(tar.extractfile(member).read(), rng))
                truth[file_name] = name
    labels = json.loads((SHARED / "cifar100-labels.json").read_text())
    vehicles = {labels["coarse_names"].index(name) for name in outliers.VEHICLE_SUPERCLASSES}
    allowed = {name for name, coarse in zip(labels["fine_names"], labels["fine_to_coarse"]) if coarse not in vehicles}
    with tarfile.open(SHARED / "cifar100-jpeg.tar.gz") as tar:
        members = sorted((m for m in tar if m.isfile() and "/test/" in m.name
                          and m.name.split("/")[-2] in allowed), key=lambda m: m.name)
        for index in rng.choice(len(members), none, replace=False):
            member = members[index]
            file_name = f"c100-{member.name.split('/')[-2]}-{Path(member.name).stem}.jpg"
            (folder / file_name).write_bytes(photo_like(tar.extractfile(member).read(), rng))
            truth[file_name] = None
    return truth


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer_reviews(env: dict, truth: dict[str, str | None], count: int) -> int:
    """Start `hashtagger review`, answer `count` cards from the true labels over HTTP; answers recorded."""
    import httpx

    port = free_port()
    server = subprocess.Popen([HASHTAGGER, "review", "--port", str(port), "--reviewer", "benchmark"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(100):
                try:
                    page = client.get("/")
                    break
                except httpx.ConnectError:
                    time.sleep(0.2)
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
            cards = client.get("/api/queue", params={"limit": count}).json()["cards"]
            for card in cards:
                label = truth[Path(card["image_uri"]).name]
                answered = client.post("/api/answers", headers={"X-CSRF-Token": csrf}, json={
                    "review_id": uuid.uuid4().hex, "image_uri": card["image_uri"],
                    "content_hash": card["content_hash"], "model_version": card["model_version"], "label": label})
                answered.raise_for_status()
        return len(cards)
    finally:
        server.terminate()
        server.wait(timeout=30)


def row(name: str, result) -> str:
    """One model's line of the table: its EvaluationResult on the reviewed slice and the test set."""
    figures = result.reviewed_slice
    return (f"| {name} | {figures['top1']:.1%} ({figures['top1_low']:.1%}-{figures['top1_high']:.1%}) | "
            f"{figures['abstention']:.1%} | {figures['none_abstained']:.1%} | {result.test_top1:.2%} |")


def main() -> None:
    args = arguments()
    home = Path(args.home)
    env = {**os.environ, "HASHTAGGER_HOME": str(home), "HASHTAGGER_DB_URL": f"sqlite:///{home / 'results.db'}"}
    os.environ.update(HASHTAGGER_HOME=env["HASHTAGGER_HOME"], HASHTAGGER_DB_URL=env["HASHTAGGER_DB_URL"])
    if home.resolve() == (Path.home() / ".hashtagger").resolve():
        raise SystemExit("--home must be a folder of its own: this run deletes its photos, models and results")
    for leftover in ("photos", "results.db", f"datasets/{NAME}", "models", "evaluations", "checkpoints"):
        path = home / leftover  # a fresh loop each run; the prepared base (datasets/cifar10) is kept
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    started = time.monotonic()
    timings = {}
    home.mkdir(parents=True, exist_ok=True)
    run(env, "db", "migrate")
    if not (home / "datasets" / "cifar10" / "LATEST").exists():
        run(env, "data", "prepare", "cifar10", "--source", str(SHARED / "cifar10-jpeg.tar.gz"), "--quiet")
    timings["prepare base"] = time.monotonic() - started
    truth = build_folder(home / "photos", args.per_class, args.none, args.seed)
    run(env, "tag", "--dataset", "cifar10", str(home / "photos"), "--quiet")
    timings["folder + tag"] = time.monotonic() - started - sum(timings.values())
    answered = answer_reviews(env, truth, args.reviews)
    prepared = run(env, "data", "prepare", NAME, "--from-reviews", "--base", "cifar10", "--slice-fraction",
                   str(args.slice_fraction), "--repeat", str(args.repeat))
    timings["review + prepare"] = time.monotonic() - started - sum(timings.values())
    version = re.search(rf"{NAME} version (\w+)", prepared).group(1)

    from tasks import pipeline, quiet

    quiet.import_keras("evaluation")
    before = pipeline.evaluate(str(BUNDLED), version, figures=False)
    timings["evaluate before"] = time.monotonic() - started - sum(timings.values())
    spec = {"architecture": "airbench", "dataset": NAME, "dataset_version": version, "recipe": "airbench",
            "epochs": args.epochs, "train_limit": args.train_limit, "seed": args.seed, "init_from": str(BUNDLED),
            # lookahead off: a stabiliser of training from scratch; a fine-tune of a few dozen steps ends on
            # its own weights (reports/review_loop.md was measured this way)
            "recipe_overrides": (("learning_rate", args.learning_rate), ("whiten_bias_epochs", 0), ("tta", "none"),
                                 ("lookahead_every", 0)),
            "reports": False}
    tuned = pipeline.train(spec, register=True)
    timings["fine-tune + evaluate after"] = time.monotonic() - started - sum(timings.values())
    gate = pipeline.auto_promote_model(tuned.model_id, onnx=False)
    write_report(args, prepared, answered, before, tuned, gate, timings)


def write_report(args, prepared: str, answered: int, before, tuned, gate, timings: dict) -> None:
    from tasks import pipeline
    from tasks.registry import artifact

    after = pipeline.EvaluationResult.from_dict(tuned.metrics)
    figures = before.reviewed_slice
    table = ["| model | top-1 on the reviewed slice (95% CI) | abstained, images with a class | "
             "abstained, none of these | top-1, JPEG test set |", "|---|---|---|---|---|",
             row(f"before: bundled {before.model_id}", before), row(f"after: fine-tuned {tuned.model_id}", after)]
    command = "python benchmarks/review_loop.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# The review loop: before and after a fine-tune on reviewed images", "",
        f"Command: `{command.strip()}`  ", f"Machine: {artifact.machine()}, Python {platform.python_version()}; "
        "the cores were shared with a long training job, so times are upper bounds.", "",
        f"A folder of {args.per_class * 10} photo-like CIFAR-10 test images (8x bicubic upscale, perspective "
        f"warp, colour/contrast/brightness and white-balance shifts, JPEG quality 35-75) and {args.none} "
        "CIFAR-100 test images of no CIFAR-10 class, tagged by the bundled CIFAR-10 model; "
        f"{answered} cards answered from the true labels through `hashtagger review`'s HTTP endpoints, in "
        "the queue's order (abstentions first, then the smallest margins).", "",
        "`" + prepared.strip().splitlines()[0] + "`", "",
        f"Reviewed slice: {figures['labelled']} images with a class and {figures['none']} of none of these, "
        "held out (by content hash) from training; the same images for both rows.", "",
        *table, "",
        f"Fine-tune: airbench from the bundled model's weights (`--init-from`), {args.epochs} epochs on "
        f"{tuned.extra.get('train_images', args.train_limit):,} training images (the reviewed training images "
        f"{args.repeat} times each, then the first CIFAR-10 training images), peak learning rate "
        f"{args.learning_rate}, no lookahead, no test-time augmentation; {tuned.training_seconds:.0f} s of "
        "training.", "",
        f"Promotion gate on the fine-tuned model: {'promoted' if gate.promoted else 'refused'}: {gate.reason}", "",
        "Wall time per step (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()), "",
        "Reading it: the cards answered are the queue's first, the model's hardest (abstentions, then the",
        "smallest margins), so the slice holds out hard images of this folder, not a random sample of it; the",
        "'none of these' column is the share of CIFAR-100 pictures the model rightly abstains on (higher is",
        "better), which outlier exposure on the reviewed 'none' pictures has to hold up against the fine-tune",
        "making the model surer of photo-like images. The JPEG test set is CIFAR-10's own 10,000 test images;",
        "the photo-like pictures are made from some of them, so the fine-tuned model trained on transformed",
        "copies of those test images: its JPEG test figure is not fully independent of its training.", "",
    ]
    text = "\n".join(lines)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
