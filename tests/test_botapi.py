"""``bot.botapi``: what python-telegram-bot leaves vague (a 500 or no answer? a page or JSON?)
is told apart, against the loopback fake Telegram."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from bot.botapi import (
    AnsweredError,
    CheckedBot,
    CheckedRequest,
    UnreadableAnswer,
    answered,
    describe,
    worth_retrying,
)
from tests.conftest import TG_TOKEN
from tests.fakes.telegram_api import FakeTelegram
from tests.test_startup import unused_port


@pytest.fixture
async def checked(telegram: FakeTelegram) -> AsyncIterator[CheckedBot]:
    bot = CheckedBot(TG_TOKEN, base_url=telegram.base_url, request=CheckedRequest())
    async with bot:
        yield bot


async def failure(call: Any) -> TelegramError:
    with pytest.raises(TelegramError) as raised:
        await call
    return raised.value


@pytest.mark.parametrize(
    ("answer", "status", "kind", "says", "retry"),
    [
        ({"ok": False, "error_code": 500, "description": "Internal Server Error"}, 500,
         AnsweredError, "HTTP 500: Internal Server Error", True),
        ("<html><h1>502 Bad Gateway</h1></html>", 502, AnsweredError, "HTTP 502: Bad Gateway",
         True),
        ({"ok": False, "error_code": 400, "description": "Bad Request: BOT_COMMAND_INVALID"}, 400,
         BadRequest, "HTTP 400: Bad Request: BOT_COMMAND_INVALID", False),
        ({"ok": False, "error_code": 413, "description": "Request Entity Too Large"}, 413,
         AnsweredError, "HTTP 413: Request Entity Too Large", False),
        ({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
          "parameters": {"retry_after": 7}}, 429, RetryAfter,
         "HTTP 429: flood control, retry after 7 s", True),
        ("<html>Welcome to nginx!</html>", 200, UnreadableAnswer,
         "an answer that is not the Bot API's (the answer is not JSON)", False),
        ({"ok": True}, 200, UnreadableAnswer,
         "an answer that is not the Bot API's (the answer has no result)", False),
    ],
    ids=["500", "502-page", "400", "413", "429", "200-page", "200-no-result"],
)  # fmt: skip
async def test_each_answer_is_told_apart_and_described(
    telegram: FakeTelegram,
    checked: CheckedBot,
    answer: Any,
    status: int,
    kind: type[TelegramError],
    says: str,
    retry: bool,
) -> None:
    telegram.answer_raw_next("setMyCommands", answer, status=status)
    exc = await failure(checked.set_my_commands([("help", "How to use the bot")]))

    assert isinstance(exc, kind)
    assert answered(exc)
    assert describe(exc) == says
    assert worth_retrying(exc) is retry
    if isinstance(exc, AnsweredError):
        assert isinstance(exc, NetworkError)  # retried wherever a NetworkError was before
    if isinstance(exc, BadRequest):
        assert exc.message == "Bot_command_invalid"  # python-telegram-bot's own, unchanged


@pytest.mark.parametrize(
    "result",
    [["SeqImageBot"], {"id": "7012345678", "is_bot": True, "first_name": "S", "username": "S"},
     {"id": 7012345678, "is_bot": True, "first_name": "Seq Images"}],
    ids=["a-list", "a-string-id", "no-username"],
)  # fmt: skip
async def test_a_get_me_that_is_not_a_bot_is_unreadable_not_a_crash(
    telegram: FakeTelegram, result: Any
) -> None:
    telegram.answer_raw_next("getMe", {"ok": True, "result": result})
    bot = CheckedBot(TG_TOKEN, base_url=telegram.base_url, request=CheckedRequest())
    exc = await failure(bot.initialize())

    assert isinstance(exc, UnreadableAnswer)
    assert describe(exc).startswith("an answer that is not the Bot API's (getMe answered, but ")
    await bot.shutdown()


async def test_no_answer_is_not_an_answer() -> None:
    bot = CheckedBot(
        TG_TOKEN, base_url=f"http://127.0.0.1:{unused_port()}/bot", request=CheckedRequest()
    )
    exc = await failure(bot.initialize())

    assert not answered(exc) and worth_retrying(exc)
    assert describe(exc).startswith("no answer (aiohttp.ClientConnectorError: Connection refused")
    assert TG_TOKEN.partition(":")[2] not in describe(exc)
    await bot.shutdown()
