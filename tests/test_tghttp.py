"""``bot.tghttp``: python-telegram-bot's HTTP layer on aiohttp, against the loopback fake
Telegram and small servers of its own (a silent one, a redirecting one) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from telegram import InputMediaDocument, InputMediaPhoto
from telegram.error import NetworkError, TelegramError, TimedOut

from bot.botapi import (
    AnsweredError,
    CheckedBot,
    CheckedRequest,
    answered,
    describe,
    worth_retrying,
)
from bot.tghttp import AnswerTooBig
from tests.conftest import TG_TOKEN
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.test_startup import unused_port

SECRET = TG_TOKEN.partition(":")[2]


def checked_bot(base_url: str, **request: Any) -> CheckedBot:
    file_url = base_url.removesuffix("/bot") + "/file/bot"
    return CheckedBot(
        TG_TOKEN, base_url=base_url, base_file_url=file_url, request=CheckedRequest(**request)
    )


async def failure(call: Any) -> TelegramError:
    with pytest.raises(TelegramError) as raised:
        await call
    return raised.value


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never reads from them: a stalled upload."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/bot"
    for writer in held:
        writer.transport.abort()
    server.close()
    await server.wait_closed()


async def _dropped(telegram: FakeTelegram) -> TelegramError:
    telegram.drop_next("getMe")
    bot = checked_bot(telegram.base_url)
    try:
        return await failure(bot.initialize())  # getMe
    finally:
        await bot.shutdown()


async def _timed_out(telegram: FakeTelegram) -> TelegramError:
    telegram.delay_next("getMe", 2.0)
    bot = checked_bot(telegram.base_url, read_timeout=0.2)
    try:
        return await failure(bot.initialize())  # getMe
    finally:
        await bot.shutdown()


async def _refused(_: FakeTelegram) -> TelegramError:
    bot = checked_bot(f"http://127.0.0.1:{unused_port()}/bot")
    try:
        return await failure(bot.initialize())  # getMe
    finally:
        await bot.shutdown()


async def _bad_url(_: FakeTelegram) -> TelegramError:
    # aiohttp's InvalidUrlClientError says the whole URL, token and all.
    bot = checked_bot("http://127.0.0.1:99999/bot")
    try:
        return await failure(bot.initialize())  # getMe
    finally:
        await bot.shutdown()


@pytest.mark.parametrize(
    ("make", "kind", "says"),
    [
        (_refused, NetworkError, "no answer (aiohttp.ClientConnectorError: Connection refused)"),
        (_dropped, NetworkError, "no answer (aiohttp.ServerDisconnectedError)"),
        (_timed_out, TimedOut, "no answer in time (timed out)"),
        (_bad_url, NetworkError, "no answer (aiohttp.InvalidUrlClientError)"),
    ],
    ids=["refused", "dropped", "read-timeout", "bad-url"],
)
async def test_no_answer_says_what_failed_and_never_the_token(
    telegram: FakeTelegram,
    make: Callable[[FakeTelegram], Any],
    kind: type[TelegramError],
    says: str,
) -> None:
    exc = await make(telegram)

    assert type(exc) is kind and not answered(exc)
    assert describe(exc) == says
    # The URL holds the token: not in the message, nor in any chained error or traceback.
    told = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    assert not [t for t in told if SECRET in t], told
    assert exc.__cause__ is None and exc.__suppress_context__


async def test_an_album_and_a_document_arrive_byte_for_byte(telegram: FakeTelegram) -> None:
    photos = [os.urandom(300_000 + i) for i in range(3)]
    paper = os.urandom(2_000_000)
    bot = checked_bot(telegram.base_url)
    async with bot:
        sent = await bot.send_media_group(
            ADA_ID,
            [
                InputMediaPhoto(p, caption="Série №1 & co=2" if not i else None)
                for i, p in enumerate(photos)
            ],
        )
        doc = await bot.send_document(ADA_ID, paper, filename="épisode 1.png", caption="a\nb+c%20")
        await bot.send_media_group(
            ADA_ID, [InputMediaDocument(p, filename=f"part {i}.jpg") for i, p in enumerate(photos)]
        )

    album, document, files = (c for c in telegram.calls if c.method != "getMe")
    assert sorted(hashlib.sha256(b).hexdigest() for b in album.files.values()) == sorted(
        hashlib.sha256(p).hexdigest() for p in photos
    )
    assert album.params["media"][0]["caption"] == "Série №1 & co=2"
    assert len(sent) == 3
    assert list(document.files.values()) == [paper]
    assert document.params["caption"] == "a\nb+c%20"
    assert doc.document is not None and doc.document.file_name == "épisode 1.png"
    assert sorted(files.files.values()) == sorted(photos)


async def test_a_plain_call_is_form_encoded_and_arrives_intact(telegram: FakeTelegram) -> None:
    text = "Job #12 & co: 100% = done?\nключ=значение+1"
    bot = checked_bot(telegram.base_url)
    async with bot:
        await bot.send_message(ADA_ID, text)

    (call,) = telegram.calls_to("sendMessage")
    assert call.params["text"] == text and call.files == {}


async def test_a_stalled_upload_times_out_after_the_media_write_timeout(
    silent_server: str,
) -> None:
    # 32 MB: more than the loopback's socket buffers hold, so the writes stop being taken.
    bot = checked_bot(silent_server, write_timeout=30.0, media_write_timeout=0.3)
    started = time.monotonic()
    async with asyncio.timeout(10):
        exc = await failure(bot.send_document(ADA_ID, b"\0" * 32_000_000, filename="x.bin"))
    await bot.request.shutdown()  # the bot was never initialized: its getMe had no answer

    assert isinstance(exc, TimedOut)
    assert time.monotonic() - started < 5.0  # the media write timeout, not the 30 s one


async def test_the_pool_timeout_gives_up_before_sending(telegram: FakeTelegram) -> None:
    telegram.delay_next("getMe", 1.0)
    request = CheckedRequest(connection_pool_size=1, pool_timeout=0.1)
    url = f"{telegram.base_url}{TG_TOKEN}/getMe"
    async with asyncio.timeout(10):
        first = asyncio.create_task(request.post(url))
        await telegram.wait_for(lambda: telegram.faults_pending("getMe") == 0)
        exc = await failure(request.post(url))
        await first
    await request.shutdown()

    assert isinstance(exc, TimedOut) and exc.message.startswith("Pool timeout")
    assert len(telegram.calls_to("getMe")) == 1  # the second was never sent


async def test_a_download_over_the_limit_is_refused_unread(telegram: FakeTelegram) -> None:
    small, big = os.urandom(50_000), os.urandom(150_000)
    small_id, _ = telegram.user_file(small)
    big_id, _ = telegram.user_file(big)
    bot = checked_bot(telegram.base_url, max_answer_bytes=100_000)
    async with bot:
        assert bytes(await (await bot.get_file(small_id)).download_as_bytearray()) == small
        exc = await failure((await bot.get_file(big_id)).download_as_bytearray())

    assert isinstance(exc, AnswerTooBig)
    assert "too big" in exc.message  # what bot/intake.py tells the person (UnusableImage)
    assert answered(exc) and describe(exc) == "HTTP 200: the answer is too big (over 100,000 bytes)"


async def test_a_compressed_answer_is_bounded_as_it_is_read() -> None:
    """No Content-Length to go by (gzip, chunked): the limit holds while reading. A proxy's
    5xx page stays a 5xx (worth retrying)."""

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=502)
        response.enable_compression(web.ContentCoding.gzip)
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"\0" * 100_000)  # compresses to almost nothing
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/file/bot{token}/{path:.+}", big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    request = CheckedRequest(max_answer_bytes=1_000_000)
    try:
        exc = await failure(request.retrieve(f"http://127.0.0.1:{port}/file/bot{TG_TOKEN}/a.jpg"))
    finally:
        await request.shutdown()
        await runner.cleanup()

    assert isinstance(exc, AnswerTooBig) and exc.status == 502
    assert describe(exc) == "HTTP 502: the answer is too big (over 1,000,000 bytes)"
    assert worth_retrying(exc)


async def test_a_redirect_is_an_answer_not_followed(telegram: FakeTelegram) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{telegram.base_url}{TG_TOKEN}/getMe")

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    bot = checked_bot(f"http://127.0.0.1:{runner.addresses[0][1]}/bot")
    try:
        exc = await failure(bot.initialize())  # getMe
    finally:
        await bot.shutdown()
        await runner.cleanup()

    assert isinstance(exc, AnsweredError) and exc.status == 302
    assert telegram.calls_to("getMe") == []


async def test_a_proxy_from_the_environment_carries_the_calls(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured for Telegram, as httpx honoured it: an operator whose Telegram is
    reachable only through a proxy sets it. The proxy (on 127.0.0.2) relays to the fake."""
    relayed: list[str] = []

    async def relay(request: web.Request) -> web.Response:
        target = request.raw_path  # a proxy is asked for the absolute URL
        relayed.append(target)
        async with ClientSession() as session:
            body = await request.read()
            async with session.request(request.method, target, data=body,
                                       headers={"Content-Type": request.content_type}) as answer:  # fmt: skip
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type=answer.content_type)  # fmt: skip

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.2", 0).start()
    try:
        port = runner.addresses[0][1]
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.2:{port}")
        bot = checked_bot(telegram.base_url)
        async with bot:
            assert bot.bot.username
    finally:
        await runner.cleanup()

    # Through the proxy, not around it: asked for the fake's absolute URL.
    assert relayed and relayed[0].startswith(telegram.base_url) and relayed[0].endswith("/getMe")
    assert len(telegram.calls_to("getMe")) == 1


async def test_the_session_opens_on_first_use_and_closes_any_number_of_times(
    telegram: FakeTelegram,
) -> None:
    request = CheckedRequest()
    await request.shutdown()  # nothing open yet: harmless
    url = f"{telegram.base_url}{TG_TOKEN}/getMe"
    assert (await request.post(url))["is_bot"] is True  # opened here, inside the loop
    await request.shutdown()
    await request.shutdown()

    exc = await failure(request.post(url))  # shut down: as python-telegram-bot's own
    assert isinstance(exc, NetworkError) and "not initialized" in exc.message
    await request.initialize()  # and back
    assert (await request.post(url))["is_bot"] is True
    await request.shutdown()


async def test_a_call_given_up_on_frees_its_connection(telegram: FakeTelegram) -> None:
    """A caller's own deadline (bot/intake.py puts one around a download) cancels the request;
    with a pool of one, the next request still goes out at once."""
    telegram.delay_next("getMe", 5.0)
    request = CheckedRequest(connection_pool_size=1, pool_timeout=0.5)
    url = f"{telegram.base_url}{TG_TOKEN}/getMe"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await request.post(url)
    try:
        assert (await request.post(url))["is_bot"] is True
    finally:
        await request.shutdown()
