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


def decode(data: bytes) -> np.ndarray:
    """Decode, apply EXIF orientation, convert to RGB and resize with antialiasing to 32x32 uint8."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image)
            if image.format == "JPEG":
                # DCT scaling: decode at 1/2..1/8 of the size, 3-8x faster on camera photos
                image.draft("RGB", (TILE[0] * DRAFT_FACTOR, TILE[1] * DRAFT_FACTOR))
            image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
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


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparent pixels are composed on white, as a viewer would show them."""
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
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
