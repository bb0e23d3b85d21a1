"""Every listener bounded: the webhook server and the metrics server, through raw sockets on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from telegram import Bot

from bot import metrics
from bot.config import Settings
from bot.web.server import Webhook, WebServer
from tests.conftest import RC_TOKEN, TG_TOKEN, Bots
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import until_final
from tests.test_operations import SECRET, WebhookBot, free_port

GOOD = {"TELEGRAM_BOT_TOKEN": TG_TOKEN, "RUNCOMFY_API_TOKEN": RC_TOKEN}
SHORT = 0.3  # the test-short timeout of a listener, seconds


@pytest.fixture
async def hook(env: dict[str, str], bots: Bots) -> WebhookBot:
    """The real bot in webhook mode, with a short WEBHOOK_TIMEOUT_SECONDS."""
    settings = Settings.from_env(
        {
            **env,
            "WEBHOOK_URL": "https://bot.example.org/seqbot-hook",
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_PORT": str(free_port()),
            "WEBHOOK_TIMEOUT_SECONDS": str(SHORT),
        }
    )
    assert settings.webhook_listen == "127.0.0.1"  # the default now
    return await bots.run(WebhookBot(settings))


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def read_all(sock: socket.socket) -> tuple[bytes, float]:
    """Everything until the server closes the connection, and when it closed (monotonic)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic()


def headers(path: str, length: int, secret: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}")
    if secret is not None:
        lines.append(f"X-Telegram-Bot-Api-Secret-Token: {secret}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---- the webhook server -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "wrong-secret-0123456789"])
async def test_a_post_without_the_secret_is_refused_before_its_body(
    hook: WebhookBot, telegram: FakeTelegram, secret: str | None
) -> None:
    port = hook.settings.webhook_port

    def probe() -> tuple[bytes, float]:
        with connect(port) as sock:
            # A megabyte announced, not one byte of it sent: the answer must not wait for it.
            sock.sendall(headers("/seqbot-hook", 1024 * 1024, secret))
            return read_all(sock)

    started = time.monotonic()
    answer, closed = await asyncio.to_thread(probe)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    assert closed - started < 2  # not the body timeout, and not forever: at once
    assert telegram.calls_to("sendMessage") == []


async def test_another_path_is_refused_before_its_body(hook: WebhookBot) -> None:
    def probe() -> bytes:
        with connect(hook.settings.webhook_port) as sock:
            sock.sendall(headers("/elsewhere", 1024 * 1024, SECRET))
            return read_all(sock)[0]

    answer = await asyncio.to_thread(probe)
    assert answer.startswith(b"HTTP/1.1 404"), answer[:80]


@pytest.mark.parametrize("part", ["headers", "body", "idle"])
async def test_a_half_sent_or_idle_connection_is_closed_after_the_timeout(
    hook: WebhookBot, telegram: FakeTelegram, part: str
) -> None:
    port = hook.settings.webhook_port
    update = json.dumps(telegram.send_text("/help", push=False)).encode()

    def probe() -> tuple[bytes, float, float]:
        with connect(port) as sock:
            if part == "headers":
                sock.sendall(b"POST /seqbot-hook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            elif part == "body":
                sock.sendall(headers("/seqbot-hook", len(update), SECRET) + update[:10])
            else:  # a whole request, then the kept-alive connection sits idle
                sock.sendall(headers("/seqbot-hook", len(update), SECRET) + update)
            sent = time.monotonic()
            data, closed = read_all(sock)
            return data, sent, closed

    data, sent, closed = await asyncio.to_thread(probe)
    assert SHORT * 0.8 <= closed - sent < SHORT + 2, closed - sent
    if part == "idle":
        assert data.startswith(b"HTTP/1.1 200")
        await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    else:
        assert data == b""


async def test_updates_still_arrive_after_refusals(
    hook: WebhookBot, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    port = hook.settings.webhook_port
    update = json.dumps(telegram.send_text("/seq 2 a fox", push=False)).encode()

    def probe() -> bytes:
        for secret in (None, "wrong-secret-0123456789"):
            with connect(port) as sock:
                sock.sendall(headers("/seqbot-hook", len(update), secret) + update)
                assert read_all(sock)[0].startswith(b"HTTP/1.1 403")
        with connect(port) as sock:
            sock.sendall(headers("/seqbot-hook", len(update), SECRET) + update)
            return sock.recv(65536)

    assert (await asyncio.to_thread(probe)).startswith(b"HTTP/1.1 200")
    job = await until_final(telegram, hook)
    assert job.message_id == json.loads(update)["message"]["message_id"]
    assert runcomfy.count("submit") == 1


async def test_the_webhook_server_keeps_at_most_so_many_connections() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue()
    hook = Webhook(Bot(TG_TOKEN), queue, "hook", SECRET)
    server = WebServer(webhook=hook, timeout=30, max_connections=3)
    port = free_port()
    server.listen(port, "127.0.0.1")
    try:

        def probe() -> list[bytes]:
            held = [connect(port) for _ in range(3)]
            for sock in held:
                sock.sendall(b"POST /hook HTTP/1.1\r\n")  # half-sent: each holds a connection
            time.sleep(0.2)
            with connect(port) as extra:
                refused = read_all(extra)[0]
            for sock in held:
                sock.close()
            time.sleep(0.2)
            with connect(port) as later:
                later.sendall(headers("/hook", 2, None) + b"{}")
                return [refused, read_all(later)[0]]

        refused, later = await asyncio.to_thread(probe)
        assert refused == b""  # closed at once, nothing read
        assert later.startswith(b"HTTP/1.1 403")  # room again once the others closed
    finally:
        await server.stop()


def test_the_webhook_listens_on_loopback_unless_told() -> None:
    settings = Settings.from_env(GOOD)
    assert (settings.webhook_listen, settings.webhook_timeout) == ("127.0.0.1", 10.0)
    told = Settings.from_env({**GOOD, "WEBHOOK_LISTEN": "0.0.0.0", "WEBHOOK_TIMEOUT_SECONDS": "3"})
    assert (told.webhook_listen, told.webhook_timeout) == ("0.0.0.0", 3.0)
    with pytest.raises(Exception, match="WEBHOOK_LISTEN"):
        Settings.from_env({**GOOD, "WEBHOOK_LISTEN": "http://0.0.0.0"})
    with pytest.raises(Exception, match="WEBHOOK_TIMEOUT_SECONDS"):
        Settings.from_env({**GOOD, "WEBHOOK_TIMEOUT_SECONDS": "0"})


# ---- the metrics server -----------------------------------------------------------------------


async def test_idle_metrics_connections_are_closed_and_threads_bounded() -> None:
    server = metrics.serve(0, "127.0.0.1", max_threads=4, timeout=SHORT)
    assert server is not None
    _, port = server.address
    try:

        def probe() -> tuple[list[bytes], float, int, bytes]:
            before = threading.active_count()
            held = [connect(port) for _ in range(20)]
            for sock in held:
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # half-sent, then silence
            time.sleep(SHORT / 3)
            during = threading.active_count() - before
            started = time.monotonic()
            answers = [read_all(sock)[0] for sock in held]
            closed = time.monotonic() - started
            for sock in held:
                sock.close()
            with connect(port) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                page = read_all(sock)[0]
            return answers, closed, during, page

        answers, closed, during, page = await asyncio.to_thread(probe)
        assert during <= 4  # one thread per served connection, at most max_threads
        busy = [a for a in answers if a.startswith(b"HTTP/1.0 503")]
        assert len(busy) == 16  # the rest were answered at once, not given a thread
        assert closed < SHORT + 2  # the idle ones were closed after the timeout, not never
        assert page.startswith(b"HTTP/1.0 200") and b"seqbot_jobs_active" in page
        await asyncio.sleep(0.1)
        assert server.httpd.serving == 0
    finally:
        await asyncio.to_thread(server.close)


async def test_a_metrics_client_that_drips_is_cut_off() -> None:
    server = metrics.serve(0, "127.0.0.1", max_threads=2, timeout=SHORT)
    assert server is not None
    _, port = server.address
    try:

        def probe() -> tuple[float, bool]:
            with connect(port) as sock:
                started = time.monotonic()
                request = b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100
                try:
                    for byte in request:  # one byte every tenth of the timeout: never idle
                        sock.sendall(bytes([byte]))
                        time.sleep(SHORT / 10)
                except OSError:
                    return time.monotonic() - started, True
                return time.monotonic() - started, sock.recv(100) == b""

        took, cut = await asyncio.to_thread(probe)
        assert cut and took < SHORT + 2
    finally:
        await asyncio.to_thread(server.close)
