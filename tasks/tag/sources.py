"""Where images come from: a local folder or, through `tasks.tag.s3`, a bucket; listed, then read.

A source lists `ImageRef`s and reads their bytes; everything after listing is one code path (tasks.tag.tag).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Iterator, Protocol

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 200 * 2**20  # a bigger file is refused unread: no camera photo comes close
# URIs longer than this (UTF-8 bytes) are keyed by their hash: PostgreSQL refuses btree index entries over
# about 2,700 bytes, and the results' primary keys hold the URI. 1,024 is S3's longest key.
MAX_KEY_BYTES = 1024
HASHED_KEY_PREFIX = "uri-sha256:"


def storable(name: str) -> bool:
    """Whether PostgreSQL and SQLite store this text as it is: valid Unicode (no lone surrogates, which
    stand for the bytes of a non-UTF-8 file name) and no NUL character."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in name


def escaped(name: str) -> str:
    """Text for a name that cannot be stored as it is: its non-UTF-8 bytes as \\xNN, NUL as \\x00 and
    backslashes doubled, so the escaping is reversible (`unescaped`). Storable names are returned as is."""
    if storable(name):
        return name
    raw = name.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\").replace(b"\0", b"\\x00")
    return raw.decode("utf-8", "backslashreplace")


def unescaped(text: str) -> bytes:
    """The name's bytes back from `escaped` text of a name that needed escaping."""
    return re.sub(rb"\\(\\|x([0-9a-f]{2}))",
                  lambda match: match.group(1) if match.group(2) is None else bytes([int(match.group(2), 16)]),
                  text.encode("utf-8"))


def image_key(name: str) -> str:
    """The image's identity in the results tables: the URI itself when it is storable and short, else
    'uri-sha256:<hex>' of its exact bytes, so two names stay two images even when their escaped texts
    are alike, and a 4,000-byte path fits PostgreSQL's index."""
    if storable(name) and len(name.encode("utf-8")) <= MAX_KEY_BYTES:
        return name
    return HASHED_KEY_PREFIX + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()


def exact_name(key: str, text: str | None) -> str | None:
    """The exact name behind a stored key and its uri_text (what read() opens), or None when the key is
    the name. uri_text is escaped only when the name was not storable; a long name is kept as it is."""
    if text is None:
        return None
    for name in (text, unescaped(text).decode("utf-8", "surrogateescape")):
        if image_key(name) == key:
            return name
    return None


def shown(text: str) -> str:
    """A name made safe for a terminal: control characters (escape sequences would clear the screen or move
    the cursor) as Python escapes, a non-UTF-8 file name's bytes as \\xNN, printable text as it is."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_character(char) for char in text)


def _escape_character(char: str) -> str:
    if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte of an undecodable file name (os.fsdecode's surrogateescape)
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


# Text and sidecar files people keep beside photos (notes, metadata, edits): a folder source does not
# list them, so they are neither tagged nor reported as failed images; LocalSource counts them.
NOT_IMAGE_SUFFIXES = frozenset({".txt", ".md", ".csv", ".json", ".xml", ".xmp", ".aae", ".log", ".yaml",
                                ".yml", ".ini", ".db", ".sqlite", ".py", ".sh"})


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """One listed image. `uri` is its identity in the results (image_key of the name); `name` the text people
    read when that differs (escaped, or a long URI); `location` what read() opens when that differs."""

    uri: str
    size: int | None = None  # bytes, when the listing says
    etag: str | None = None  # the store's content tag, when it gives one: the content's identity
    location: str | None = None  # the exact name (a non-UTF-8 file name, a key holding NUL)
    name: str | None = None  # the escaped text, when `uri` is a hashed key
    error: str | None = None  # listed but unreadable (a symbolic link loop): the failure's reason

    @classmethod
    def of(cls, name: str, size: int | None = None, etag: str | None = None) -> "ImageRef":
        """The ref of an exact path or s3:// URI, with its key and, when they differ, its text."""
        key = image_key(name)
        if key == name:
            return cls(name, size, etag)
        return cls(key, size, etag, location=name, name=escaped(name))

    @property
    def text(self) -> str:
        """The URI as stored for people to read (image_uri in the views)."""
        return self.name or self.uri

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
    `not_images`. Symbolic links to files are followed only while they stay inside the root; linked
    folders are never followed (no cycles, no escapes). A link that loops or points to nothing is
    listed with its reason (`ImageRef.error`) and fails as one image; no entry stops the listing.
    """

    def __init__(self, root: str | Path):
        try:
            self.root = Path(root).expanduser().resolve(strict=True)
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on Python < 3.13
            raise SourceError(f"{shown(str(root))}: no such file or folder ({_why(error)})") from None
        # a folder name that is not UTF-8 is stored escaped, like the file names under it
        self.uri = escaped(str(self.root))
        self.not_images = 0  # files skipped for their suffix (NOT_IMAGE_SUFFIXES) by the last list()

    def list(self) -> Iterator[ImageRef]:
        self.not_images = 0
        if self.root.is_file():
            yield ImageRef.of(str(self.root), _size(self.root))
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
                    raise SourceError(f"{self.uri}: cannot list: {_why(error)}") from None
                # an unreadable subfolder: its files cannot be known, let alone tagged; say so and go on
                log.warning("skipping %s: %s", shown(folder), _why(error))
                continue
            subfolders: list[str] = []
            while entries:
                entry = entries.pop()
                if entry.name.startswith("."):
                    continue
                try:
                    ref = self._entry(entry, subfolders)
                except Exception as error:  # noqa: BLE001  one odd entry never stops the listing
                    ref = ImageRef.of(entry.path)
                    ref = dataclasses.replace(ref, error=f"cannot list this entry: {_why(error)}")
                if ref is not None:
                    yield ref
            folders.extend(reversed(subfolders))

    def _entry(self, entry: os.DirEntry, subfolders: list[str]) -> ImageRef | None:
        """The ref of one folder entry; None for folders (queued), links leaving the root and other skips."""
        try:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
                return None
            if os.path.splitext(entry.name)[1].lower() in NOT_IMAGE_SUFFIXES:
                self.not_images += 1
                return None
            if not entry.is_symlink():
                if entry.is_file(follow_symlinks=False):
                    return ImageRef.of(entry.path, entry.stat(follow_symlinks=False).st_size)
                return None  # a socket, a pipe, a device: not a picture
        except FileNotFoundError:  # gone since the folder was listed: nothing to tag
            return None
        try:
            target = Path(entry.path).resolve(strict=True)
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on Python < 3.13
            return dataclasses.replace(ImageRef.of(entry.path), error=_broken_link(error))
        if not target.is_file() or not target.is_relative_to(self.root):
            return None  # linked folders are never followed, links out of the root never read
        return ImageRef.of(entry.path, target.stat().st_size)

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


def _why(error: BaseException) -> str:
    if isinstance(error, RuntimeError) and "loop" in str(error).lower():
        return "symbolic link loop"
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__)


def _broken_link(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError):
        return "a symbolic link to nothing: its target does not exist"
    if isinstance(error, RuntimeError) or getattr(error, "errno", None) == 40:  # ELOOP
        return "a symbolic link loop: the link points back to itself"
    return f"a symbolic link that cannot be followed: {_why(error)}"


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
