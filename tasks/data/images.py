"""Image bytes -> 32x32 RGB tile, fast (JPEG draft mode) and safe (every failure has a reason a person reads).

Pillow's decompression-bomb limit stays on, and is enforced as an error here at its warning threshold
(`Image.MAX_IMAGE_PIXELS`, about 89 megapixels), not only at Pillow's own error threshold (twice that).

Memory follows the pixel count, not the file size: a 50 KB one-bit scan of 9400x9400 is 88 MB once
decoded. So the decoding threads share a budget of decoded bytes (`BUDGET`), reserved from the header
before the pixels are decoded, and a large picture is reduced in its own mode, before any conversion
to RGB (four bytes a pixel) or turn, so only one full-size copy of it exists at a time.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import threading
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


class MemoryBudget:
    """Bytes of decoded pixels the decoding threads may hold at once; a thread waits for its share.

    A picture needing more than the whole budget is decoded alone, so nothing is refused for its size
    here (the bomb limit does that); small pictures, the common case, do not take part (no lock).
    """

    def __init__(self, capacity: int, smallest: int = 16 * 2**20):
        self.capacity = capacity  # bytes
        self.smallest = smallest  # bytes; pictures needing less decode without waiting
        self.used = 0  # bytes reserved now
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, amount: int):
        """Hold `amount` bytes (at most the capacity) while the block runs."""
        if amount < self.smallest:
            yield
            return
        amount = min(amount, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self.used + amount <= self.capacity)
            self.used += amount
        try:
            yield
        finally:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()


# 256 MiB of decoded pixels across all decoding threads: one 88-megapixel one-bit scan at a time (it
# needs 2 bytes a pixel: its pixels and their 8-bit copy), or a dozen 12-megapixel PNG photos; JPEG
# photos decode in draft mode at a fraction of their size and never wait. With the interpreter, the
# model and four batches in flight, a run over such scans stays under 1 GB (reports/decode_memory.md).
BUDGET = MemoryBudget(256 * 2**20)
# A picture this large (pixels) is reduced before it is turned and converted to RGB; a smaller one is
# small enough to convert first (and keeps the notes about malformed EXIF that the turn gives).
EARLY_REDUCE_PIXELS = 4_000_000
REDUCING_GAP = 3  # as Image.resize(reducing_gap=3.0): reduce by whole factors to >= 3x the tile, then LANCZOS
# Bytes a pixel of each mode takes in memory (Pillow keeps 1-bit and palette pixels in a byte, and any
# mode of two to four bands in four), and what reducing it costs on top: a copy in a mode Image.reduce
# takes (1-bit -> L, palette -> RGBA), or the premultiplied copy reduce makes of an alpha mode.
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_REDUCE_EXTRA_BYTES = {"1": 1, "L": 0, "RGB": 0, "CMYK": 0, "YCbCr": 0, "I": 0, "F": 0, "LAB": 0, "HSV": 0,
                       "LA": 4, "La": 4, "RGBA": 4, "RGBa": 4, "P": 8, "PA": 8}


def _return_large_blocks_to_the_system(threshold: int = 4 * 2**20) -> None:
    """Have glibc's malloc serve blocks of `threshold` bytes and more by mmap, unmapped once freed.

    Pillow holds pixels in 16 MiB blocks; glibc raises its mmap threshold to the size of the last such
    block freed (up to 32 MiB), after which they come from the thread's own arena and stay there when
    freed: 8 decoding threads kept 1.4 GB of freed scans for 200 MB in use. A fixed threshold stops
    that. Elsewhere (musl, macOS) there is nothing to do.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, threshold)  # -3: M_MMAP_THRESHOLD (malloc.h)


_return_large_blocks_to_the_system()


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """The most memory one picture of this mode and size holds while decode() turns it into a tile."""
    pixels = size[0] * size[1]
    return pixels * (_STORED_BYTES.get(mode, 4) + _REDUCE_EXTRA_BYTES.get(mode, 8))


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
            # the header said the size (after draft scaling): wait for the memory before the pixels
            with BUDGET.reserve(decoded_bytes(image.mode, image.size)):
                if image.width * image.height >= EARLY_REDUCE_PIXELS:
                    image = _reduced_upright(image)
                else:
                    image = _upright(image, notes)
                image = to_rgb(image, notes)
                image = image.resize(TILE, Image.Resampling.LANCZOS, reducing_gap=float(REDUCING_GAP))
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


def _reduced_upright(image: Image.Image) -> Image.Image:
    """A large picture reduced by whole factors in its own mode (as resize's reducing_gap would, but
    before the RGB conversion and the turn, each a full-size copy), then turned as its EXIF says."""
    image.load()
    orientation = _orientation(image)  # from the original: a reduced copy of a TIFF has no EXIF left
    factors = (max(1, image.width // (TILE[0] * REDUCING_GAP)), max(1, image.height // (TILE[1] * REDUCING_GAP)))
    if image.mode == "1":
        image = image.convert("L")  # Image.reduce takes no 1-bit pixels; averaging them gives greys
    elif image.mode in ("P", "PA"):  # averaging palette indices would mix unrelated colours
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    if factors != (1, 1) and image.mode in _REDUCE_EXTRA_BYTES:
        image = image.reduce(factors)
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
