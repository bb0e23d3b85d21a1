"""A job's panels as one contact sheet, and its originals as ZIP files (pure; Pillow, zipfile).

Both are built from bytes already at hand (the files kept on disk) and are CPU work: callers run
them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from bot.images import PHOTO_MAX_BYTES, PHOTO_MAX_RATIO, PHOTO_MAX_SIDES

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


def _panel(data: bytes, cell: tuple[int, int]) -> Image.Image:
    """One image scaled to fit its cell (JPEG decoded at a reduced size where it can be)."""
    with Image.open(io.BytesIO(data)) as source:
        source.draft("RGB", cell)  # JPEG: decode at 1/2, 1/4, 1/8 when that still covers cell
        panel = source.convert("RGB")
    panel.thumbnail(cell, Image.Resampling.LANCZOS)
    return panel


def contact_sheet(
    images: Sequence[bytes],
    ratio: float,
    *,
    numbers: Sequence[int] | None = None,
    long_side: int = SHEET_LONG_SIDE,
    max_bytes: int = PHOTO_MAX_BYTES,
) -> bytes:
    """One JPEG of every image in order, each in its cell, labelled with its number
    (``numbers``, 1, 2, 3… by default); within Telegram's photo rules. Raises ValueError for
    no images, and Pillow's errors for images it cannot read."""
    if numbers is None:
        numbers = range(1, len(images) + 1)
    if len(numbers) != len(images):
        raise ValueError(f"{len(numbers)} numbers for {len(images)} images")
    largest = (0, 0)
    for data in images:
        with Image.open(io.BytesIO(data)) as img:  # the header only
            largest = (max(largest[0], img.width), max(largest[1], img.height))
    layout = grid(len(images), ratio, long_side, max_cell=largest)
    sheet = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(max(12, min(layout.cell) // 8))
    for n, (data, number) in enumerate(zip(images, numbers, strict=True)):
        left, top, right, bottom = layout.box(n)
        panel = _panel(data, layout.cell)
        x = left + (right - left - panel.width) // 2
        y = top + (bottom - top - panel.height) // 2
        sheet.paste(panel, (x, y))
        label = str(number)
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


def _entry_bytes(name: str, data: bytes) -> int:
    return _ENTRY_OVERHEAD + 2 * len(name.encode()) + len(data)


def zip_parts(files: Sequence[tuple[str, bytes]], prompt_txt: str, max_bytes: int) -> list[bytes]:
    """The files, in order, as ZIP archives of at most ``max_bytes`` each (one when they fit),
    every archive with ``prompt.txt`` too. Images are stored as they are (already compressed).

    A single file too large for any part gets a part of its own (the caller's limit is then
    exceeded: the images were checked against it at delivery, so this does not happen).
    """
    prompt = prompt_txt.encode()
    base = _ARCHIVE_OVERHEAD + _entry_bytes("prompt.txt", prompt)
    groups: list[list[tuple[str, bytes]]] = [[]]
    size = base
    for name, data in files:
        cost = _entry_bytes(name, data)
        if groups[-1] and size + cost > max_bytes:
            groups.append([])
            size = base
        groups[-1].append((name, data))
        size += cost
    parts = []
    for group in groups:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in group:
                archive.writestr(name, data)
            archive.writestr("prompt.txt", prompt, compress_type=zipfile.ZIP_DEFLATED)
        parts.append(buf.getvalue())
    return parts


def panel_ratio(size: str) -> float:
    """Width / height of a job's ``size`` (``"2560:1440 (16:9)"`` -> 1.78); 1.0 if unreadable."""
    w, _, rest = size.partition(":")
    h = rest.split(" ")[0]
    if w.isascii() and w.isdigit() and h.isascii() and h.isdigit() and int(w) and int(h):
        return int(w) / int(h)
    return 1.0
