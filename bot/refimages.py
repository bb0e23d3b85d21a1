"""Cleaning a reference image before it is kept and published (pure; run it off the event loop).

What a user sends is decoded safely (JPEG, PNG or WebP only; the pixel count checked before any
pixel is decoded), turned upright by its EXIF orientation, stripped of every piece of metadata
(EXIF with GPS, ICC profile, comments, XMP: a fresh image is encoded, nothing is copied over),
downscaled to what the model accepts and re-encoded as a baseline JPEG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.images import FORMATS

# What the model takes (RunComfy's edit-sequential: each side > 14 px and at most 6000, sides
# ratio within 1:16, at most 10 MB). Kept smaller on the long side: detail beyond 4096 px is
# not worth the upload, and the files stay small for RunComfy's fetch.
MAX_SIDE = 4096
MIN_SIDE = 15
MAX_RATIO = 16
MAX_BYTES = 10 * 1024 * 1024
# Pixels an image may claim before any is decoded. A JPEG is decoded already reduced (by up to 8
# per side, Pillow's "draft"), so a 100-megapixel camera file costs no more than 25 megapixels;
# a PNG or WebP is decoded whole.
MAX_PIXELS_JPEG = 200_000_000
MAX_PIXELS_OTHER = 50_000_000
QUALITY = 90
_ORIENTATION = 0x0112


class UnusableImage(Exception):
    """Why an image cannot be a reference: ``reason`` is one of the keys of ``REASONS``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CleanImage:
    """A cleaned reference: baseline JPEG bytes without metadata, and its size in pixels."""

    data: bytes
    width: int
    height: int


def clean(data: bytes, max_side: int = MAX_SIDE) -> CleanImage:
    """Decode, orient, strip, downscale (to ``max_side`` on the long side) and re-encode
    ``data``. Raises UnusableImage."""
    if not data:
        raise UnusableImage("not_image")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            return _clean_opened(img, max_side)
    except UnusableImage:
        raise
    except UnidentifiedImageError:
        raise UnusableImage("not_image") from None
    except Image.DecompressionBombError:
        raise UnusableImage("too_many_pixels") from None
    except Exception:  # a hostile or broken file may make Pillow raise anything
        raise UnusableImage("damaged") from None


def _clean_opened(img: Image.Image, max_side: int) -> CleanImage:
    width, height = img.size
    limit = MAX_PIXELS_JPEG if img.format == "JPEG" else MAX_PIXELS_OTHER
    if width * height > limit:
        raise UnusableImage("too_many_pixels")
    if min(width, height) < MIN_SIDE:
        raise UnusableImage("too_small")
    if max(width, height) > MAX_RATIO * min(width, height):
        raise UnusableImage("ratio")
    orientation = img.getexif().get(_ORIENTATION, 1)
    if img.format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale when that still leaves at least max_side: far less
        # memory and CPU for a camera's full-size file.
        img.draft("RGB", (max_side, max_side))
    img.load()
    if orientation in range(2, 9):
        # Only the orientation tag is needed; exif_transpose reads it again from the image.
        img = ImageOps.exif_transpose(img)
    img = _rgb(img)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = _encode(img)
    while len(out) > MAX_BYTES:  # a noisy 4096-px image at quality 90 may still be too big
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)
        out = _encode(img)
    return CleanImage(out, img.width, img.height)


def _rgb(img: Image.Image) -> Image.Image:
    """Plain RGB pixels: transparency laid over white (JPEG has none), palettes expanded."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB")


def _encode(img: Image.Image) -> bytes:
    """A fresh JPEG: no exif, icc_profile, comment or xmp is passed, so none is written."""
    buf = io.BytesIO()
    # Pillow carries a source's JPEG comment over from ``info``: emptied, nothing rides along.
    img.info = {}
    img.save(buf, "JPEG", quality=QUALITY, optimize=False, progressive=False)
    return buf.getvalue()
