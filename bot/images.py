"""Checking downloaded images and deciding how Telegram can take them (pure)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from bot import schema

# Telegram's limits for an uploaded photo; anything beyond goes as a document.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES = 10_000  # width + height
PHOTO_MAX_RATIO = 20
DOCUMENT_MAX_BYTES = 50 * 1024 * 1024

# The formats RunComfy delivers; no other decoder of Pillow's ever sees a result's bytes.
FORMATS = ("JPEG", "PNG", "WEBP")
# A result may have up to this many times the pixels asked for (twice the width and height);
# beyond that it is refused: a few hundred kilobytes of PNG can claim a gigabyte of pixels.
PIXELS_OVER_REQUESTED = 4
# The cap when the requested size cannot be read: 4096 x 4096, beyond every size offered.
FALLBACK_MAX_PIXELS = 4096 * 4096
# Other image formats, told apart by their first bytes (a clearer note than "not an image").
_OTHER_IMAGES = (b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*", b"\0\0\1\0")


class BadImage(Exception):
    """The bytes are not an image we can send; the message says why in plain words."""


@dataclass(frozen=True)
class ImageInfo:
    """What we know of one downloaded image."""

    width: int
    height: int
    format: str
    size: int

    @property
    def as_photo(self) -> bool:
        """Whether Telegram accepts it as a photo (otherwise it goes as a document)."""
        w, h = self.width, self.height
        return (
            self.size <= PHOTO_MAX_BYTES
            and w + h <= PHOTO_MAX_SIDES
            and max(w, h) <= PHOTO_MAX_RATIO * min(w, h)
        )


def max_pixels(size: str) -> int:
    """The most pixels a result of the requested ``size`` (``"2560:1440 (16:9)"``) may have."""
    sides = schema.dimensions(size)
    return sides[0] * sides[1] * PIXELS_OVER_REQUESTED if sides else FALLBACK_MAX_PIXELS


def check_header(img: Image.Image, limit: int | None) -> None:
    """Refuse an opened (not yet decoded) image of more than ``limit`` pixels. Raises BadImage."""
    if limit is not None and img.width * img.height > limit:
        raise BadImage("the image was far larger than asked for")


def inspect(data: bytes, limit: int | None = None) -> ImageInfo:
    """Check that ``data`` is a whole JPEG, PNG or WebP image of at most ``limit`` pixels (see
    :func:`max_pixels`), and read its size. Raises BadImage."""
    if not data:
        raise BadImage("the image was empty")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height, fmt = img.width, img.height, img.format or "?"
            check_header(img, limit)
            # verify() walks the whole file without decoding pixels, catching truncated downloads.
            img.verify()
    except BadImage:
        raise
    except UnidentifiedImageError:
        if data.startswith(_OTHER_IMAGES) or data[4:8] == b"ftyp":  # GIF, BMP, TIFF, ICO, HEIC
            raise BadImage("the image was not a JPEG, PNG or WebP") from None
        raise BadImage("the file was not an image") from None
    except Image.DecompressionBombError:
        # A few bytes can claim billions of pixels; Pillow refuses before decoding any.
        raise BadImage("the image claims too many pixels") from None
    except Exception:  # a hostile file may make Pillow raise anything; it spoils only itself
        raise BadImage("the image was damaged") from None
    if fmt == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise BadImage("the image was cut short")
    if width < 1 or height < 1:
        raise BadImage("the image had no pixels")
    return ImageInfo(width=width, height=height, format=fmt, size=len(data))
