"""The reference server under RunComfy's fetches: 10 concurrent GETs of ~1 MB reference images.

Run from the project folder (target: p99 <= 50 ms on loopback; docs/PERFORMANCE.md)::

    .venv/bin/python bench/refs_server.py                 # ~10 s
    .venv/bin/python bench/refs_server.py --rounds 500 --keep-alive

The bot's own web server (``bot.web``: the signed-URL check, the job looked up as the bot does,
live while it runs or else from a real SQLite database, the file read off the event loop) runs in a child process with one unfinished job of
10 reference images of ~1 MB each, kept as the bot keeps them. This process fetches them in
rounds: each round 10 GETs at once, each on a new connection unless ``--keep-alive`` (RunComfy's
fetchers are strangers; a new connection is the likely case), by a lean client over asyncio
streams (``--client aiohttp`` for a full one, whose own CPU per GET exceeds the server's). Prints each GET's time from
request to the last byte (p50, p95, p99, max), the throughput, and the server's CPU per GET.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import asyncio, json, sys
from pathlib import Path
from bot.models import Origin, Reference, SeqRequest
from bot.originals import OriginalsCache
from bot.store import Store
from bot.web.references import ReferenceLinks, load_key
from bot.web.server import References, WebServer
from tests.fakes.runcomfy_api import render_jpeg

async def main(folder, port, size):
    db = Path(folder) / "seqbot.sqlite3"
    store = Store(db)
    cache = OriginalsCache(Path(folder) / "originals")
    images = [render_jpeg("ref", i, (1280, 1280), size) for i in range(10)]
    refs = tuple(
        Reference(f"reference-{i:02d}", "photo", 1, 1, 1280, 1280, len(d))
        for i, d in enumerate(images)
    )
    request = SeqRequest(count=4, size="2048:2048 (1:1)", mode="fast", seed=None, prompt="p",
                         text="Generate 4 images", refs=refs)
    job = store.create_job(request, Origin(1, 1, 1, 1, "bench", None, "private"))
    for ref, data in zip(refs, images):
        await cache.save_ref(job.id, ref.id, data)
    links = ReferenceLinks(f"http://127.0.0.1:{port}/seqbot", load_key(db))
    # As the bot's JobRunner.find: the live job while it runs, else the stored row.
    active = {job.id: job}
    find = lambda job_id: active.get(job_id) or store.get(job_id)
    server = WebServer(references=References(links, find, cache.ref_path), prefix="/seqbot")
    server.listen(port, "127.0.0.1")
    urls = [links.url(job.id, r.id) for r in refs]
    print(json.dumps({"urls": urls, "bytes": [len(d) for d in images]}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def fetch(session: aiohttp.ClientSession, url: str, expected: int) -> float:
    started = time.perf_counter()
    async with session.get(url) as response:
        body = await response.read()
    took = time.perf_counter() - started
    if response.status != 200 or len(body) != expected:
        raise SystemExit(f"GET answered {response.status} with {len(body)} bytes")
    return took


class RawFetcher:
    """A lean HTTP/1.1 GET over asyncio streams: RunComfy's fetchers run elsewhere, so the
    client's own CPU (aiohttp's is more than the server's) should not crowd the measurement."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.keep_alive = keep_alive
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def fetch(self, expected: int) -> float:
        started = time.perf_counter()
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        reader, writer = self.streams
        close = "keep-alive" if self.keep_alive else "close"
        writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: {close}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        took = time.perf_counter() - started
        if not head.startswith(b"HTTP/1.1 200") or len(body) != expected:
            raise SystemExit(f"GET answered {head[:12]!r} with {len(body)} bytes")
        if not self.keep_alive:
            writer.close()
            self.streams = None
        return took


async def run(
    urls: list[str], sizes: list[int], rounds: int, keep_alive: bool, client: str
) -> list[float]:
    times: list[float] = []
    pairs = list(zip(urls, sizes, strict=True))
    if client == "raw":
        fetchers = [(RawFetcher(u, keep_alive), s) for u, s in pairs]
        for fetcher, size in fetchers:  # warm-up: page cache, first imports
            await fetcher.fetch(size)
        for _ in range(rounds):
            times += await asyncio.gather(*(f.fetch(s) for f, s in fetchers))
        return times
    connector = aiohttp.TCPConnector(force_close=not keep_alive, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url, size in pairs:
            await fetch(session, url, size)
        for _ in range(rounds):
            times += await asyncio.gather(*(fetch(session, u, s) for u, s in pairs))
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="rounds of 10 concurrent GETs")
    parser.add_argument("--bytes", type=int, default=1_000_000, help="size of each image")
    parser.add_argument("--keep-alive", action="store_true", help="reuse connections")
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: a lean GET over asyncio streams (default); aiohttp: a full client",
    )
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(
            [sys.executable, "-c", SERVER, folder, str(port), str(args.bytes)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            ready = json.loads(child.stdout.readline())
            urls, sizes = ready["urls"], ready["bytes"]
            cpu_before = cpu_seconds(child.pid)
            mine_before = time.process_time()
            started = time.perf_counter()
            times = asyncio.run(run(urls, sizes, args.rounds, args.keep_alive, args.client))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(child.pid) - cpu_before
            mine = time.process_time() - mine_before
        finally:
            child.terminate()
            child.wait()
    ms = [t * 1000 for t in times]
    mean_mb = statistics.mean(sizes) / 1e6
    connections = "kept alive" if args.keep_alive else "a new connection each"
    print(
        f"reference server: {args.rounds} rounds of 10 concurrent GETs of {mean_mb:.2f} MB "
        f"JPEGs ({connections}, {args.client} client), {len(ms)} GETs"
    )
    print(
        f"  per GET, request to last byte: p50 {percentile(ms, 0.50):.1f} ms, "
        f"p95 {percentile(ms, 0.95):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms (target p99 <= 50 ms)"
    )
    print(
        f"  throughput {len(ms) / wall:.0f} GETs/s ({len(ms) * mean_mb / wall:.0f} MB/s); "
        f"server CPU {cpu * 1000 / len(ms):.2f} ms per GET (the fetching client's: "
        f"{mine * 1000 / len(ms):.2f} ms); load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
