"""A job's panels as one contact sheet, and its originals as ZIP files (pure; Pillow, zipfile).

Both are built from the files kept on disk (or bytes at hand), read as they are needed, and are
CPU work: callers run them with ``asyncio.to_thread``. A panel is decoded only after its header
showed a JPEG, PNG or WebP of no more pixels than the job asked for (times four), and at a reduced
size where the format allows it, so one sheet costs tens of megabytes at most.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from bot import schema
from bot.images import (
    FORMATS,
    PHOTO_MAX_BYTES,
    PHOTO_MAX_RATIO,
    PHOTO_MAX_SIDES,
    BadImage,
    check_header,
)

Source = bytes | Path  # an image's bytes, or the file that holds them

# The sheet's longer side. Telegram shows photos at most 2560 px on a side; more is wasted.
SHEET_LONG_SIDE = 2560
_GAP = 8
_BACKGROUND = (24, 24, 24)
# The shape a sheet aims for (width / height): about square reads best on a phone.
_TARGET_ASPECT = 1.0
# How much an empty cell weighs against a sheet off that shape (in log of the aspect).
_EMPTY_CELL_COST = 0.15


@dataclass(frozen=True)
class Grid:
    """Where each panel goes: ``columns`` x ``rows`` cells of ``cell`` pixels, ``gap`` apart."""

    count: int
    columns: int
    rows: int
    cell: tuple[int, int]
    gap: int = _GAP

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.cell
        return (
            self.columns * w + (self.columns + 1) * self.gap,
            self.rows * h + (self.rows + 1) * self.gap,
        )

    def box(self, n: int) -> tuple[int, int, int, int]:
        """The cell of the ``n``-th panel (from 0), left to right, top to bottom."""
        w, h = self.cell
        row, col = divmod(n, self.columns)
        left, top = self.gap + col * (w + self.gap), self.gap + row * (h + self.gap)
        return left, top, left + w, top + h


def columns_for(count: int, ratio: float) -> int:
    """How many columns ``count`` panels of ``ratio`` (width / height) take: the grid whose
    whole is closest to square, so wide panels go in fewer columns, tall ones in more."""
    if count <= 1:
        return 1

    def score(columns: int) -> tuple[float, int]:
        rows = math.ceil(count / columns)
        aspect = columns * ratio / rows
        empty = columns * rows - count
        return abs(math.log(aspect / _TARGET_ASPECT)) + _EMPTY_CELL_COST * empty, empty

    return min(range(1, count + 1), key=score)


def grid(
    count: int,
    ratio: float,
    long_side: int = SHEET_LONG_SIDE,
    gap: int = _GAP,
    *,
    max_cell: tuple[int, int] | None = None,
) -> Grid:
    """The grid for ``count`` panels of ``ratio``, within ``long_side`` and Telegram's photo
    rules; cells no larger than ``max_cell`` (the panels' own size: never scaled up)."""
    if count < 1 or ratio <= 0:
        raise ValueError(f"a sheet needs panels and a ratio, not {count} and {ratio}")
    columns = columns_for(count, ratio)
    rows = math.ceil(count / columns)
    long_side = min(long_side, PHOTO_MAX_SIDES // 2)  # width + height ≤ 10,000
    # The largest cell whose sheet fits long_side both ways.
    width = (long_side - (columns + 1) * gap) / columns
    height = (long_side - (rows + 1) * gap) / rows
    width = min(width, height * ratio)
    if max_cell is not None:
        width = min(width, max(max_cell[0], 1), max(max_cell[1], 1) * ratio)
    cell = (max(1, int(width)), max(1, int(width / ratio)))
    result = Grid(count, columns, rows, cell, gap)
    w, h = result.size
    if max(w, h) > PHOTO_MAX_RATIO * min(w, h):  # only for extreme ratios: pad the short side
        raise ValueError(f"a {w}x{h} sheet is no photo for Telegram")
    return result


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (AttributeError, OSError, TypeError):  # Pillow without FreeType
        return ImageFont.load_default()


def _label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """For names (any alphabet): DejaVu Sans where the system has it (Pillow's own font has
    Latin letters only), else Pillow's."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return _font(size)


class BadPanel(ValueError):
    """Panel ``number`` cannot go on a sheet; ``problem`` says why in plain words."""

    def __init__(self, number: int, problem: BadImage) -> None:
        super().__init__(f"panel {number}: {problem}")
        self.number = number
        self.problem = problem


def _open(source: Source) -> Image.Image:
    """The image, its header read and nothing decoded; only the formats RunComfy delivers."""
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=FORMATS)


# Modes a thumbnail can be made of directly; others (palette, 16-bit…) are converted first.
_SCALABLE = frozenset({"RGB", "RGBA", "L", "LA", "RGBX"})


def _panel(source: Source, cell: tuple[int, int]) -> Image.Image:
    """One image scaled to fit its cell: JPEG decoded at 1/2, 1/4 or 1/8 size where that still
    covers the cell (``draft``), the rest reduced by whole factors before the fine resampling
    (``reducing_gap``), so no full-size copy is made beside the decoded image."""
    with _open(source) as img:
        img.draft("RGB", cell)
        if img.mode not in _SCALABLE:
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        img.thumbnail(cell, Image.Resampling.LANCZOS, reducing_gap=2.0)
        return img.convert("RGB")


def contact_sheet(
    images: Sequence[Source],
    ratio: float,
    *,
    numbers: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    long_side: int = SHEET_LONG_SIDE,
    max_bytes: int = PHOTO_MAX_BYTES,
    max_pixels: int | None = None,
) -> bytes:
    """One JPEG of every image in order, each in its cell, labelled with its number
    (``numbers``, 1, 2, 3… by default) or its ``labels`` (names); within Telegram's photo rules. Raises BadPanel for an
    image that is no JPEG, PNG or WebP or has more than ``max_pixels`` pixels (before any is
    decoded), ValueError for no images, and Pillow's errors for an image damaged further in."""
    if numbers is None:
        numbers = range(1, len(images) + 1)
    if len(numbers) != len(images):
        raise ValueError(f"{len(numbers)} numbers for {len(images)} images")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    largest = (0, 0)
    for source, number in zip(images, numbers, strict=True):
        try:
            with _open(source) as img:  # the header only
                check_header(img, max_pixels)
                largest = (max(largest[0], img.width), max(largest[1], img.height))
        except BadImage as exc:
            raise BadPanel(number, exc) from None
        except (UnidentifiedImageError, Image.DecompressionBombError):
            raise BadPanel(number, BadImage("the image was not a JPEG, PNG or WebP")) from None
    layout = grid(len(images), ratio, long_side, max_cell=largest)
    sheet = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = (
        _label_font(max(12, min(layout.cell) // 12))
        if labels is not None
        else _font(max(12, min(layout.cell) // 8))
    )
    for n, (source, number) in enumerate(zip(images, numbers, strict=True)):
        left, top, right, bottom = layout.box(n)
        panel = _panel(source, layout.cell)
        x = left + (right - left - panel.width) // 2
        y = top + (bottom - top - panel.height) // 2
        sheet.paste(panel, (x, y))
        label = labels[n] if labels is not None else str(number)
        tl, tt, tr_, tb = draw.textbbox((0, 0), label, font=font)
        pad = max(2, (tb - tt) // 4)
        box = (x, y, x + (tr_ - tl) + 2 * pad, y + (tb - tt) + 2 * pad)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((x + pad - tl, y + pad - tt), label, fill=(255, 255, 255), font=font)
    buf = io.BytesIO()
    for quality in (88, 80, 70, 60, 50):
        buf = io.BytesIO()
        sheet.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
    raise ValueError(f"the sheet is {buf.tell()} bytes, over {max_bytes}")


def extension(data: bytes) -> str:
    """The file extension for an image's bytes: ``png``, ``webp`` or ``jpg``."""
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[8:12] == b"WEBP":
        return "webp"
    return "jpg"


def panel_names(files: Sequence[tuple[int, bytes]]) -> list[tuple[str, bytes]]:
    """``01.jpg``, ``02.png``…: each image named by its panel number (``files`` are
    (number, bytes) pairs)."""
    width = max(2, len(str(max((n for n, _ in files), default=1))))
    return [(f"{n:0{width}d}.{extension(data)}", data) for n, data in files]


# A stored member costs its local header and its central directory entry (name twice), plus one
# end record per archive; a bound, so a part never comes out larger than estimated.
_ENTRY_OVERHEAD = 30 + 46 + 64
_ARCHIVE_OVERHEAD = 22 + 64


def _entry_bytes(name: str, size: int) -> int:
    return _ENTRY_OVERHEAD + 2 * len(name.encode()) + size


def zip_groups(
    files: Sequence[tuple[str, int]], prompt_txt: str, max_bytes: int
) -> list[list[int]]:
    """Which of the files (name, size in bytes) go in which ZIP part, in order: parts of at most
    ``max_bytes`` each with ``prompt.txt`` (one when they fit), as lists of indexes into ``files``.

    A single file too large for any part gets a part of its own (the caller's limit is then
    exceeded: the images were checked against it at delivery, so this does not happen).
    """
    base = _ARCHIVE_OVERHEAD + _entry_bytes("prompt.txt", len(prompt_txt.encode()))
    groups: list[list[int]] = [[]]
    size = base
    for n, (name, length) in enumerate(files):
        cost = _entry_bytes(name, length)
        if groups[-1] and size + cost > max_bytes:
            groups.append([])
            size = base
        groups[-1].append(n)
        size += cost
    return groups


def zip_part(files: Sequence[tuple[str, Source]], prompt_txt: str) -> bytes:
    """One ZIP archive of the files (name, bytes or a file read as it is stored) and
    ``prompt.txt``. Images are stored as they are (already compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, source in files:
            if isinstance(source, bytes):
                archive.writestr(name, source)
            else:
                archive.write(source, arcname=name)
        archive.writestr("prompt.txt", prompt_txt.encode(), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def panel_ratio(size: str) -> float:
    """Width / height of a job's ``size`` (``"2560:1440 (16:9)"`` -> 1.78); 1.0 if unreadable."""
    sides = schema.dimensions(size)
    return sides[0] / sides[1] if sides else 1.0
