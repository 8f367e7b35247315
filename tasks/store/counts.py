"""A tagging run's counts, defined once: the record, and the SQL that adds, resets and reads them.

Every path derives from `RunCounts`: the batch writes (`ADD`), the reset of a repeated run (`RESET`), the
reads of `tagging_runs` (`COLUMNS`), the run's summary (tasks/tag/tag.py RunSummary extends the record),
the nightly DAG's totals and the run page's header (`RunCounts.total`). A new count is one field here
and its column in a migration (tests/store/test_run_counts.py checks every path against the fields).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class RunCounts:
    """What one tagging run (or the shard runs of a nightly run, summed) did, in images or files."""

    seen: int = 0  # images listed in the source (or shard): tagged + skipped + failed
    tagged: int = 0  # results written, abstentions included
    skipped: int = 0  # done by an earlier run (this model, these bytes): not read again
    failed: int = 0  # images that could not be read or decoded (view failed_images)
    abstained: int = 0  # of `tagged`: no confident label (a NULL label, no label hashtags)
    not_images: int = 0  # files skipped as not images (notes, sidecars, system files): not in `seen`

    @classmethod
    def of(cls, row: Mapping) -> "RunCounts":
        """The counts of a `tagging_runs` row (or any mapping with these keys; NULL reads as 0)."""
        return cls(**{name: int(row[name] or 0) for name in FIELDS})

    @classmethod
    def total(cls, rows: Iterable[Mapping]) -> "RunCounts":
        """The counts of several runs (a nightly run's shards), summed field by field."""
        rows = [cls.of(row) for row in rows]
        return cls(**{name: sum(getattr(row, name) for row in rows) for name in FIELDS})

    def __add__(self, other: "RunCounts") -> "RunCounts":
        """Field by field: a run's counts and one more batch's."""
        return RunCounts(**{name: getattr(self, name) + getattr(other, name) for name in FIELDS})

    def counts(self) -> dict[str, int]:
        """{field: value}, in the order of the fields."""
        return {name: getattr(self, name) for name in FIELDS}


FIELDS = tuple(field.name for field in dataclasses.fields(RunCounts))
# What each committed batch adds; `not_images` comes from the listing, recorded once when the run ends.
BATCH_FIELDS = tuple(name for name in FIELDS if name != "not_images")
COLUMNS = ", ".join(FIELDS)  # the columns of tagging_runs holding them, for a SELECT
ADD = ", ".join(f"{name} = {name} + :{name}" for name in BATCH_FIELDS)  # an UPDATE's SET list
RESET = ", ".join(f"{name} = 0" for name in FIELDS)  # an UPDATE's SET list
