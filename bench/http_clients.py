"""CPU per HTTP request of the two client stacks the bot could use: httpx and aiohttp.

    .venv/bin/python bench/http_clients.py [--requests 400]

A loopback aiohttp server in another process answers three kinds of request, the bot's commonest:
a small JSON GET (a RunComfy status or result poll), a 1 MB GET (a result image) and a 4 × 1 MB
multipart POST (an album to Telegram). This process sends them one at a time, keep-alive, with
httpx (as python-telegram-bot's HTTPXRequest uses it) and with one ``aiohttp.ClientSession``, and reports its own CPU (user + system, ``getrusage``) per request:
the server's CPU is not counted. The decision it supports is in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

SERVER = r"""
import asyncio, os
from aiohttp import web

IMAGE = os.urandom(1_000_000)
POLL = b'{"request_id":"3f1c","status":"in_progress","queue_position":null}'

async def upload(request):
    await request.read()
    return web.json_response({"ok": True, "result": [{"message_id": 1}]})

async def main():
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/poll", lambda r: web.Response(body=POLL, content_type="application/json"))
    app.router.add_get("/image.jpg", lambda r: web.Response(body=IMAGE, content_type="image/jpeg"))
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

PHOTO = os.urandom(1_000_000)
Op = Callable[[], Awaitable[object]]


def cpu() -> float:
    """This process's CPU seconds so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def httpx_client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"Authorization": "Bearer bench"})


def httpx_ops(client: httpx.AsyncClient) -> dict[str, Op]:
    async def poll() -> object:
        return (await client.get("/poll")).json()

    async def image() -> object:
        async with client.stream("GET", "/image.jpg") as response:
            return b"".join([chunk async for chunk in response.aiter_bytes()])

    async def album() -> object:
        files = {f"photo{i}": (f"{i}.jpg", PHOTO, "image/jpeg") for i in range(4)}
        return (await client.post("/upload", data={"chat_id": "1"}, files=files)).json()

    return {"poll": poll, "image": image, "album": album}


def aiohttp_ops(session: aiohttp.ClientSession) -> dict[str, Op]:
    async def poll() -> object:
        async with session.get("/poll") as response:
            return await response.json()

    async def image() -> object:
        async with session.get("/image.jpg") as response:
            return b"".join([chunk async for chunk in response.content.iter_any()])

    async def album() -> object:
        form = aiohttp.FormData()
        form.add_field("chat_id", "1")
        for i in range(4):
            form.add_field(f"photo{i}", PHOTO, filename=f"{i}.jpg", content_type="image/jpeg")
        async with session.post("/upload", data=form) as response:
            return await response.json()

    return {"poll": poll, "image": image, "album": album}


async def measure(op: Op, n: int) -> float:
    """Milliseconds of this process's CPU per call, after a warm-up."""
    for _ in range(10):
        await op()
    start = cpu()
    for _ in range(n):
        await op()
    return (cpu() - start) / n * 1000


async def amain(base: str, requests: int) -> None:
    rows: dict[str, dict[str, float]] = {}
    async with httpx_client(base) as client:
        for name, op in httpx_ops(client).items():
            n = requests if name == "poll" else max(20, requests // 4)
            rows.setdefault(name, {})["httpx"] = await measure(op, n)
    headers = {"Authorization": "Bearer bench"}
    async with aiohttp.ClientSession(base, headers=headers) as session:
        for name, op in aiohttp_ops(session).items():
            n = requests if name == "poll" else max(20, requests // 4)
            rows[name]["aiohttp"] = await measure(op, n)
    print(
        f"httpx {httpx.__version__}, aiohttp {aiohttp.__version__}, Python {sys.version.split()[0]}"
    )
    print("| request | httpx ms CPU | aiohttp ms CPU | ratio |")
    print("|---|---|---|---|")
    labels = {"poll": "JSON GET (a poll)", "image": "1 MB GET (a result)", "album": "4 × 1 MB POST"}
    for name, row in rows.items():
        ratio = row["httpx"] / row["aiohttp"]
        print(f"| {labels[name]} | {row['httpx']:.3f} | {row['aiohttp']:.3f} | {ratio:.1f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests", type=int, default=400, help="JSON GETs timed (a quarter of it for the others)"
    )
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        asyncio.run(amain(f"http://127.0.0.1:{port}", args.requests))
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
