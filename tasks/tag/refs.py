"""What every image source shares: the reference to one image, the Source protocol and their errors.

A module of its own so that tasks.tag.sources (folders, and the choice of source) and tasks.tag.s3
(buckets) both import it without importing each other.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Protocol

MAX_IMAGE_BYTES = 200 * 2**20  # a bigger file is refused unread: no camera photo comes close


@dataclasses.dataclass(frozen=True)
class ImageRef:
    uri: str  # what people see in the results: an absolute path or s3://bucket/key
    size: int | None = None  # bytes, when the listing says
    etag: str | None = None  # the store's content tag, when it gives one: the content's identity
    location: str | None = None  # what read() opens when it differs from `uri` (an undecodable file name)

    @property
    def listed_hash(self) -> str | None:
        """The content hash known from the listing alone (S3's ETag), so done images are never read."""
        return f"etag:{self.etag}" if self.etag else None


class SourceError(RuntimeError):
    """The source itself cannot be listed or read (as opposed to one bad image): the run stops."""


class UnreadableImage(Exception):
    """One image cannot be read (gone, permission denied, too big); str(error) is the reason."""


class Source(Protocol):
    """Lists ImageRefs and reads their bytes (at most max_bytes; UnreadableImage otherwise)."""

    uri: str

    def list(self) -> Iterator[ImageRef]: ...

    def read(self, ref: ImageRef, max_bytes: int) -> bytes: ...


def too_big(size: int | None, max_bytes: int) -> str:
    shown = f"{size / 2**20:,.0f} MiB" if size is not None else "more"
    return f"too large: {shown} on disk, over the {max_bytes / 2**20:,.0f} MiB limit per image"
