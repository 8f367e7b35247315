"""Where images come from: a local folder or, through `tasks.tag.s3`, a bucket; listed, then read.

A source lists `ImageRef`s and reads their bytes; everything after listing is one code path (tasks.tag.tag).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterator, Protocol

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 200 * 2**20  # a bigger file is refused unread: no camera photo comes close
# Text and sidecar files people keep beside photos (notes, metadata, edits): a folder source does not
# list them, so they are neither tagged nor reported as failed images; LocalSource counts them.
NOT_IMAGE_SUFFIXES = frozenset({".txt", ".md", ".csv", ".json", ".xml", ".xmp", ".aae", ".log", ".yaml",
                                ".yml", ".ini", ".db", ".sqlite", ".py", ".sh"})


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
    uri: str

    def list(self) -> Iterator[ImageRef]: ...

    def read(self, ref: ImageRef, max_bytes: int) -> bytes: ...


class LocalSource:
    """Every regular file under a folder, recursively, in sorted order; hidden files and folders are skipped.

    File types are sniffed from content when decoding, so a text file named .jpg is reported; files with
    a text or sidecar suffix (NOT_IMAGE_SUFFIXES: notes.txt, .xmp) are skipped and counted in
    `not_images`. Symbolic links to files are followed only while they stay inside the root;
    linked folders are never followed (no cycles, no escapes).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise SourceError(f"{root}: no such file or folder")
        self.uri = str(self.root)
        self.not_images = 0  # files skipped for their suffix (NOT_IMAGE_SUFFIXES) by the last list()

    def list(self) -> Iterator[ImageRef]:
        self.not_images = 0
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
                    elif os.path.splitext(entry.name)[1].lower() in NOT_IMAGE_SUFFIXES:
                        self.not_images += 1
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


def too_big(size: int | None, max_bytes: int) -> str:
    shown = f"{size / 2**20:,.0f} MiB" if size is not None else "more"
    return f"too large: {shown} on disk, over the {max_bytes / 2**20:,.0f} MiB limit per image"


def open_source(uri: str, workers: int = 4) -> Source:
    """A Source for a folder path or an s3://bucket/prefix URI."""
    if uri.startswith("s3://"):
        from tasks.tag import s3

        return s3.S3Source(uri, max_connections=workers * 2)
    return LocalSource(uri)
