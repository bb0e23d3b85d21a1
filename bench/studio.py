"""The studio on loopback: the gallery's first paint with 500 series, the API's latency, the page's size.

Run from the project folder (targets, issue 22: first paint <= 1 s, API p99 <= 50 ms, JS + CSS <= 60 KB
gzipped; results in docs/PERFORMANCE.md)::

    .venv/bin/python bench/studio.py                      # 500 series, ~1-2 min
    .venv/bin/python bench/studio.py --series 100 --loads 3

The real bot (its Application, web server and SQLite database) runs in this process against the loopback
fakes of Telegram and RunComfy; the series are made by real ``/seq`` commands, as a person makes them, by a
person who has opened the studio before, so each has its thumbnails from its delivery. Then:

- API: sequential GETs with a signed initData, on one keep-alive connection, as the page makes them:
  ``/api/me``, every page of ``/api/series`` (30 each), ``/api/series/<id>`` for ``--details`` series,
  and a thumbnail per series. The client shares the bot's event loop, so each time includes its own
  work: the figures are an upper bound of the server's.
- Page: headless Debian Chromium (``tests/browser.py``), a new page ``--loads`` times: the time from
  navigation to the first page of cards in the DOM (the page's ``studio:gallery`` mark), first
  contentful paint, largest contentful paint (the gallery's first thumbnails or titles, painted), and
  until every thumbnail of the first screen has loaded.
- Size: index.html, app.js and app.css, raw and gzipped.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PTB_TIMEDELTA", "1")

from bot.models import FINAL  # noqa: E402
from tests.browser import LAUNCH_ARGS, TELEGRAM_JS, chromium, init_data, telegram_stub  # noqa: E402
from tests.conftest import RC_TOKEN, TG_TOKEN, Bots, RunningBot, make_env  # noqa: E402
from tests.fakes.runcomfy_api import FakeRunComfy  # noqa: E402
from tests.fakes.telegram_api import ADA, FakeTelegram  # noqa: E402
from tests.helpers import refs_env  # noqa: E402

STATIC = ROOT / "bot" / "web" / "static"
RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:2"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def make_series(telegram: FakeTelegram, bot: RunningBot, n: int, wave: int) -> float:
    """``n`` series by real /seq commands, ``wave`` at a time; the seconds it took."""
    started = time.perf_counter()
    for first in range(0, n, wave):
        for i in range(first, min(n, first + wave)):
            telegram.send_text(f"/seq {1 + i % 4} {RATIOS[i % len(RATIOS)]} series {i + 1}: a fox")
        last = min(n, first + wave)

        def ended(last: int = last) -> bool:
            jobs = [bot.store.get(j) for j in range(1, last + 1)]
            return all(j is not None and j.status in FINAL for j in jobs)

        await telegram.wait_for(ended, timeout=120)
    return time.perf_counter() - started


async def api_times(base: str, data: str, details: int) -> dict[str, list[float]]:
    """Each endpoint's latencies in ms."""
    times: dict[str, list[float]] = {"me": [], "series": [], "series/<id>": [], "img": []}
    headers = {"Authorization": f"tma {data}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:

        async def get(kind: str, path: str) -> Any:
            t0 = time.perf_counter()
            r = await client.get(path)
            body = r.content
            times[kind].append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            return r.json() if kind != "img" else body

        for _ in range(20):
            await get("me", "api/me")
        ids: list[int] = []
        thumbs: list[str] = []
        page = await get("series", "api/series?limit=30")
        while True:
            ids += [s["id"] for s in page["items"]]
            thumbs += [s["thumbs"][0]["url"] for s in page["items"] if s["thumbs"]]
            if page["next"] is None:
                break
            page = await get("series", f"api/series?before={page['next']}&limit=30")
        for job_id in ids[:details]:
            await get("series/<id>", f"api/series/{job_id}")
        for url in thumbs:
            t0 = time.perf_counter()
            r = await client.get(urljoin(base, url))
            times["img"].append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    return times


LCP_PROBE = """
window.__lcp = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__lcp = Math.max(window.__lcp, e.startTime);
}).observe({ type: "largest-contentful-paint", buffered: true });
"""


async def page_times(url: str, data: str, loads: int) -> list[dict[str, float]]:
    from playwright.async_api import async_playwright

    path = chromium()
    if path is None:
        raise SystemExit("no Chromium: apt-get install chromium (or set SEQBOT_CHROMIUM)")
    stub = telegram_stub(data, ADA)
    runs = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
        for _ in range(loads + 1):  # the first load warms the browser's own start-up; not counted
            context = await browser.new_context(viewport={"width": 390, "height": 800})
            page = await context.new_page()
            await page.add_init_script(LCP_PROBE)

            async def serve(route: Any) -> None:
                await route.fulfill(body=stub, content_type="application/javascript")

            await page.route(TELEGRAM_JS, serve)
            await page.goto(url)
            await page.wait_for_function(
                "() => performance.getEntriesByName('studio:gallery').length > 0"
            )
            await page.wait_for_function(
                """() => [...document.querySelectorAll('.card img')]
                     .filter(i => i.getBoundingClientRect().top < innerHeight)
                     .every(i => i.complete && i.naturalWidth > 0)"""
            )
            await page.wait_for_timeout(300)  # LCP entries are reported after the frame
            m = await page.evaluate(
                """() => {
                  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                  const imgs = performance.getEntriesByType('resource')
                    .filter(r => r.name.includes('/img/'));
                  const shown = [...document.querySelectorAll('.card img')]
                    .filter(i => i.getBoundingClientRect().top < innerHeight).map(i => i.currentSrc);
                  const ends = imgs.filter(r => shown.includes(r.name)).map(r => r.responseEnd);
                  return {
                    cards: performance.getEntriesByName('studio:gallery')[0].startTime,
                    fcp: fcp ? fcp.startTime : NaN,
                    lcp: window.__lcp,
                    thumbs: ends.length ? Math.max(...ends) : NaN,
                    count: document.querySelectorAll('.card').length,
                  };
                }"""
            )
            runs.append(m)
            await context.close()
        await browser.close()
    return runs[1:]


def sizes() -> list[tuple[str, int, int]]:
    return [
        (p.name, len(p.read_bytes()), len(gzip.compress(p.read_bytes(), 9)))
        for p in sorted(STATIC.iterdir())
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--details", type=int, default=200, help="series/<id> GETs")
    parser.add_argument("--loads", type=int, default=5, help="page loads timed")
    parser.add_argument("--wave", type=int, default=50, help="/seq commands in flight")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        async with FakeTelegram(token=TG_TOKEN) as telegram, FakeRunComfy(token=RC_TOKEN) as rc:
            env = refs_env(make_env(Path(tmp), telegram, rc))
            env.update(
                MAX_ACTIVE_JOBS_PER_USER=str(args.wave),
                MAX_ACTIVE_JOBS_PER_CHAT=str(args.wave),
                DAILY_IMAGE_LIMIT_PER_USER="0",
                RUNCOMFY_MAX_REQUESTS_PER_SECOND="1000",
                # The per-person limit is the server's defence, not what is measured here.
                STUDIO_REQUESTS_PER_SECOND="100000",
                STUDIO_REQUEST_BURST="100000",
            )
            bots = Bots(env)
            bot = await bots.start()
            try:
                data = init_data(TG_TOKEN, ADA)
                base = f"{env['PUBLIC_URL']}/app/"
                # Ada has opened the studio before: her panels' thumbnails are made at delivery.
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    opened = await client.get("api/me", headers={"Authorization": f"tma {data}"})
                    opened.raise_for_status()
                made = await make_series(telegram, bot, args.series, args.wave)
                api = await api_times(base, data, args.details)
                pages = await page_times(base, data, args.loads)
            finally:
                await bots.stop()

    everything = [t for ts in api.values() for t in ts]
    print(f"{args.series} series made by /seq in {made:.1f} s; Chromium {chromium()}\n")
    print("| API (sequential, keep-alive) | n | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, ts in [*api.items(), ("all", everything)]:
        print(
            f"| {name} | {len(ts)} | {statistics.median(ts):.1f} | {pct(ts, 0.95):.1f} "
            f"| {pct(ts, 0.99):.1f} | {max(ts):.1f} |"
        )
    print(f"\n| page load ({args.loads}, 390x800) | median ms | max ms |")
    print("|---|---|---|")
    for key, label in [
        ("cards", "first 30 cards in the DOM"),
        ("fcp", "first contentful paint"),
        ("lcp", "largest contentful paint (gallery painted)"),
        ("thumbs", "first screen's thumbnails loaded"),
    ]:
        vals = [r[key] for r in pages]
        print(f"| {label} | {statistics.median(vals):.0f} | {max(vals):.0f} |")
    print("\n| file | bytes | gzipped |")
    print("|---|---|---|")
    rows = sizes()
    for name, raw, gz in rows:
        print(f"| {name} | {raw} | {gz} |")
    code = [(raw, gz) for name, raw, gz in rows if name.endswith((".js", ".css"))]
    print(f"| JS + CSS | {sum(r for r, _ in code)} | {sum(g for _, g in code)} |")
    p99 = pct(everything, 0.99)
    worst_paint = max(r["lcp"] for r in pages)
    budget = sum(g for _, g in code)
    ok = p99 <= 50 and worst_paint <= 1000 and budget <= 60 * 1024
    print(
        f"\ntargets: API p99 {p99:.1f} ms <= 50; first paint {worst_paint:.0f} ms <= 1000; "
        f"JS+CSS {budget} B gzipped <= 61440: {'met' if ok else 'NOT MET'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
