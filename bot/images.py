"""Checking downloaded images and deciding how Telegram can take them (pure)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Telegram's limits for an uploaded photo; anything beyond goes as a document.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES = 10_000  # width + height
PHOTO_MAX_RATIO = 20
DOCUMENT_MAX_BYTES = 50 * 1024 * 1024


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


def inspect(data: bytes) -> ImageInfo:
    """Check that ``data`` is a whole image and read its size. Raises BadImage."""
    if not data:
        raise BadImage("the image was empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height, fmt = img.width, img.height, img.format or "?"
            # verify() walks the whole file without decoding pixels, catching truncated downloads.
            img.verify()
    except UnidentifiedImageError:
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
