"""Where images come from: a local folder or, through `tasks.tag.s3`, a bucket; listed, then read.

A source lists `ImageRef`s and reads their bytes; everything after listing is one code path (tasks.tag.tag).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

# The shared types live in tasks.tag.refs, which both this module and tasks.tag.s3 import (no cycle);
# they are re-exported here, where callers have always found them.
from tasks.tag.refs import MAX_IMAGE_BYTES, ImageRef, Source, SourceError, UnreadableImage, too_big  # noqa: F401

log = logging.getLogger(__name__)


class LocalSource:
    """Every regular file under a folder, recursively, in sorted order; hidden files and folders are skipped.

    File types are sniffed from content when decoding, so a JPEG named .txt is tagged and a text file
    named .jpg is reported. Symbolic links to files are followed only while they stay inside the root;
    linked folders are never followed (no cycles, no escapes).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise SourceError(f"{root}: no such file or folder")
        self.uri = str(self.root)

    def list(self) -> Iterator[ImageRef]:
        if self.root.is_file():
            yield self._ref(str(self.root), _size(self.root))
            return
        folders = [str(self.root)]  # depth first: a folder's files in name order, then its subfolders
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    # reversed, then popped: each entry (which caches its path and stat) is freed once
                    # used, so memory falls back as a large folder is tagged
                    entries = sorted(listing, key=lambda entry: entry.name, reverse=True)
            except OSError as error:
                if folder == str(self.root):
                    raise SourceError(f"{self.root}: cannot list: {error.strerror or error}") from None
                # an unreadable subfolder: its files cannot be known, let alone tagged; say so and go on
                log.warning("skipping %s: %s", folder, error.strerror or error)
                continue
            subfolders = []
            while entries:
                entry = entries.pop()
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.path)
                    elif entry.is_symlink():
                        if self._inside(Path(entry.path)) and entry.is_file():
                            yield self._ref(entry.path, entry.stat().st_size)
                    elif entry.is_file(follow_symlinks=False):
                        yield self._ref(entry.path, entry.stat(follow_symlinks=False).st_size)
                except OSError:  # gone since the folder was listed: nothing to tag
                    continue
            folders.extend(reversed(subfolders))

    @staticmethod
    def _ref(path: str, size: int | None) -> ImageRef:
        try:
            path.encode("utf-8")
            return ImageRef(path, size)
        except UnicodeEncodeError:
            # a file name that is not UTF-8 cannot be stored as text: store it escaped, read the real one
            return ImageRef(os.fsencode(path).decode("utf-8", "backslashreplace"), size, location=path)

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.root)
            return True
        except (ValueError, OSError):
            return False

    def read(self, ref: ImageRef, max_bytes: int) -> bytes:
        return read_file(ref.location or ref.uri, max_bytes)


def read_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A local file's bytes, at most max_bytes; UnreadableImage with the reason otherwise."""
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise UnreadableImage(f"cannot read the file: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise UnreadableImage(too_big(None, max_bytes))
    return data


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def open_source(uri: str, workers: int = 4) -> Source:
    """A Source for a folder path or an s3://bucket/prefix URI."""
    if uri.startswith("s3://"):
        from tasks.tag import s3

        return s3.S3Source(uri, max_connections=workers * 2)
    return LocalSource(uri)
