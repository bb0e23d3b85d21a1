"""CPU per reference image: cleaning ten 1280-px Telegram photos (issue 20: target ≤ 40 ms each).

    .venv/bin/python bench/refs_cpu.py [--rounds 5] [--albums 10]

Each photo is photo-like (gradients, shapes and sensor noise, JPEG quality 87 as Telegram
recompresses), half of them with an EXIF orientation to apply and GPS tags to drop. The CPU time
(``time.thread_time``: this thread only, as the bot runs each in a worker thread) of
``refimages.clean`` is measured for every photo over several rounds.

With ``--albums N``: the real Application in-process against the loopback fakes sends N albums of
those ten photos with ``/seq 4 …`` (one chat each, one after another) and measures, from the tenth
item's update, the time until RunComfy has the submit; the process's CPU per reference over each
album (the fakes' serving of the downloads included: an upper bound); and the longest the event
loop was blocked (a 5 ms ticker's worst lateness).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import refimages
from bot.config import Settings
from tests.conftest import RC_TOKEN, TG_TOKEN, RunningBot, make_env
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import refs_env


async def _ticker(lateness: list[float]) -> None:
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        lateness.append(time.perf_counter() - start - 0.005)


async def end_to_end(photos: list[bytes], albums: int) -> None:
    """Albums of ten references through the real Application, to RunComfy's submit."""
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeTelegram(token=TG_TOKEN) as telegram, FakeRunComfy(token=RC_TOKEN) as rc:
            env = make_env(Path(tmp), telegram, rc)
            # The bot's own web server on a free port: the fake fetches every reference at submit.
            env = {**refs_env(env), "LOG_LEVEL": "WARNING"}
            bot = await RunningBot(Settings.from_env(env)).start()
            lateness: list[float] = []
            ticker = asyncio.create_task(_ticker(lateness))
            waits, cpus = [], []
            try:
                for n in range(albums):
                    chat = 500_000_000 + n
                    cpu = time.process_time()
                    items = telegram.send_album(photos, "/seq 4 the ten of them", chat_id=chat)
                    pushed = time.perf_counter()
                    del items
                    await telegram.wait_for(lambda n=n: rc.count("submit") == n + 1, timeout=30)
                    waits.append(time.perf_counter() - pushed)
                    cpus.append((time.process_time() - cpu) * 1000 / len(photos))
                    await asyncio.sleep(0.3)  # the job's own polls and delivery, out of the next
            finally:
                ticker.cancel()
                await bot.stop()
    waits.sort()
    p95 = waits[max(0, int(len(waits) * 0.95) - 1)]
    print(
        f"{albums} albums of 10 references, tenth item -> RunComfy submit: "
        f"p50 {statistics.median(waits):.2f} s, p95 {p95:.2f} s, max {waits[-1]:.2f} s"
    )
    print(f"process CPU per reference (fakes included): median {statistics.median(cpus):.1f} ms")
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99) - 1]
    print(
        f"event loop lateness (5 ms ticker, {len(lateness)} ticks): p99 {p99 * 1000:.0f} ms, "
        f"max {lateness[-1] * 1000:.0f} ms"
    )


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
    parser.add_argument("--albums", type=int, default=0)
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
    if args.albums:
        asyncio.run(end_to_end(photos, args.albums))


if __name__ == "__main__":
    main()
