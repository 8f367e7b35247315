"""Where images come from: a local folder or, through `tasks.tag.s3`, a bucket; listed, then read.

A source lists `ImageRef`s and reads their bytes; everything after listing is one code path (tasks.tag.tag).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path
from typing import Iterator

# The shared types live in tasks.tag.refs, which both this module and tasks.tag.s3 import (no cycle);
# they are re-exported here, where callers have always found them.
from tasks.tag.refs import (  # noqa: F401
    HASHED_KEY_PREFIX, MAX_IMAGE_BYTES, MAX_KEY_BYTES, NOT_IMAGE_SUFFIXES, SYSTEM_FILES, SYSTEM_FOLDERS, ImageRef,
    Source, SourceAccessDenied, SourceError, SourceNotConfigured, SourceNotFound, UnreadableImage, escaped,
    exact_name, image_key, is_system_folder, storable, too_big, unescaped)

log = logging.getLogger(__name__)

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


def name_text(path: str) -> str:
    """A path as text decided by its bytes, whatever the locale: UTF-8, other bytes kept as surrogates
    (os.fsdecode's decoding under a Latin-1 locale would turn 'café' into 'cafÃ©', another image)."""
    return os.fsencode(path).decode("utf-8", "surrogateescape")


def path_ref(path: str, size: int | None = None, stat: os.stat_result | None = None) -> ImageRef:
    """The ref of a local path: keyed by its bytes (name_text), opened by the path as the OS gave it;
    `stat` (the file's, links followed) gives its size and the metadata of ImageRef.signature."""
    ref = ImageRef.of(name_text(path), stat.st_size if stat is not None else size)
    if stat is not None:
        ref = dataclasses.replace(ref, mtime_ns=stat.st_mtime_ns, inode=stat.st_ino, device=stat.st_dev)
    if ref.location is None and ref.uri == path:
        return ref
    return dataclasses.replace(ref, location=path)



class LocalSource:
    """Every regular file under a folder, recursively, in sorted order; hidden files and folders are skipped.

    File types are sniffed from content when decoding, so a text file named .jpg is reported; files with
    a text or sidecar suffix (NOT_IMAGE_SUFFIXES: notes.txt, .xmp) and the files of NAS and system
    folders (SYSTEM_FOLDERS: @eaDir, #recycle, $RECYCLE.BIN) are skipped and counted in `not_images`.
    A subfolder that cannot be listed (no permission, a path over PATH_MAX) is listed as one failed
    entry with the reason, and the listing goes on. Symbolic links to files are followed only while
    they stay inside the root; linked folders are never followed (no cycles, no escapes). A link that loops or points to nothing is
    listed with its reason (`ImageRef.error`) and fails as one image; no entry stops the listing.
    """

    def __init__(self, root: str | Path):
        try:
            self.root = Path(root).expanduser().resolve(strict=True)
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on Python < 3.13
            raise SourceNotFound(f"{shown(str(root))}: no such file or folder ({_why(error)})") from None
        # a folder name that is not UTF-8 is stored escaped, like the file names under it
        self.uri = escaped(name_text(str(self.root)))
        self.not_images = 0  # files the last list() skipped: sidecar suffixes, system folders and files
        self.listed_folders: list[str] = []  # URIs of the subfolders the last list() could list

    def list(self) -> Iterator[ImageRef]:
        self.not_images, self.listed_folders = 0, []
        if self.root.is_file():
            yield path_ref(str(self.root), stat=_stat(self.root))
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
                # its files cannot be known, let alone tagged: the folder fails as one entry (counted,
                # in failed_images, read again by the next run) and the listing goes on
                yield dataclasses.replace(path_ref(folder), error=_unlistable(error))
                continue
            if folder != str(self.root):  # readable now: a failure an earlier run recorded for it is over
                self.listed_folders.append(path_ref(folder).uri)
            subfolders: list[str] = []
            while entries:
                entry = entries.pop()
                if entry.name.startswith("."):
                    continue
                try:
                    ref = self._entry(entry, subfolders)
                except Exception as error:  # noqa: BLE001  one odd entry never stops the listing
                    ref = dataclasses.replace(path_ref(entry.path), error=f"cannot list this entry: {_why(error)}")
                if ref is not None:
                    yield ref
            folders.extend(reversed(subfolders))

    def _entry(self, entry: os.DirEntry, subfolders: list[str]) -> ImageRef | None:
        """The ref of one folder entry; None for folders (queued), links leaving the root and other skips."""
        try:
            if entry.is_dir(follow_symlinks=False):
                if is_system_folder(entry.name):
                    self.not_images += _files_under(entry.path)
                else:
                    subfolders.append(entry.path)
                return None
            if os.path.splitext(entry.name)[1].lower() in NOT_IMAGE_SUFFIXES or entry.name in SYSTEM_FILES:
                self.not_images += 1
                return None
            if not entry.is_symlink():
                if entry.is_file(follow_symlinks=False):
                    return path_ref(entry.path, stat=entry.stat(follow_symlinks=False))
                return None  # a socket, a pipe, a device: not a picture
        except FileNotFoundError:  # gone since the folder was listed: nothing to tag
            return None
        try:
            target = Path(entry.path).resolve(strict=True)
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on Python < 3.13
            return dataclasses.replace(path_ref(entry.path), error=_broken_link(error))
        if not target.is_file() or not target.is_relative_to(self.root):
            return None  # linked folders are never followed, links out of the root never read
        return path_ref(entry.path, stat=target.stat())

    def read(self, ref: ImageRef, max_bytes: int) -> bytes:
        return read_file(ref.location or ref.uri, max_bytes)


def read_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A local file's bytes, at most max_bytes; UnreadableImage with the reason otherwise."""
    try:
        with open(path, "rb") as file:
            # a buffer the file's size, not max_bytes: read(max_bytes + 1) allocated (and returned to the
            # system) hundreds of megabytes per file, a tenth of a millisecond each; a file that grew
            # since, or reports no size (/proc), is read on to the limit
            size = os.fstat(file.fileno()).st_size
            data = file.read(min(size, max_bytes) + 1)
            if len(data) > size and len(data) <= max_bytes:
                data += file.read(max_bytes + 1 - len(data))
    except OSError as error:
        raise UnreadableImage(f"cannot read the file: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise UnreadableImage(too_big(None, max_bytes))
    return data


def _why(error: BaseException) -> str:
    if isinstance(error, RuntimeError) and "loop" in str(error).lower():
        return "symbolic link loop"
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__)


def _unlistable(error: OSError) -> str:
    """Why a subfolder's files were not tagged, and what a person does about it."""
    if error.errno in (errno.EACCES, errno.EPERM):
        return ("cannot list this folder: permission denied; its files were not tagged (let the user that "
                "runs hashtagger read it, and the next run tags them)")
    if error.errno == errno.ENAMETOOLONG:
        return (f"cannot list this folder: its path is longer than the system allows (PATH_MAX, "
                f"{os.pathconf('/', 'PC_PATH_MAX'):,} bytes); its files were not tagged (move the folder "
                "higher up or shorten its names)")
    return f"cannot list this folder: {_why(error)}; its files were not tagged"


def _files_under(folder: str) -> int:
    """How many files a skipped folder holds, subfolders included (unreadable parts count nothing)."""
    count, folders = 0, [folder]
    while folders:
        try:
            with os.scandir(folders.pop()) as listing:
                for entry in listing:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    else:
                        count += 1
        except OSError:
            continue
    return count


def _broken_link(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError):
        return "a symbolic link to nothing: its target does not exist"
    if isinstance(error, RuntimeError) or getattr(error, "errno", None) == 40:  # ELOOP
        return "a symbolic link loop: the link points back to itself"
    return f"a symbolic link that cannot be followed: {_why(error)}"


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def open_source(uri: str, workers: int = 4, s3_settings=None) -> Source:
    """A Source for a folder path or an s3://bucket/prefix URI; `s3_settings` (tasks.config.S3Settings,
    None: boto3's standard AWS environment) says how to reach the bucket."""
    if not uri.strip():  # an unset variable: never the current folder instead
        raise SourceNotFound("SOURCE is empty: name a folder or s3://bucket/prefix")
    if uri.startswith("s3://"):
        from tasks.tag import s3

        return s3.S3Source(uri, max_connections=workers * 2, settings=s3_settings)
    return LocalSource(uri)
