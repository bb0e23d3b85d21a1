"""The bot's HTTP clients keep their connection pools in linear time, and still drop a connection
the server closed (bot/pool.py). Every request here goes over real HTTP to loopback fakes."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpcore
import httpx
import pytest
from aiohttp import web

from bot.pool import lean_client
from tests.conftest import RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram

IDLE = 40  # idle keep-alive connections in a pool: the bot's pools hold up to 64


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often a pool asks its connections whether they are idle, and how often a socket's
    peer address is fetched (the system call httpcore's idle check made every time)."""
    calls: Counter[str] = Counter()

    def count(cls: Any, name: str, key: str) -> None:
        original: Callable[..., Any] = getattr(cls, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counting)

    count(httpcore._async.http11.AsyncHTTP11Connection, "is_idle", "is_idle")
    count(asyncio.trsock.TransportSocket, "getpeername", "getpeername")
    return calls


async def _fill(
    client: httpx.AsyncClient, method: str, url: str, release: Callable[[], None]
) -> None:
    """``IDLE`` requests the server holds at once: as many connections, then all idle."""
    calls = [asyncio.create_task(client.request(method, url)) for _ in range(IDLE)]
    for _ in range(500):
        if len(_pool(client).connections) >= IDLE:
            break
        await asyncio.sleep(0.01)
    release()
    answers = await asyncio.gather(*calls)
    assert all(a.status_code < 500 for a in answers)
    assert len(_pool(client).connections) >= 32  # the RunComfy and download pools keep 32


def _pool(client: httpx.AsyncClient) -> httpcore.AsyncConnectionPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    return pool


async def _one_more(
    client: httpx.AsyncClient, method: str, url: str, counted: Counter[str]
) -> Counter[str]:
    counted.clear()
    answer = await client.request(method, url)
    assert answer.status_code < 500
    return Counter(counted)


async def test_each_client_of_the_bot_looks_over_its_pool_once_per_request(
    bot: RunningBot, telegram: FakeTelegram, runcomfy: FakeRunComfy, counted: Counter[str]
) -> None:
    """With 40 idle connections, one request asked each connection "idle?" 40 times over
    (1,600+ calls per look, two looks per request) and fetched 40 peer addresses; now a few
    calls per connection and no peer address at all."""
    # The RunComfy client and the downloads are on aiohttp now: Telegram's client is left.
    request = bot.app.bot.request
    clients = {
        "Telegram": (request._client, "POST", f"{telegram.base_url}{telegram.token}/getMe", ""),  # type: ignore[attr-defined]
    }
    for name, (client, method, url, endpoint) in clients.items():
        if endpoint:  # RunComfy holds them until released
            runcomfy.hold(endpoint)
            await _fill(client, method, url, lambda e=endpoint: runcomfy.release(e))
        else:  # Telegram answers each after 0.5 s
            telegram.delay_next("getMe", 0.5, times=IDLE)
            await _fill(client, method, url, lambda: None)
        calls = await _one_more(client, method, url, counted)
        assert calls["is_idle"] <= 8 * IDLE, (name, calls)
        assert calls["getpeername"] == 0, (name, calls)


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
