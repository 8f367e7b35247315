"""Image bytes -> 32x32 RGB tile, fast (JPEG draft mode) and safe (every failure has a reason a person reads).

Pillow's decompression-bomb limit stays on, and is enforced as an error here at its warning threshold
(`Image.MAX_IMAGE_PIXELS`, about 89 megapixels), not only at Pillow's own error threshold (twice that).
"""

from __future__ import annotations

import codecs
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

TILE = (32, 32)
DRAFT_FACTOR = 2  # JPEG DCT scaling stops while the decoded image is still >= 2x the tile: sharp enough

# decode() refuses images over the warning threshold itself, with a reason; the warning Pillow prints
# before that (once per process, on stderr) would only clutter the CLI.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Formats people send that Pillow cannot read, by their first bytes: a reason better than "unknown".
_KNOWN_OTHER_FORMATS = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"8BPS", "a Photoshop document"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg file"),
)
_ISO_BRANDS = {  # ISO base media files: the brand after 'ftyp' at byte 4
    b"heic": "a HEIC photo (HEIF is not supported; convert it to JPEG)",
    b"heix": "a HEIC photo (HEIF is not supported; convert it to JPEG)",
    b"hevc": "a HEIC image sequence (HEIF is not supported)",
    b"mif1": "a HEIF image (HEIF is not supported; convert it to JPEG)",
    b"msf1": "a HEIF image sequence (HEIF is not supported)",
    b"qt  ": "a QuickTime video",
    b"isom": "an MP4 video",
    b"mp41": "an MP4 video",
    b"mp42": "an MP4 video",
    b"M4V ": "an MP4 video",
}


# Formats Pillow reads, by their first bytes: when Pillow still cannot open one, the file is damaged.
_READABLE_FORMATS = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
)


class ImageError(ValueError):
    """The bytes are not an image hashtagger can tag; str(error) is the reason shown to people."""


# Formats whose decoder scales DCT blocks on load (draft mode). MPO is a phone's JPEG with extra frames.
DRAFT_FORMATS = {"JPEG", "MPO"}
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose does)
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}
FLAT_RANGE = 3  # a tile whose every channel spans at most this (of 255) is one flat colour: JPEG noise
# A tile of one flat colour gets no confident label from the tag stage and `hashtag` (an abstention, a
# result with a NULL label): blank scans, black video frames and pictures their format lost decode to
# it, and a classifier would still name a class for it with confidence. prepare does not apply it.
FLAT_REASON = "blank: the picture is a single flat colour, nothing to recognise"


def decode(data: bytes, notes: list[str] | None = None) -> np.ndarray:
    """Decode, apply EXIF orientation, convert to RGB and resize with antialiasing to 32x32 uint8.

    Broken metadata never costs an image: when the pixels decode only without their metadata (a text,
    ICC or XMP chunk over Pillow's limits, EXIF of the wrong types), the pixels are used and each
    problem is appended to `notes` as a sentence (a warning for the caller to log, not a failure).
    Raises ImageError with a reason people read when the pixels themselves cannot be had.
    """
    notes = notes if notes is not None else []
    try:
        return _decode(data, notes)
    except ImageError as first:
        stripped = _without_metadata(data)
        if stripped is None:
            raise
        try:
            tile = _decode(stripped, notes)
        except ImageError:
            raise first from None
        notes.append(f"metadata skipped: {first}")
        return tile


def _decode(data: bytes, notes: list[str]) -> np.ndarray:
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image)
            if image.format in DRAFT_FORMATS:
                # DCT scaling: decode at 1/2..1/8 of the size, 3-8x faster on camera photos
                image.draft("RGB", (TILE[0] * DRAFT_FACTOR, TILE[1] * DRAFT_FACTOR))
            image = _upright(image, notes)
            image = to_rgb(image, notes)
            image = image.resize(TILE, Image.Resampling.LANCZOS, reducing_gap=3.0)
            return np.asarray(image, dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"too large: {error}") from None
    except UnidentifiedImageError:
        raise ImageError(_not_an_image(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as error:
        # Pillow's plugins raise all of these on malformed files; none is worth crashing a run for.
        message = str(error) or type(error).__name__
        if "truncated" in message or "broken data stream" in message or isinstance(error, EOFError):
            raise ImageError(f"truncated or corrupt image data ({message})") from None
        raise ImageError(f"unreadable image ({message})") from None


def _upright(image: Image.Image, notes: list[str]) -> Image.Image:
    """The picture turned as its EXIF orientation says; EXIF Pillow cannot parse (a RATIONAL where a
    SHORT belongs, one BYTE for a resolution) costs only the tags it breaks."""
    image.load()  # the pixels first: their errors are the image's, not its metadata's
    try:
        return ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001  any EXIF parsing error: fall back to the raw tag
        orientation = _orientation(image)
        notes.append(f"EXIF metadata is malformed ({type(error).__name__}: {error}); "
                     f"{'orientation ' + str(orientation) + ' applied' if orientation else 'orientation unknown'}")
        return image.transpose(ORIENTATIONS[orientation]) if orientation in ORIENTATIONS else image


def _orientation(image: Image.Image) -> int | None:
    try:
        value = image.getexif().get(0x0112)
        return int(value[0] if isinstance(value, tuple) else value)
    except Exception:  # noqa: BLE001  an orientation tag that cannot be read is no orientation
        return None


def is_flat(tile: np.ndarray) -> bool:
    """Whether a decoded tile is one flat colour (blank, or a picture lost to its format): nothing a
    classifier can recognise, so the tag stage refuses it instead of tagging it with confidence."""
    return bool(flat_tiles(np.asarray(tile)[None])[0])


def flat_tiles(tiles: np.ndarray) -> np.ndarray:
    """(N,) bool: is_flat for each of N tiles (N, H, W, C), in one numpy call (a batch costs about what
    one tile did, and the decoding threads hold the GIL for none of it)."""
    tiles = np.asarray(tiles)
    # (N, C, H*W), contiguous: reductions along rows run several times faster than down strided columns
    channels = np.ascontiguousarray(tiles.reshape(len(tiles), -1, tiles.shape[-1]).transpose(0, 2, 1))
    return (channels.max(axis=2) - channels.min(axis=2) <= FLAT_RANGE).all(axis=1)


# PNG chunks the pixels need; every other chunk (text, ICC, XMP, EXIF, time, ...) is metadata.
_PNG_PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"sBIT", b"gAMA", b"acTL", b"fcTL", b"fdAT"}


def _without_metadata(data: bytes) -> bytes | None:
    """The same image without its metadata chunks (PNG) or application segments (JPEG, APP14 kept: it
    says how colours are stored); None when there is nothing to strip or the layout is not recognised."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _strip_png(data)
    if data.startswith(b"\xff\xd8"):
        return _strip_jpeg(data)
    return None


def _strip_png(data: bytes) -> bytes | None:
    kept, position = [data[:8]], 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        end = position + 12 + length
        if kind in _PNG_PIXEL_CHUNKS:
            kept.append(data[position:end])
        position = end
        if kind == b"IEND":
            break
    stripped = b"".join(kept)
    return stripped if len(stripped) < len(data) else None


def _strip_jpeg(data: bytes) -> bytes | None:
    kept, position = [data[:2]], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: the entropy-coded data follows, kept whole
            kept.append(data[position:])
            break
        end = position + 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if not (0xE1 <= marker <= 0xEF and marker != 0xEE) and marker != 0xFE:  # APP1-APP15 but APP14, COM
            kept.append(data[position:end])
        position = end
    stripped = b"".join(kept)
    return stripped if len(stripped) < len(data) else None


def _check_size(image: Image.Image) -> None:
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ImageError(f"too large: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
                         f"{limit / 1e6:.0f} megapixel limit against decompression bombs")


def _not_an_image(data: bytes) -> str:
    head = data[:64]
    for magic, name in _READABLE_FORMATS:
        if head.startswith(magic):
            return f"truncated or corrupt {name} file (its header cannot be read)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "truncated or corrupt WebP file (its header cannot be read)"
    for magic, what in _KNOWN_OTHER_FORMATS:
        if head.startswith(magic):
            return f"not an image: {what}"
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS:
        return f"not a supported image: {_ISO_BRANDS[head[8:12]]}"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:5].lower() == b"<?xml" or text[:4].lower() == b"<svg":
        return "not a supported image: SVG or other XML (vector images are not supported)"
    if text[:1] == b"<":
        return "not an image: HTML or other markup"
    try:  # incremental: the 1,024th byte may cut a character in two
        start = codecs.getincrementaldecoder("utf-8")().decode(data[:1024], final=False)
    except UnicodeDecodeError:
        start = ""
    if start and all(char.isprintable() or char in "\t\r\n" for char in start):
        return "not an image: a text file"
    return "not an image: unknown or unsupported format"


def to_rgb(image: Image.Image, notes: list[str] | None = None) -> Image.Image:
    """Any mode -> RGB; transparent pixels are composed on white, as a viewer would show them.

    Unless that leaves nothing: an alpha layout that, taken literally, hides a picture the colour
    channels hold (alpha all zero, or transparency everywhere the picture is) gives the colour channels
    themselves, with a note.
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        # 16-bit grey: scale the full 0..65535 range, as viewers do
        array = np.asarray(image, dtype=np.uint16)
        image = Image.fromarray((array >> 8).astype(np.uint8), "L")
    elif image.mode in ("I", "F"):
        # 32-bit integer or float grey has no standard range: stretch what is there
        array = np.asarray(image, dtype=np.float64)
        low, span = float(array.min()), float(array.max() - array.min()) or 1.0
        image = Image.fromarray(((array - low) / span * 255).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composed = Image.alpha_composite(background, rgba).convert("RGB")
        colours = rgba.convert("RGB")
        if _flat_image(composed) and not _flat_image(colours):
            if notes is not None:
                notes.append("the transparency hides the whole picture; its colours were used without it")
            return colours
        return composed
    return image.convert("RGB")


def _flat_image(image: Image.Image) -> bool:
    extrema = image.getextrema()
    return all(high - low <= FLAT_RANGE for low, high in extrema)
