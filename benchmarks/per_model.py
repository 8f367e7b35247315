"""What the per-model benchmarks share (calibration.py, ood_scores.py): the command line (`--model`,
repeatable, and `--out`), one study per model artifact, and the Markdown report, printed and written."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable


def run(argv: list[str] | None, description: str, model_help: str, default_models: list[str], default_out: Path,
        study: Callable[[str], dict], table: Callable[[list[dict], float], list[str]]) -> int:
    """Parse `argv`, run `study(model folder)` for each --model (else `default_models`), each returning a
    dict with its `model_id` and `seconds`; print `table(results, total seconds)` and write it to --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", action="append", help=f"{model_help} (repeatable; default: the bundled "
                        + " and ".join(Path(path).name for path in default_models)
                        + (" model)" if len(default_models) == 1 else " models)"))
    parser.add_argument("--out", type=Path, default=default_out,
                        help=f"where the Markdown report is written (default: {default_out})")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    results = []
    for path in args.model or default_models:
        results.append(study(os.path.expanduser(path)))
        print(f"{results[-1]['model_id']}: {results[-1]['seconds']:.0f} s", file=sys.stderr)
    text = "\n".join(table(results, time.perf_counter() - began)) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


def machine_line(script: str, total_seconds: float, keras: bool = False) -> str:
    """The report's first sentence: which script ran, on what machine (and Keras backend, where the models
    run on Keras), how long."""
    backend = f", Keras on {os.environ.get('KERAS_BACKEND', 'tensorflow')}" if keras else ""
    return (f"One run of `benchmarks/{script}` on {platform.node() or 'this machine'}: {os.cpu_count()} CPU cores "
            f"({platform.processor() or platform.machine()}), Python {platform.python_version()}{backend}; "
            f"{total_seconds / 60:.1f} min.")
