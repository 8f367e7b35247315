"""What every image source shares: the reference to one image, the Source protocol and their errors.

A module of its own so that tasks.tag.sources (folders, and the choice of source) and tasks.tag.s3
(buckets) both import it without importing each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Iterator, Protocol

MAX_IMAGE_BYTES = 200 * 2**20  # a bigger file is refused unread: no camera photo comes close
# URIs longer than this (UTF-8 bytes) are keyed by their hash: PostgreSQL refuses btree index entries over
# about 2,700 bytes, and the results' primary keys hold the URI. 1,024 is S3's longest key.
MAX_KEY_BYTES = 1024
HASHED_KEY_PREFIX = "uri-sha256:"

# Folders that NAS and operating systems keep among people's files: thumbnails (Synology's @eaDir makes
# one photo four), recycle bins, snapshots. Skipped like sidecars, whatever their case (Windows ignores
# it), and their files counted in `not_images`; hidden ones (.Trash-1000, .Trashes, .@__thumb) are
# skipped as hidden already. A NAS synced to a bucket brings them along: tasks.tag.s3 skips them too.
SYSTEM_FOLDERS = frozenset(name.casefold() for name in (
    "@eaDir", "#recycle", "#snapshot", "@Recycle", "@Recently-Snapshot", "@sharebin", "$RECYCLE.BIN",
    "RECYCLER", "RECYCLED", "System Volume Information", "lost+found"))
# Text and sidecar files people keep beside photos (notes, metadata, edits): neither tagged nor reported
# as failed images; a folder's and a bucket's listing skip them and count them (`not_images`).
NOT_IMAGE_SUFFIXES = frozenset({".txt", ".md", ".csv", ".json", ".xml", ".xmp", ".aae", ".log", ".yaml",
                                ".yml", ".ini", ".db", ".sqlite", ".py", ".sh"})
# Files of the same kind: macOS keeps a folder's custom icon in an empty file named "Icon\r".
SYSTEM_FILES = frozenset({"Icon\r"})


def is_system_folder(name: str) -> bool:
    """Whether a folder of this name belongs to a NAS or the operating system, not to the photos."""
    return name.casefold() in SYSTEM_FOLDERS or name.startswith(".Trash-")


def storable(name: str) -> bool:
    """Whether PostgreSQL and SQLite store this text as it is: valid Unicode (no lone surrogates, which
    stand for the bytes of a non-UTF-8 file name) and no NUL character."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in name


# What `unescaped` reads as an escape: a backslash before a backslash, or before x and two hex digits.
_ESCAPE = re.compile(rb"\\(\\|x([0-9a-f]{2}))")


def escaped(name: str) -> str:
    """Text for a name, reversible for every name (`unescaped` gives its bytes back): its non-UTF-8 bytes
    as \\xNN, NUL as \\x00 and backslashes doubled. A storable name is returned as is unless it holds
    what reads as an escape (the ten characters `caf\\xe9.jpg` would show as the Latin-1 name caf\xe9.jpg
    does): such a name is escaped too, so two names are never one text."""
    if storable(name) and not _ESCAPE.search(name.encode("utf-8")):
        return name
    raw = name.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\").replace(b"\0", b"\\x00")
    return raw.decode("utf-8", "backslashreplace")


def unescaped(text: str) -> bytes:
    """The name's bytes back from `escaped` text (of any name)."""
    return _ESCAPE.sub(lambda match: match.group(1) if match.group(2) is None else bytes([int(match.group(2), 16)]),
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
    the name. uri_text is escaped when the name was not storable or reads as escaped text; a long name is
    kept as it is."""
    if text is None:
        return None
    for name in (text, unescaped(text).decode("utf-8", "surrogateescape")):
        if image_key(name) == key:
            return name
    return None




@dataclasses.dataclass(frozen=True)
class ImageRef:
    """One listed image. `uri` is its identity in the results (image_key of the name); `name` the text people
    read when that differs (escaped, or a long URI); `location` what read() opens when that differs from
    `uri` (a hashed key; for a local file, also a name the locale decodes otherwise)."""

    uri: str
    size: int | None = None  # bytes, when the listing says
    etag: str | None = None  # the store's content tag, when it gives one: the content's identity
    location: str | None = None  # the exact name (a non-UTF-8 file name, a key holding NUL)
    name: str | None = None  # the escaped text, when `uri` is a hashed key
    error: str | None = None  # listed but unreadable (a symbolic link loop): the failure's reason
    # What the listing says about the bytes without reading them (issue 24): a local file's mtime in ns,
    # inode and device; an object's LastModified (ISO 8601). With `size` and `etag` they make `signature`.
    mtime_ns: int | None = None
    inode: int | None = None
    device: int | None = None
    modified: str | None = None
    # the content hash stored for this very signature (tasks/store/files.py): the bytes are known unread
    stored_hash: str | None = None

    @classmethod
    def of(cls, name: str, size: int | None = None, etag: str | None = None) -> "ImageRef":
        """The ref of an exact path or s3:// URI, with its key and, when they differ, its text."""
        key = image_key(name)
        if key == name:
            text = escaped(name)  # a storable name that reads as escaped text is shown escaped
            return cls(name, size, etag, name=text if text != name else None)
        return cls(key, size, etag, location=name, name=escaped(name))

    @property
    def text(self) -> str:
        """The URI as stored for people to read (image_uri in the views)."""
        return self.name or self.uri

    @property
    def signature(self) -> str | None:
        """The metadata that stands for the bytes, as one text compared with what was stored: 'file:' size,
        mtime_ns, inode, device for a local file (what rsync and restic compare), 's3:' ETag, size,
        LastModified for an object; None when the listing gave none (the bytes are then always read)."""
        if self.etag is not None:
            return f"s3:{self.etag}:{self.size}:{self.modified}"
        if self.mtime_ns is not None:
            return f"file:{self.size}:{self.mtime_ns}:{self.inode}:{self.device}"
        return None

    @property
    def listed_hash(self) -> str | None:
        """The content hash known from the listing alone (S3's ETag), so done images are never read."""
        return f"etag:{self.etag}" if self.etag else None


class SourceError(RuntimeError):
    """The source itself cannot be listed or read (as opposed to one bad image): the run stops.

    What to do about it is in the type, never in the message (tasks/errors.py decides retries and exit
    statuses from these two flags): this base class is transient (a server or network that may come
    back: an orchestrator retries, the CLI exits 1 "run it again").
    """

    permanent = False  # True: running the same command again cannot help; an orchestrator does not retry
    needs_configuration = False  # True: a person has to act (exit status 2), retried or not


class SourceNotFound(SourceError):
    """No such folder or bucket, or a source URI that names none (malformed, empty)."""

    permanent = needs_configuration = True


class SourceAccessDenied(SourceError):
    """The store refuses these credentials (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch)."""

    permanent = needs_configuration = True


class SourceNotConfigured(SourceError):
    """No credentials found: a person configures them, yet an orchestrator still retries, since botocore
    finds none also while an instance's metadata service or a pod's token is not ready yet."""

    needs_configuration = True


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
