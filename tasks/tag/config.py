"""A tagging run's settings (tasks/tag/tag.py `run`; its stages, tasks/tag/stages.py, read them)."""

from __future__ import annotations

import dataclasses
import os

from tasks.tag import sources


@dataclasses.dataclass(frozen=True)
class TagConfig:
    batch_size: int = 256  # images per model call and per database transaction
    workers: int = max(1, os.cpu_count() or 1)  # threads reading and decoding (Pillow releases the GIL)
    label_count: int = 5  # top labels stored per image
    # abstain below this calibrated top probability (tasks/tag/decide.py); None: the model's own
    # threshold (metrics.ood.threshold); 0: never abstain
    min_confidence: float | None = None
    limit: int | None = None  # at most this many new images (tagged or failed) this run; None: all
    dry_run: bool = False  # list and count only: no decoding, no writes
    progress: bool = False  # a progress bar on stderr
    progress_total: int | None = None  # images the bar counts up to (the CLI counts a folder first); None: unknown
    max_bytes: int = sources.MAX_IMAGE_BYTES  # bytes per file; bigger files fail unread ("too large")
    # (index, count): tag only the images whose URI hashes to this shard, so `count` workers can split
    # one source without coordinating (the nightly DAG maps one task per shard)
    shard: tuple[int, int] | None = None
    # read and hash every image, whatever its metadata says, and store the metadata found (a weekly
    # check: catches bytes changed under the same size, mtime and inode, which a normal run skips)
    verify: bool = False

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:  # 0 would list the source and tag nothing
            raise ValueError(f"limit must be at least 1 image (None: no limit), not {self.limit}")
