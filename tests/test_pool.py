"""LeanPool (bot/pool.py) still drops a connection the server closed and closes idle ones past
the keep-alive limit. No client of the bot uses it any more (all three are on aiohttp): the
module and these tests go together. Every request here goes over real HTTP to loopback."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpcore
import httpx
from aiohttp import web

from bot.pool import lean_client


def _pool(client: httpx.AsyncClient) -> httpcore.AsyncConnectionPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    return pool


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    """The server drops idle keep-alive connections after 0.1 s: the next request still gets
    its answer, on a new connection (the idle check still polls the socket)."""
    peers: list[Any] = []

    async def answer(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, keepalive_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    client = lean_client(httpx.AsyncClient())
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        assert (await client.get(url)).text == "ok"
        assert (await client.get(url)).text == "ok"
        assert peers[0] == peers[1]  # kept alive
        await asyncio.sleep(0.5)  # the server has closed it meanwhile
        assert (await client.get(url)).text == "ok"
        assert peers[2] != peers[1]
        assert len(_pool(client).connections) == 1
    finally:
        await client.aclose()
        await runner.cleanup()


async def test_idle_connections_beyond_the_keepalive_limit_are_closed() -> None:
    """max_keepalive_connections still holds: 6 requests at once leave at most 2 idle."""

    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=2)
    lean = lean_client(httpx.AsyncClient(limits=limits))
    plain = httpx.AsyncClient(limits=limits)  # httpcore's own pool: the same decisions
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        left = []
        for client in (lean, plain):
            answers = await asyncio.gather(*(client.get(url) for _ in range(6)))
            assert [a.text for a in answers] == ["ok"] * 6
            await client.get(url)  # its look over the pool closes the surplus
            left.append(len(_pool(client).connections))
        assert type(_pool(lean)).__name__ == "LeanPool"
        assert sum(c.is_idle() for c in _pool(lean).connections) <= 2
        assert left[0] == left[1]
    finally:
        await lean.aclose()
        await plain.aclose()
        await runner.cleanup()
