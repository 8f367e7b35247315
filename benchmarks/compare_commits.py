"""End-to-end tagging throughput of two commits of this repository, on the same inputs, in one run.

    .venv/bin/python benchmarks/compare_commits.py --baseline 36754bf            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/compare_commits.py --baseline 36754bf --quick    # about 3 minutes

A refactor must not cost speed (issue 23: "the throughput benchmark shows no loss, same machine, same
run"). The baseline commit is checked out into a temporary git worktree; both trees run through the same
interpreter and installed dependencies (the tree comes first on PYTHONPATH), with the same model (the
baseline's bundled CIFAR-10 ONNX model, `--model`), so only our code differs. Each round runs
`hashtagger tag DIR --quiet` once per commit, each into a fresh PostgreSQL database, in alternating order
(AB, BA, ...), because this shared machine's speed drifts by tens of percent within minutes; a round's
ratio is candidate / baseline from the same round, and the table gives medians and ranges over rounds.

Inputs come from the CIFAR-10 JPEG test images in ../shared/data (made as benchmarks/tag_throughput.py makes them):
the 32x32 JPEGs themselves, and photos of 3 megapixels. The images per second are the run's own
(tagging_runs.started_at to finished_at), without Python's start-up. Writes reports/compare_commits.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tag_throughput as bench  # noqa: E402  (benchmarks/ is not a package)


def run_tag(tree: Path, folder: Path, model: Path) -> float:
    """Images per second of one `hashtagger tag` run of `tree`'s code into a fresh PostgreSQL database
    (tag_throughput's end-to-end run, with `tree` first on PYTHONPATH)."""
    with bench.Database() as url:
        result = bench.tag_end_to_end(folder, url, extra_env={"PYTHONPATH": str(tree)}, model_dir=model)
    return result["images"] / result["run_seconds"]


def commit_of(tree: Path) -> str:
    text = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return text[:90] + (" (+ uncommitted changes)" if dirty else "")


def measure(folders: dict[str, Path], trees: dict[str, Path], model: Path, rounds: int) -> list[dict]:
    rows = []
    for name, folder in folders.items():
        rates = {label: [] for label in trees}
        for round_index in range(rounds):
            order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
            for label in order:
                rates[label].append(run_tag(trees[label], folder, model))
            print(f"{name}, round {round_index + 1}: " + ", ".join(
                f"{label} {rates[label][-1]:,.0f} img/s" for label in trees), flush=True)
        ratios = [candidate / baseline for baseline, candidate in zip(rates["baseline"], rates["candidate"])]
        rows.append({"input": name, "images": len(list(folder.iterdir())), "baseline": rates["baseline"],
                     "candidate": rates["candidate"], "ratios": ratios})
    return rows


def table(rows: list[dict], commits: dict[str, str], rounds: int, seconds: float, load: tuple) -> str:
    def spread(values):
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    lines = [
        "# Tagging throughput: candidate against baseline commit",
        "",
        f"One run of `benchmarks/compare_commits.py` on {platform.node()}: {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{rounds} rounds per input in alternating order, {seconds / 60:.1f} min in all. Load average "
        f"{load[0]:.1f} at the start and {load[1]:.1f} at the end (other work shared the cores: compare "
        "within a round, not with other runs).",
        "",
        f"- baseline: {commits['baseline']}",
        f"- candidate: {commits['candidate']}",
        "",
        "| input | images | baseline img/s, median (range) | candidate img/s, median (range) "
        "| candidate / baseline, median of rounds (range) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratios = row["ratios"]
        lines.append(f"| {row['input']} | {row['images']:,} | {spread(row['baseline'])} | {spread(row['candidate'])} "
                     f"| **{statistics.median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) |")
    lines += ["", "Images per second of `hashtagger tag DIR --model MODEL --quiet` into a fresh PostgreSQL database, "
              "from the run's own record (listing, reading, hashing, decoding, inference, decisions, hashtags, "
              "writes; not Python's start-up)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare against (a git revision)")
    parser.add_argument("--quick", action="store_true", help="1,000 tiles and 60 photos, 2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per input (default 5, quick 2)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "compare_commits.md")
    args = parser.parse_args(argv)
    config = bench.BenchConfig(cifar_images=1000 if args.quick else 3000,
                               photo_counts=((3.0, 60 if args.quick else 600),), distinct_photos=20)
    rounds = args.rounds or (2 if args.quick else 5)
    started, load_start = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hashtagger-compare-") as scratch:
        scratch = Path(scratch)
        baseline_tree = scratch / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(baseline_tree),
                        args.baseline], check=True)
        try:
            trees = {"baseline": baseline_tree, "candidate": REPO}
            commits = {label: commit_of(tree) for label, tree in trees.items()}
            (scratch / "inputs").mkdir()
            folders = bench.write_inputs(scratch / "inputs", config, bench.cifar_jpegs(config.cifar_images))
            model = baseline_tree / "models" / "bundled" / "cifar10"
            rows = measure(folders, trees, model, rounds)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline_tree)], check=False)
    text = table(rows, commits, rounds, time.monotonic() - started, (load_start, os.getloadavg()[0]))
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
