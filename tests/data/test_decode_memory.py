"""Decoding's memory follows a budget, not the pixel count times the threads (issue 21): large one-bit
scans through `hashtagger tag`, peak RSS read from the kernel; the budget's own arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

from fixtures import hostile, tiny_model
from tasks.data import images

# A wrapper whose only child is the command: RUSAGE_CHILDREN's ru_maxrss is then that command's peak
# (in this test process it would be the largest of every child any test started).
PEAK_RSS = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(done.stdout + done.stderr)")


def peak_rss(command: list[str], env: dict) -> tuple[int, int, str]:
    """(exit status, peak RSS in MiB, output) of one command."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], env=env, capture_output=True, text=True,
                          timeout=300)
    status, kib = done.stdout.split()
    return int(status), int(kib) // 1024, done.stderr


def test_a_run_over_88_megapixel_scans_stays_under_a_gigabyte(tmp_path, results_db_url, bin_dir):
    folder = tmp_path / "scans"
    folder.mkdir()
    count = 6
    for index in range(count):
        (folder / f"scan{index:02d}.png").write_bytes(hostile.one_bit_scan(seed=index))
    model_dir = tiny_model.build(tmp_path / "tiny")
    env = {**os.environ, "HASHTAGGER_DB_URL": results_db_url}
    # 8 decoding threads: more than this machine's cores, as on a bigger host with the default workers
    status, peak, output = peak_rss([str(bin_dir / "hashtagger"), "tag", str(folder), "--model", str(model_dir),
                                     "--workers", "8", "--json"], env)
    print(f"peak RSS of hashtagger tag over {count} one-bit 9400x9400 PNG scans, 8 workers: {peak} MiB")
    assert status == 0, output
    summary = json.loads(output[output.index("{"):output.rindex("}") + 1])
    assert (summary["tagged"], summary["failed"]) == (count, 0)
    assert peak < 1024, f"peak RSS {peak} MiB"


def test_a_large_picture_reduced_before_conversion_gives_the_tile_a_full_conversion_gives():
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (9, 12, 3), dtype=np.uint8))
    photo = small.resize((2400, 1800), Image.Resampling.BICUBIC)  # 4.3 megapixels: reduced first
    assert photo.width * photo.height >= images.EARLY_REDUCE_PIXELS
    full = np.asarray(photo.resize(images.TILE, Image.Resampling.LANCZOS, reducing_gap=3.0)).astype(int)
    for mode in ("RGB", "RGBA", "P", "L"):
        picture = photo.convert(mode)
        tile = images.decode(hostile.encode(picture, "PNG")).astype(int)
        expected = full if mode in ("RGB", "RGBA") else np.asarray(
            picture.convert("RGB").resize(images.TILE, Image.Resampling.LANCZOS, reducing_gap=3.0)).astype(int)
        assert np.abs(tile - expected).max() <= 3, mode


def test_a_large_picture_is_still_turned_as_its_exif_says():
    picture = Image.new("RGB", (3000, 1500), (220, 0, 0))  # left half red, right half blue, orientation 6
    picture.paste((0, 0, 220), (1500, 0, 3000, 1500))
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("PNG", "TIFF"):
        tile = images.decode(hostile.encode(picture, fmt, exif=exif.tobytes())).astype(int)
        top, bottom = tile[:8].mean((0, 1)), tile[-8:].mean((0, 1))
        assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], fmt


def test_a_one_bit_scan_is_a_grey_picture_not_blank():
    tile = images.decode(hostile.one_bit_scan(size=3000, seed=1))
    assert tile.shape == (32, 32, 3) and not images.is_flat(tile)


def test_the_budget_lets_through_only_what_fits_and_a_picture_bigger_than_all_alone():
    budget = images.MemoryBudget(capacity=100, smallest=10)
    inside, most = [0], [0]
    lock = threading.Lock()

    def decode(amount: int) -> None:
        with budget.reserve(amount):
            with lock:
                inside[0] += amount
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= amount

    threads = [threading.Thread(target=decode, args=(amount,)) for amount in (40, 40, 40, 500, 40, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert budget.used == 0 and not any(thread.is_alive() for thread in threads)
    assert most[0] <= 500 + 5, "the oversized one ran alone (the tiny one takes no part)"
    assert images.decoded_bytes("1", (9400, 9400)) == 2 * 9400 * 9400 <= images.BUDGET.capacity
