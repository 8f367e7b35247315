"""Training throughput of every architecture and recipe, against this machine's matmul speed.

For each (architecture, recipe): the real training step of `tasks.train.train` (the recipe's augmentation,
optimizer and loss) on random uint8 images, timed after a warm-up that builds the graph. Achieved
GFLOP/s counts a training step as 3 forward passes (models/flops.py: 2 x multiply-adds of the convs
and dense layers). The machine's reference is a float32 matmul measured in the same run, before and
after the models (the machines are shared and noisy).

    python benchmarks/train_throughput.py                      # all 5 architectures x 2 recipes
    python benchmarks/train_throughput.py --archs vgg16 --recipes fast --steps 5 --output reports/x.md

Backends: `--backends tensorflow,jax,torch` measures the same steps under each Keras backend, each in its
own child process (KERAS_BACKEND is read at import), in alternating rounds (`--rounds`), and tables the
median images/s of each backend against TensorFlow's, round by round, so a machine whose speed drifts
affects every backend alike:

    python benchmarks/train_throughput.py --archs airbench --recipes airbench --backends tensorflow,jax,torch \
        --model-set widths=[128,384,384] --output reports/train_backends.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing


@dataclasses.dataclass(frozen=True)
class ThroughputConfig:
    warmup_steps: int = 3  # steps run before timing: graph build and allocator warm-up
    steps: int = 20  # timed steps; about 20 s for the slowest model (ResNet-9) on 2 CPU cores
    batch_size: int | None = None  # None: the recipe's own (128)
    matmul_size: int = 2048  # n of the n x n float32 matmul: 17 GFLOP each
    matmul_repeats: int = 10


def machine_description() -> str:
    """CPU model, cores, memory, accelerator and software: enough to compare runs."""
    import keras

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * page_size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        memory = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    accelerator = ""
    if keras.backend.backend() == "jax":
        import jax

        devices = jax.devices()
        accelerator = f"; JAX devices: {', '.join(sorted({d.device_kind for d in devices}))} x{len(devices)}"
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        accelerator = f"; {len(gpus)} GPU(s)" if gpus else "; CPU only"
    return (f"{cpu}, {cores} cores{memory}{accelerator}; Python {platform.python_version()}, "
            f"Keras {keras.__version__} on {keras.backend.backend()}")


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """float32 n x n matmul speed through keras.ops on the current backend (best of `repeats`)."""
    import keras

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32))
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32))
    keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.matmul(a, b)))  # warm-up (and JAX dispatch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.matmul(a, b)))  # the sum forces completion
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def step_clock():
    """A Keras callback noting the first step's start and the last step's end. Batch-level hooks make
    Keras wait for each step's results, so the end is a real end."""
    import keras

    class StepClock(keras.callbacks.Callback):
        first_begin = last_end = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first_begin is None:
                self.first_begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last_end = time.perf_counter()

    return StepClock()


def measure(architecture: str, recipe_name: str, config: ThroughputConfig = ThroughputConfig(),
            num_classes: int = 10, recipe_overrides: dict | None = None,
            model_overrides: dict | None = None) -> dict:
    """Training images/s of one architecture under one recipe (with field overrides), on random images."""
    import keras

    import models
    from models import flops
    from models.layers import preprocessing_layer
    from tasks.train import recipes
    from tasks.train import train

    overrides = dict(recipe_overrides or {})
    if config.batch_size:
        overrides["batch_size"] = config.batch_size
    recipe = recipes.recipe_for(recipe_name, architecture, overrides)
    batch = recipe.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, ((config.warmup_steps + config.steps) * batch, 32, 32, 3), dtype=np.uint8)
    labels = train.one_hot(rng.integers(0, num_classes, len(images)), num_classes)
    keras.utils.set_random_seed(0)
    model = models.build(architecture, (32, 32, 3), num_classes, dict(model_overrides or {}))
    preprocessing_layer(model).fit_statistics(images[:batch])
    trainer = train.compile_trainer(model, recipe, config.warmup_steps + config.steps, 1)
    warm = config.warmup_steps * batch
    started = time.perf_counter()
    trainer.fit(images[:warm], labels[:warm], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    warmup_seconds = time.perf_counter() - started
    # Timed from the first step's start to the last step's end: a second `fit` call also spends
    # seconds outside its steps (0-10 s seen on 2 cores; the cause is not pinned down), which a training
    # run pays once and which is no part of the steady rate.
    clock = step_clock()
    started = time.perf_counter()
    trainer.fit(images[warm:], labels[warm:], batch_size=batch, epochs=1, verbose=0, shuffle=False,
                callbacks=[clock])
    fit_seconds = time.perf_counter() - started
    seconds = clock.last_end - clock.first_begin
    images_per_second = config.steps * batch / seconds
    forward = flops.forward_flops(model)
    return {"architecture": architecture, "recipe": recipe_name, "batch_size": batch,
            "parameters": int(model.count_params()), "forward_mflops": forward / 1e6,
            "images_per_second": images_per_second, "gflops_per_second": 3 * forward * images_per_second / 1e9,
            "warmup_seconds": warmup_seconds, "fit_overhead_seconds": fit_seconds - seconds,
            "timed_steps": config.steps}


def markdown(rows: list[dict], matmul: list[float], machine: str, config: ThroughputConfig) -> str:
    reference = float(np.mean(matmul))
    lines = [
        "# Training throughput", "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine}.", "",
        f"Random uint8 images, the recipe's augmentation, optimizer and loss (the real `tasks.train.train` step), "
        f"{config.steps} steps timed from the first one's start to the last one's end, after "
        f"{config.warmup_steps} warm-up steps; the rest of that `fit` call is the overhead column. "
        f"Achieved GFLOP/s counts a "
        f"training step as 3 forward passes (2 x multiply-adds of convolutions and dense layers). Machine "
        f"reference: float32 {config.matmul_size}x{config.matmul_size} matmul through keras.ops, "
        f"{matmul[0]:.0f} GFLOP/s before and {matmul[-1]:.0f} GFLOP/s after the models.", "",
        "| architecture | recipe | params | fwd MFLOP/img | batch | train img/s | achieved GFLOP/s | of matmul "
        "| fit overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['architecture']} | {row['recipe']} | {row['parameters'] / 1e6:.2f} M | "
                     f"{row['forward_mflops']:.0f} | {row['batch_size']} | {row['images_per_second']:,.0f} | "
                     f"{row['gflops_per_second']:.1f} | {row['gflops_per_second'] / reference:.0%} | "
                     f"{row['fit_overhead_seconds']:.1f} s |")
    lines += ["", f"Command: `{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}`", ""]
    return "\n".join(lines)


def backend_rounds(args, argv: list[str]) -> list[dict]:
    """Every (architecture, recipe) under each backend, one child process per backend and round."""
    # the child gets the same arguments less the ones only this parent acts on (and their values)
    cleaned, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in ("--backends", "--rounds", "--output"):
            skip = True
            continue
        if not item.startswith(("--backends=", "--rounds=", "--output=")):
            cleaned.append(item)
    rows = []
    for round_number in range(args.rounds):
        for backend in args.backends.split(","):
            done = subprocess.run([sys.executable, __file__, *cleaned, "--json"], capture_output=True, text=True,
                                  env={**os.environ, "KERAS_BACKEND": backend})
            if done.returncode != 0:
                print(f"{backend}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for row in result["rows"]:
                rows.append({**row, "backend": backend, "round": round_number, "machine": result["machine"],
                             "matmul": result["matmul"]})
                print(f"round {round_number + 1} {backend:<10} {row['architecture']:<8} {row['recipe']:<8} "
                      f"{row['images_per_second']:8.1f} img/s", flush=True)
    return rows


def backend_markdown(rows: list[dict], backends: list[str], command: str) -> str:
    """Median images/s per backend and its median per-round ratio to TensorFlow's."""
    lines = ["# Training throughput by Keras backend", "",
             f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machines:", ""]
    lines += [f"- {backend}: {next(row['machine'] for row in rows if row['backend'] == backend)}"
              for backend in backends if any(row["backend"] == backend for row in rows)]
    lines += ["", "The real `tasks.train.train` step (the recipe's optimizer and loss) on random uint8 images, "
              "each backend in its own process, rounds alternating between backends. Ratio: the median over "
              "rounds of (this backend's img/s / TensorFlow's in the same round).", "",
              "| architecture | recipe | backend | rounds | median train img/s | range | ratio to tensorflow |",
              "|---|---|---|---|---|---|---|"]
    keys = sorted({(row["architecture"], row["recipe"], row["forward_mflops"]) for row in rows})
    for architecture, recipe, mflops in keys:
        baseline = {row["round"]: row["images_per_second"] for row in rows
                    if row["backend"] == "tensorflow" and (row["architecture"], row["recipe"]) == (architecture, recipe)}
        for backend in backends:
            mine = [row for row in rows if row["backend"] == backend
                    and (row["architecture"], row["recipe"]) == (architecture, recipe)]
            if not mine:
                lines.append(f"| {architecture} ({mflops:.0f} MFLOP) | {recipe} | {backend} | 0 | failed | | |")
                continue
            rates = [row["images_per_second"] for row in mine]
            ratios = [row["images_per_second"] / baseline[row["round"]] for row in mine if row["round"] in baseline]
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "n/a"
            lines.append(f"| {architecture} ({mflops:.0f} MFLOP) | {recipe} | {backend} | {len(mine)} | "
                         f"{statistics.median(rates):,.0f} | {min(rates):,.0f}-{max(rates):,.0f} | {ratio} |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="shallow,allconv,resnet,vgg16,resnet9")
    parser.add_argument("--recipes", default="fast,seed")
    parser.add_argument("--steps", type=int, default=ThroughputConfig.steps)
    parser.add_argument("--warmup-steps", type=int, default=ThroughputConfig.warmup_steps)
    parser.add_argument("--batch-size", type=int, help="default: each recipe's own")
    parser.add_argument("--matmul-size", type=int, default=ThroughputConfig.matmul_size)
    parser.add_argument("--output", help="also write the markdown table here, e.g. reports/train_throughput.md")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture field override (JSON value), e.g. widths=[128,384,384]")
    parser.add_argument("--backends", help="comma-separated Keras backends to compare, each in a child process")
    parser.add_argument("--rounds", type=int, default=3, help="with --backends: alternating rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON document (used by --backends)")
    args = parser.parse_args(argv)
    if args.backends:
        rows = backend_rounds(args, argv)
        return publish(backend_markdown(rows, args.backends.split(","),
                                        " ".join([f"python benchmarks/{Path(__file__).name}", *argv])), args.output)
    model_overrides = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.model_set)}
    config = ThroughputConfig(warmup_steps=args.warmup_steps, steps=args.steps, batch_size=args.batch_size,
                              matmul_size=args.matmul_size)
    machine = machine_description()
    matmul = [matmul_gflops(config.matmul_size, config.matmul_repeats)]
    print(f"matmul: {matmul[0]:.1f} GFLOP/s", flush=True, file=sys.stderr if args.json else sys.stdout)
    rows = []
    for architecture in args.archs.split(","):
        for recipe in args.recipes.split(","):
            row = measure(architecture, recipe, config, model_overrides=model_overrides)
            print(f"{architecture:<8} {recipe:<5} {row['images_per_second']:8.1f} img/s "
                  f"{row['gflops_per_second']:6.1f} GFLOP/s", flush=True, file=sys.stderr if args.json else sys.stdout)
            rows.append(row)
    matmul.append(matmul_gflops(config.matmul_size, config.matmul_repeats))
    if args.json:
        print(json.dumps({"machine": machine, "matmul": matmul, "rows": rows}))
        return 0
    return publish(markdown(rows, matmul, machine, config), args.output)


def publish(table: str, output: str | None) -> int:
    """Print the markdown table and, with `output`, write it there too."""
    print()
    print(table)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
