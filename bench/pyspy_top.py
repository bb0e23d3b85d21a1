"""Summarise a ``py-spy record --format raw`` file (collapsed stacks): where the bot's CPU goes.

    .venv/bin/python bench/pyspy_top.py bench/results/<stamp>-steady-py-spy.txt

Prints the functions with the most samples on the stack (inclusive) and at the top (self), and
the share of samples in a few buckets named after the issue's suspects. Idle samples are not in
the file (``py-spy record`` leaves them out unless ``--idle``).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# First match wins; matched against the whole stack, innermost frame first.
BUCKETS = [
    (
        "reference images (intake, cleaning, serving)",
        r"\(bot/(intake|refimages)\.py\)|\(bot/web/|\(tornado/",
    ),
    ("importlib path lookups (_path_stat)", r"_path_stat|_find_spec|_find_and_load"),
    ("Pillow: Image.open / verify", r"\(PIL/"),
    ("sqlite (Store)", r"\(bot/store/|\(bot/store\.py\)|sqlite_utils|\(sqlite3/"),
    ("logging", r"\(logging/"),
    ("RunComfy client (status/result polls)", r"\(bot/runcomfy\.py\)"),
    ("Telegram HTTP layer (bot/tghttp.py)", r"\(bot/tghttp\.py\)"),
    ("downloads", r"\(bot/downloads\.py\)"),
    ("Telegram requests (python-telegram-bot)", r"\(telegram/"),
    ("aiohttp/yarl/multidict other", r"\(aiohttp/|\(yarl/|\(multidict/"),
    ("httpx/httpcore/anyio other", r"\(httpx/|\(httpcore/|\(anyio/|\(h11/"),
    ("prometheus metrics", r"\(prometheus_client/"),
    ("thread-pool hand-offs", r"concurrent/futures|threading\.py"),
    ("asyncio event loop itself", r"\(asyncio/"),
]


def main(path: str, top: int = 30) -> None:
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        for f in set(frames):
            inclusive[f] += n
        if frames:
            self_[frames[-1]] += n
        inner_first = ";".join(reversed(frames))
        for name, pattern in BUCKETS:
            if re.search(pattern, inner_first.split(";")[0]) or (
                name.startswith(("importlib", "Pillow", "sqlite", "logging"))
                and re.search(pattern, inner_first)
            ):
                buckets[name] += n
                break
        else:
            buckets["other"] += n
    print(f"{total} samples\n\ninclusive (on the stack):")
    for f, n in inclusive.most_common(top):
        print(f"{n / total:6.1%}  {f}")
    print("\nself (innermost frame):")
    for f, n in self_.most_common(top):
        print(f"{n / total:6.1%}  {f}")
    print("\nbuckets (innermost matching frame):")
    for name, n in buckets.most_common():
        print(f"{n / total:6.1%}  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
