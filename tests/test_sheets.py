"""The contact sheet and the ZIP parts (bot.sheets), on their own."""

from __future__ import annotations

import io
import itertools
import zipfile

import pytest
from PIL import Image

from bot import schema, sheets
from bot.images import PHOTO_MAX_BYTES, PHOTO_MAX_RATIO, PHOTO_MAX_SIDES


def image(colour: tuple[int, int, int], size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def fits_telegram_photo(width: int, height: int) -> bool:
    return width + height <= PHOTO_MAX_SIDES and max(width, height) <= PHOTO_MAX_RATIO * min(
        width, height
    )


@pytest.mark.parametrize("ratio", schema.RATIOS)
@pytest.mark.parametrize("count", range(1, 16))
def test_every_grid_fits_a_telegram_photo(count: int, ratio: str) -> None:
    value = sheets.panel_ratio(schema.SIZE_ALIASES[ratio])
    layout = sheets.grid(count, value)
    assert layout.columns * layout.rows >= count > (layout.rows - 1) * layout.columns
    assert fits_telegram_photo(*layout.size)
    assert max(layout.size) <= sheets.SHEET_LONG_SIDE
    # The cells keep the panels' shape (to a pixel) and never overlap.
    w, h = layout.cell
    assert abs(w / h - value) / value < 0.01
    boxes = [layout.box(n) for n in range(count)]
    assert all(b[0] >= a[2] or b[1] >= a[3] for a, b in itertools.pairwise(boxes))


def test_wide_panels_take_fewer_columns_than_tall_ones() -> None:
    for count in (4, 6, 8, 10, 12, 15):
        wide = sheets.columns_for(count, 16 / 9)
        square = sheets.columns_for(count, 1.0)
        tall = sheets.columns_for(count, 9 / 16)
        assert wide <= square <= tall and wide < tall, count
    assert sheets.columns_for(1, 16 / 9) == 1
    assert sheets.columns_for(2, 16 / 9) == 1  # two wide panels, one above the other
    assert sheets.columns_for(15, 16 / 9) == 3
    assert sheets.columns_for(15, 9 / 16) == 5


def test_panels_are_never_scaled_up() -> None:
    layout = sheets.grid(2, 16 / 9, max_cell=(64, 36))
    assert layout.cell == (64, 36)


def test_the_sheet_places_each_panel_in_its_cell_in_order() -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 30), (30, 220, 220)]
    panels = [image(c, (320, 180)) for c in colours]
    data = sheets.contact_sheet(panels, 16 / 9, numbers=[1, 2, 4, 5, 7])
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        sheet = img.convert("RGB")
    layout = sheets.grid(5, 16 / 9, max_cell=(320, 180))
    assert sheet.size == layout.size
    for n, colour in enumerate(colours):
        left, top, right, bottom = layout.box(n)
        centre = sheet.getpixel(((left + right) // 2, (top + bottom) // 2))
        assert isinstance(centre, tuple)
        assert all(abs(a - b) < 12 for a, b in zip(centre, colour, strict=True)), (n, centre)
        # The number's label (white on black) sits in the panel's top-left corner.
        corner = sheet.crop((left, top, left + 24, top + 20)).convert("L")
        assert corner.getextrema()[0] < 40 and corner.getextrema()[1] > 200


def test_panels_of_other_sizes_and_formats_fit_their_cells() -> None:
    panels = [
        image((250, 0, 0), (1024, 576)),
        image((0, 250, 0), (10200, 100)),  # a strip, as RunComfy once sent
        image((0, 0, 250), (300, 300), "PNG"),
        image((250, 250, 0), (576, 1024), "WEBP"),
    ]
    data = sheets.contact_sheet(panels, 16 / 9)
    with Image.open(io.BytesIO(data)) as img:
        assert fits_telegram_photo(*img.size)
    assert len(data) <= PHOTO_MAX_BYTES


def test_a_sheet_too_heavy_for_the_limit_is_refused() -> None:
    panels = [image((n * 15, 90, 200), (400, 400)) for n in range(4)]
    small = sheets.contact_sheet(panels, 1.0)
    assert len(sheets.contact_sheet(panels, 1.0, max_bytes=len(small))) <= len(small)
    with pytest.raises(ValueError, match="over 100"):
        sheets.contact_sheet(panels, 1.0, max_bytes=100)
    with pytest.raises(ValueError):
        sheets.contact_sheet(panels, 1.0, numbers=[1, 2])
    with pytest.raises(ValueError):
        sheets.contact_sheet([], 1.0)


def test_panel_names_and_ratio() -> None:
    jpeg, png = image((1, 2, 3), (8, 8)), image((1, 2, 3), (8, 8), "PNG")
    webp = image((1, 2, 3), (8, 8), "WEBP")
    assert [n for n, _ in sheets.panel_names([(1, jpeg), (2, png), (10, webp)])] == [
        "01.jpg",
        "02.png",
        "10.webp",
    ]
    assert sheets.panel_ratio("2560:1440 (16:9)") == 2560 / 1440
    assert sheets.panel_ratio("1440:2560") == 1440 / 2560
    assert sheets.panel_ratio("0:5") == sheets.panel_ratio("²:1") == sheets.panel_ratio("") == 1.0


def zip_parts(files: list[tuple[str, bytes]], prompt_txt: str, max_bytes: int) -> list[bytes]:
    """Every part, as the ZIP button builds them one at a time from disk."""
    groups = sheets.zip_groups([(name, len(data)) for name, data in files], prompt_txt, max_bytes)
    return [sheets.zip_part([files[n] for n in group], prompt_txt) for group in groups]


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_zip_that_fits_is_one_part() -> None:
    files = [(f"{n:02d}.jpg", bytes([n]) * 1000) for n in range(1, 13)]
    (part,) = zip_parts(files, "Prompt: a fox\nRequest: abc\n", 50 * 1024 * 1024)
    contents = read_zip(part)
    assert list(contents) == [name for name, _ in files] + ["prompt.txt"]
    assert contents["prompt.txt"] == b"Prompt: a fox\nRequest: abc\n"
    assert [contents[name] for name, _ in files] == [data for _, data in files]


@pytest.mark.parametrize("limit", [4000, 7000, 40_000])
def test_zip_parts_stay_under_the_limit_and_keep_the_order(limit: int) -> None:
    files = [(f"{n:02d}.jpg", bytes([n]) * (900 + 97 * n)) for n in range(1, 16)]
    parts = zip_parts(files, "Prompt: a fox — лиса\n", limit)
    assert all(len(p) <= limit for p in parts)
    names: list[str] = []
    for part in parts:
        contents = read_zip(part)
        assert list(contents)[-1] == "prompt.txt"
        assert contents["prompt.txt"].decode() == "Prompt: a fox — лиса\n"
        names += list(contents)[:-1]
    assert names == [name for name, _ in files]
    assert (len(parts) == 1) == (limit == 40_000)


def test_a_file_larger_than_a_part_goes_alone() -> None:
    files = [("01.jpg", b"a" * 100), ("02.jpg", b"b" * 5000), ("03.jpg", b"c" * 100)]
    parts = zip_parts(files, "p", 1000)
    assert [list(read_zip(p))[:-1] for p in parts] == [["01.jpg"], ["02.jpg"], ["03.jpg"]]
