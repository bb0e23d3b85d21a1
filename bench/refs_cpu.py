"""CPU per reference image: cleaning ten 1280-px Telegram photos (issue 20: target ≤ 40 ms each).

    .venv/bin/python bench/refs_cpu.py [--rounds 5]

Each photo is photo-like (gradients, shapes and sensor noise, JPEG quality 87 as Telegram
recompresses), half of them with an EXIF orientation to apply and GPS tags to drop. The CPU time
(``time.thread_time``: this thread only, as the bot runs each in a worker thread) of
``refimages.clean`` is measured for every photo over several rounds.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import refimages


def telegram_photo(seed: int, *, turned: bool) -> bytes:
    """A 1280 x 960 photo-like JPEG as Telegram serves a photo."""
    rnd = random.Random(seed)
    w, h = 1280, 960
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rnd.randrange(w), rnd.randrange(h)
        r = rnd.randrange(20, 200)
        fill = tuple(rnd.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((w, h), 18).convert("RGB")
    img = Image.blend(img, noise, 0.12)
    exif = Image.Exif()
    if turned:
        exif[0x0112] = 6
        exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=87, exif=exif.tobytes())
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    photos = [telegram_photo(i, turned=i % 2 == 0) for i in range(10)]
    refimages.clean(photos[0])  # imports and first-use costs out of the measurement
    per_photo: list[float] = []
    for _ in range(args.rounds):
        for data in photos:
            start = time.thread_time()
            refimages.clean(data)
            per_photo.append((time.thread_time() - start) * 1000)
    per_photo.sort()
    p95 = per_photo[int(len(per_photo) * 0.95) - 1]
    print(
        f"10 photos 1280x960, {sum(map(len, photos)) // 10 // 1024} kB each, {args.rounds} rounds"
    )
    print(
        f"CPU per reference: median {statistics.median(per_photo):.1f} ms, "
        f"mean {statistics.fmean(per_photo):.1f} ms, p95 {p95:.1f} ms, max {per_photo[-1]:.1f} ms"
    )
    print(f"CPU for ten references: {statistics.fmean(per_photo) * 10:.0f} ms")


if __name__ == "__main__":
    main()
