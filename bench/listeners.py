"""What the bot's listeners and the sheet cost under hostile input (issue 18, items 9-11).

    .venv/bin/python bench/listeners.py                # this checkout
    .venv/bin/python bench/listeners.py --repo DIR     # another checkout (say, an older commit)

Three measurements, each in a child process of its own so its memory and threads are its own:

- webhook: 100 connections POST 1 MiB each with a wrong secret, all at once; the server's resident
  memory before and at its peak (VmHWM), and how long the last refusal took.
- metrics: 100 connections send half a request and go quiet; the server's threads 1 s later, and
  again after 12 s (the default timeout is 10 s).
- sheet: a contact sheet of two kept 9000 x 9000 PNGs (79 kB each) for a 16:9 job; the peak
  resident memory of the build, and whether it was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "webhook-secret-0123456789"

WEBHOOK_CHILD = """
import asyncio, sys
from telegram import Bot
from bot.web.server import Webhook, WebServer

async def main():
    hook = Webhook(Bot("123456:" + "a" * 30), asyncio.Queue(), "hook", SECRET)
    server = WebServer(webhook=hook)
    server.listen(PORT, "127.0.0.1")
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

METRICS_CHILD = """
import time
from bot import metrics
assert metrics.serve(PORT, "127.0.0.1") is not None
print("ready", flush=True)
time.sleep(3600)
"""

SHEET_CHILD = """
import resource, struct, zlib
from bot import images, sheets

def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

side, packer = 9000, zlib.compressobj(9)
pixels = b"".join(packer.compress(b"\\0" * (1 + side)) for _ in range(side)) + packer.flush()
giant = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
         + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kwargs = {}
if CAP and hasattr(images, "max_pixels"):
    kwargs["max_pixels"] = images.max_pixels("2560:1440 (16:9)")
try:
    sheets.contact_sheet([giant, giant], 16 / 9, **kwargs)
    outcome = "built"
except Exception as exc:
    outcome = f"refused ({exc})"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{before / 1024:.0f} {peak / 1024:.0f} {outcome}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(repo: Path, code: str, **values: object) -> subprocess.Popen[str]:
    prelude = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    proc = subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def hostile_post(port: int, body: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        "X-Telegram-Bot-Api-Secret-Token: wrong-secret-0123456789\r\n\r\n"
    ).encode()
    try:
        writer.write(head + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    except (ConnectionError, TimeoutError) as exc:
        line = type(exc).__name__.encode()
    writer.close()
    return line.decode(errors="replace").strip()


def webhook(repo: Path) -> None:
    port = free_port()
    proc = child(repo, WEBHOOK_CHILD, PORT=port, SECRET=SECRET)
    try:
        time.sleep(0.5)
        before = status(proc.pid, "VmRSS")
        started = time.monotonic()

        async def burst() -> list[str]:
            body = b"x" * (1024 * 1024)
            return await asyncio.gather(*(hostile_post(port, body) for _ in range(100)))

        answers = asyncio.run(burst())
        took = time.monotonic() - started
        peak = status(proc.pid, "VmHWM")
        kinds = {a: answers.count(a) for a in set(answers)}
        print(
            f"webhook: 100 unauthenticated 1 MiB POSTs: RSS {before / 1024:.0f} MB before, "
            f"peak {peak / 1024:.0f} MB; all answered in {took:.2f} s; answers {kinds}"
        )
    finally:
        proc.kill()
        proc.wait()


def metrics(repo: Path) -> None:
    port = free_port()
    proc = child(repo, METRICS_CHILD, PORT=port)
    held = []
    try:
        before = status(proc.pid, "Threads")
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(sock)
        time.sleep(1)
        during = status(proc.pid, "Threads")
        time.sleep(11)
        after = status(proc.pid, "Threads")
        print(
            f"metrics: 100 half-sent requests: threads {before} before, {during} after 1 s, "
            f"{after} after 12 s"
        )
    finally:
        for sock in held:
            sock.close()
        proc.kill()
        proc.wait()


def sheet(repo: Path) -> None:
    for cap in (True, False):
        out = subprocess.run(
            [sys.executable, "-c", f"CAP = {cap}\n" + textwrap.dedent(SHEET_CHILD)],
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split(maxsplit=2)
        print(
            f"sheet ({'with the pixel cap' if cap else 'no pixel cap'}): two 9000x9000 PNGs: "
            f"peak RSS {out[0]} MB before the build, {out[1]} MB after; {out[2].strip()}"
        )


def main() -> None:
    """Run the three measurements against ``--repo`` (default: this checkout)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("only", nargs="*", choices=["webhook", "metrics", "sheet", []])
    args = parser.parse_args()
    for name in args.only or ["webhook", "metrics", "sheet"]:
        {"webhook": webhook, "metrics": metrics, "sheet": sheet}[name](args.repo.resolve())


if __name__ == "__main__":
    main()
