"""The studio's thumbnails: a panel made small (WebP, at most 320 px a side), once, when its job
is delivered; kept in the database with the job's row (``store/studio.py``), so the studio shows
a series after its originals are long gone."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import TYPE_CHECKING

from PIL import Image

from bot.images import FORMATS, check_header, max_pixels

if TYPE_CHECKING:
    from bot.models import Job
    from bot.originals import OriginalsCache
    from bot.store import Store

log = logging.getLogger(__name__)

THUMB_SIDE = 320
_QUALITY = 75  # a 320 px WebP at 75 is 10-20 KB: a page of 30 strips stays small
_METHOD = 2  # libwebp's effort: 4 (its default) costs ~20 % more CPU for ~1 % fewer bytes


def make(data: bytes, size: str | None = None, side: int = THUMB_SIDE) -> tuple[bytes, int, int]:
    """``data`` (an image) as a WebP of at most ``side`` px a side: (bytes, width, height).

    ``size``: the job's size string, bounding the pixels decoded (``images.max_pixels``).
    Raises ValueError (or PIL's errors, all ``Exception``) for what is not a usable image.
    """
    with Image.open(io.BytesIO(data), formats=FORMATS) as img:
        check_header(img, max_pixels(size) if size else None)
        # A JPEG is decoded straight at the smallest scale (1/2 … 1/8) still at least the
        # thumbnail's size: libjpeg's scaled decode averages each block, which is all a 320 px
        # picture needs, at a third less CPU than decoding twice as large and resampling.
        img.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=1.0)
        small = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
    out = io.BytesIO()
    small.save(out, "WEBP", quality=_QUALITY, method=_METHOD)
    return out.getvalue(), small.width, small.height


def delivered_indexes(job: Job) -> list[int]:
    """The job's images Telegram took, in order."""
    plan = job.plan or []
    return sorted(i for n in job.delivered if n < len(plan) for i in plan[n].items)


async def keep(store: Store, originals: OriginalsCache, job: Job) -> int:
    """Make the thumbnails of the job's delivered images from the kept files (off the event
    loop) and store them; those already made are skipped. Returns how many were made; a file
    that cannot be read is logged and left out (the studio asks again when it shows it)."""
    have = set(store.thumb_indexes([job.id]).get(job.id, []))
    made = []
    for index in delivered_indexes(job):
        if index in have:
            continue
        data = await originals.load(job.id, index)
        if data is None:
            continue
        try:
            thumb, width, height = await asyncio.to_thread(make, data, job.size)
        except Exception as exc:  # a bad image is the studio's loss only, never the delivery's
            log.warning("job %d: no thumbnail of image %d: %s", job.id, index + 1, exc)
            continue
        made.append((index, thumb, width, height))
    if made and not store.save_thumbs(job.id, made):
        log.warning("job %d: thumbnails not saved (database busy); made when first shown", job.id)
        return 0
    return len(made)
