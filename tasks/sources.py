"""Where images come from: a local folder (or, through `tasks.s3`, a bucket), listed then read.

A source lists `ImageRef`s and reads their bytes; everything after listing is one code path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterator, Protocol


@dataclasses.dataclass(frozen=True)
class ImageRef:
    uri: str  # what people see in the results: an absolute path or s3://bucket/key
    size: int | None = None  # bytes, when the listing says
    etag: str | None = None  # the store's content tag, when it gives one


class SourceError(RuntimeError):
    """The source itself cannot be listed or read (as opposed to one bad image)."""


class Source(Protocol):
    uri: str

    def list(self) -> Iterator[ImageRef]: ...

    def read(self, ref: ImageRef) -> bytes: ...


class LocalSource:
    """Every regular file under a folder, recursively, in sorted order; hidden files are skipped.

    File types are sniffed from content when decoding, so a JPEG named .txt is tagged and a text file
    named .jpg is reported. Symbolic links are followed only while they stay inside the root.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise SourceError(f"{root}: no such folder")
        self.uri = str(self.root)

    def list(self) -> Iterator[ImageRef]:
        if self.root.is_file():
            yield ImageRef(str(self.root), self.root.stat().st_size)
            return
        for directory, subdirectories, files in os.walk(self.root, followlinks=False):
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(directory) / name
                if path.is_symlink() and not self._inside(path):
                    continue
                if path.is_file():
                    yield ImageRef(str(path), path.stat().st_size)

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.root)
            return True
        except (ValueError, OSError):
            return False

    def read(self, ref: ImageRef) -> bytes:
        return Path(ref.uri).read_bytes()


def open_source(uri: str) -> Source:
    """A Source for a folder path or an s3://bucket/prefix URI."""
    if uri.startswith("s3://"):
        from tasks import s3

        return s3.S3Source(uri)
    return LocalSource(uri)
