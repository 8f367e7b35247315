"""Pictures for the review page, read only for images the results database holds.

A request names an image by its key and content hash; both only ever go to the database as bind
parameters. The file read is the one the database row names, through the source of the run that tagged
it (a folder or a bucket), so no path from a request reaches the file system.
"""

from __future__ import annotations

import io
import logging

import sqlalchemy as sa

from tasks.store import reviews_sql

log = logging.getLogger(__name__)


class NoPicture(LookupError):
    """No picture for that request: the results database holds no such image, or its file is gone or
    unreadable. str() says which, for the log; the page only sees 404."""


def picture_jpeg(engine: sa.Engine, image_uri: str, content_hash: str, longest_px: int, max_read_bytes: int) -> bytes:
    """JPEG bytes of the image (key, content hash) scaled to fit `longest_px` pixels; NoPicture as
    `stored_bytes` says."""
    return scaled_jpeg(stored_bytes(engine, image_uri, content_hash, max_read_bytes), longest_px)


def stored_bytes(engine: sa.Engine, image_uri: str, content_hash: str, max_read_bytes: int,
                 opened: dict | None = None) -> bytes:
    """The file's bytes of the image (key, content hash), read through the source of the run that tagged
    it (a folder or a bucket); NoPicture when the database holds no such image, or its file is gone,
    unreadable, or holds other bytes now (a sha256 content hash that no longer matches; an S3 ETag is not
    checked). `opened`: a cache of open sources by URI, for a caller that reads many."""
    from tasks.tag import sources, tag as tagging

    row = reviews_sql.picture_row(engine, image_uri, content_hash)
    if row is None:
        raise NoPicture("the results database holds no such image")
    key, uri_text, source_uri = row
    opened = {} if opened is None else opened
    try:
        if source_uri not in opened:
            opened[source_uri] = sources.open_source(source_uri)
        data = opened[source_uri].read(sources.ImageRef(key, location=sources.exact_name(key, uri_text)),
                                       max_read_bytes)
    except (sources.UnreadableImage, sources.SourceError) as error:
        raise NoPicture(f"cannot read {uri_text or key}: {error}") from None
    if content_hash.startswith("sha256:") and tagging.content_hash(data) != content_hash:
        # other bytes under the same name: an answer about them would be filed under the old ones
        raise NoPicture(f"{uri_text or key} has changed since it was tagged")
    return data


def scaled_jpeg(data: bytes, longest_px: int) -> bytes:
    """The picture in `data` as RGB JPEG, upright (EXIF), at most `longest_px` on its longest side; a
    small CIFAR-sized image is enlarged (nearest neighbour) so a person sees what the model saw."""
    from PIL import Image, ImageOps

    from tasks.data import images

    try:
        with Image.open(io.BytesIO(data)) as opened:
            images._check_size(opened)  # the tagger's guard against decompression bombs
            picture = images.to_rgb(ImageOps.exif_transpose(opened))
            scale = longest_px / max(picture.size)
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
            picture = picture.resize(size, resample)
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=85)
    except Exception as error:  # noqa: BLE001  an undecodable file is a missing picture, not a crash
        raise NoPicture(f"cannot decode the picture: {error}") from None
    return out.getvalue()
