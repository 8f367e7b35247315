"""Fetch an archive over HTTP(S) with a progress bar and an md5 check, atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

CHUNK_BYTES = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar


class DownloadError(RuntimeError):
    """The archive could not be fetched whole, or it is not the archive that was published."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, destination: Path, expected_md5: str | None, timeout_s: float = 60.0,
          progress: bool = True) -> Path:
    """Download `url` to `destination`; a short or corrupt download leaves nothing at `destination`.

    An existing file with the right checksum is reused, so a rerun does not download again.
    """
    destination = Path(destination)
    expected_md5 = expected_md5.strip().lower() if expected_md5 else None
    if destination.exists() and expected_md5 and md5_of(destination) == expected_md5:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".part-", dir=destination.parent)
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            _stream(url, out, timeout_s, progress)
        if expected_md5:
            actual = md5_of(tmp_path)
            if actual != expected_md5:
                raise DownloadError(
                    f"{url}: md5 {actual} does not match the published {expected_md5}; "
                    "the download is corrupt or not the official archive (nothing was kept)")
        os.replace(tmp_path, destination)
        return destination
    finally:
        tmp_path.unlink(missing_ok=True)


def _stream(url: str, out, timeout_s: float, progress: bool) -> None:
    from tqdm import tqdm

    try:
        response = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 (user-chosen URL)
    except (OSError, ValueError, http.client.HTTPException) as error:  # ValueError: not a URL
        raise DownloadError(f"{url}: cannot download ({error})") from error
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name,
                  disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                # IncompleteRead (a chunked body cut short) is an HTTPException, not an OSError.
                except (OSError, http.client.HTTPException) as error:
                    raise DownloadError(f"{url}: download broke off after {received} bytes "
                                        f"({error})") from error
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise DownloadError(f"{url}: truncated download, got {received} of {total} bytes")

