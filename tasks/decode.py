"""Image bytes -> 32x32 RGB tile, fast (JPEG draft mode) and safe (every failure has a reason)."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

TILE = (32, 32)


class ImageError(ValueError):
    """The bytes are not an image hashtagger can tag; str(error) is the reason shown to people."""


def decode(data: bytes) -> np.ndarray:
    """Decode, apply EXIF orientation, convert to RGB and resize with antialiasing to 32x32 uint8."""
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 89 and 179 megapixels; we refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format == "JPEG":
                    # DCT scaling: decode at 1/2..1/8 size when that is still at least 2x the tile
                    image.draft("RGB", (TILE[0] * 2, TILE[1] * 2))
                image = ImageOps.exif_transpose(image)
                image = _to_rgb(image)
                image = image.resize(TILE, Image.Resampling.LANCZOS, reducing_gap=3.0)
                return np.asarray(image, dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"too large: {error}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error) or type(error).__name__
        if "truncated" in message or "broken data stream" in message or isinstance(error, EOFError):
            raise ImageError(f"truncated or corrupt image data: {message}") from None
        raise ImageError(f"unreadable image: {message}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparent pixels are composed on white, as a viewer would show them."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        span = float(array.max() - array.min()) or 1.0
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
