"""Cleaning reference images (pure): orientation, metadata, size, ratio, bombs."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from bot import refimages
from bot.refimages import UnusableImage, clean

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def photo(width: int, height: int, *, orientation: int | None = None, gps: bool = False,
          icc: bool = False, comment: bytes | None = None, fmt: str = "JPEG",
          mode: str = "RGB") -> bytes:  # fmt: skip
    """A test image: left half red, right half blue (to see which way it was turned)."""
    img = Image.new(mode, (width, height), "red")
    img.paste("blue", (width // 2, 0, width, height))
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps:
        exif[0x010F] = "PhoneMaker"  # Make
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 1.0)})
    kwargs: dict[str, object] = {}
    if orientation is not None or gps:
        kwargs["exif"] = exif.tobytes()
    if icc:
        from PIL import ImageCms

        kwargs["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if comment is not None:
        kwargs["comment"] = comment
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_exif_orientation_is_applied() -> None:
    # Orientation 6: the camera was turned; the viewer rotates 90° clockwise to show it upright.
    out = clean(photo(400, 200, orientation=6))
    assert (out.width, out.height) == (200, 400)
    img = opened(out.data)
    assert img.size == (200, 400)
    # Red (the stored left half) is now on top.
    r, _g, b = img.convert("RGB").getpixel((100, 50))  # type: ignore[misc]
    assert r > 200 and b < 60
    r, _g, b = img.convert("RGB").getpixel((100, 350))  # type: ignore[misc]
    assert b > 200 and r < 60


def test_gps_exif_icc_and_comments_are_gone() -> None:
    source = photo(640, 480, orientation=1, gps=True, icc=True, comment=b"shot at home")
    before = opened(source)
    assert before.getexif().get_ifd(GPS_IFD) and "icc_profile" in before.info
    assert b"shot at home" in source and b"PhoneMaker" in source

    out = clean(source)

    img = opened(out.data)
    assert img.format == "JPEG"
    assert len(img.getexif()) == 0
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(img.info)
    assert b"Exif" not in out.data and b"PhoneMaker" not in out.data
    assert b"shot at home" not in out.data and b"ICC_PROFILE" not in out.data


def test_a_large_image_is_downscaled_to_the_long_side_limit() -> None:
    out = clean(photo(6000, 3000))
    assert (out.width, out.height) == (refimages.MAX_SIDE, refimages.MAX_SIDE // 2)
    assert opened(out.data).size == (out.width, out.height)
    assert len(out.data) <= refimages.MAX_BYTES


def test_a_telegram_sized_photo_keeps_its_size() -> None:
    out = clean(photo(1280, 960))
    assert (out.width, out.height) == (1280, 960)


@pytest.mark.parametrize(("width", "height"), [(1700, 100), (100, 1700)])
def test_sides_further_apart_than_1_to_16_are_refused(width: int, height: int) -> None:
    with pytest.raises(UnusableImage) as caught:
        clean(photo(width, height))
    assert caught.value.reason == "ratio"


def test_exactly_1_to_16_is_taken() -> None:
    out = clean(photo(1600, 100))
    assert (out.width, out.height) == (1600, 100)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.parametrize("side", [8000, 30000, 100_000])
def test_a_bomb_is_refused_before_decoding(side: int) -> None:
    with pytest.raises(UnusableImage) as caught:
        clean(_png_header(side, side))
    assert caught.value.reason == "too_many_pixels"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_image"),
        (b"%PDF-1.7 not an image at all", "not_image"),
        (b"GIF89a" + b"\0" * 40, "not_image"),
        (photo(300, 200)[:400], "damaged"),
    ],
)
def test_what_is_not_a_usable_image(data: bytes, reason: str) -> None:
    with pytest.raises(UnusableImage) as caught:
        clean(data)
    assert caught.value.reason == reason


def test_a_tiny_image_is_refused() -> None:
    with pytest.raises(UnusableImage) as caught:
        clean(photo(10, 10))
    assert caught.value.reason == "too_small"


def test_png_with_transparency_and_webp_become_jpeg() -> None:
    out = clean(photo(300, 200, fmt="PNG", mode="RGBA"))
    assert opened(out.data).format == "JPEG" and (out.width, out.height) == (300, 200)
    out = clean(photo(300, 200, fmt="WEBP"))
    assert opened(out.data).format == "JPEG"
