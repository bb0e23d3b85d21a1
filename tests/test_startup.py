"""Start-up of the real ``python -m bot``: a rejected token, a Telegram that is not there yet."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import REJECTED_MESSAGE
from tests.conftest import RC_TOKEN, TG_TOKEN
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.test_process import READY, BotProcess

WAITING = "Telegram did not answer getMe"


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:  # noqa: ASYNC109
    """Re-check ``predicate`` every 20 ms; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"still not true after {timeout}s"
        await asyncio.sleep(0.02)
    return value


def unused_port() -> int:
    """A loopback port where nothing listens (until a test starts something there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_env(tmp_path: Path, telegram_url: str, runcomfy_url: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TG_TOKEN,
        "RUNCOMFY_API_TOKEN": RC_TOKEN,
        "TELEGRAM_API_BASE_URL": telegram_url,
        "RUNCOMFY_API_BASE_URL": runcomfy_url,
        "DATABASE_PATH": str(tmp_path / "data" / "seqbot.sqlite3"),
        "POLL_INTERVAL_SECONDS": "0.05",  # start-up retries: 0.025 s, doubling up to 1.5 s
        "HTTP_TIMEOUT_SECONDS": "5",
        "LOG_LEVEL": "DEBUG",
    }


def assert_no_secrets(output: str, *tokens: str) -> None:
    assert RC_TOKEN not in output
    for token in tokens:
        assert token not in output
        assert token.partition(":")[2] not in output  # the secret half on its own


@pytest.mark.parametrize("status", [401, 404])
async def test_a_rejected_token_is_one_line_without_the_token(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path, status: int
) -> None:
    # 401: a revoked token; 404: a malformed one, or a TELEGRAM_API_BASE_URL with a typo.
    telegram.wrong_token_status = status
    wrong = "7012345678:revoked-secret-half-0123456789"
    env = start_env(tmp_path, telegram.base_url, runcomfy.base_url)
    bot = await BotProcess({**env, "TELEGRAM_BOT_TOKEN": wrong}, tmp_path / "bot.log").spawn()

    assert await bot.wait() == 2
    output = bot.output()
    assert REJECTED_MESSAGE in output.splitlines()
    assert "Traceback" not in output
    assert_no_secrets(output, wrong, TG_TOKEN)
    assert len(telegram.calls_to("getMe")) == 1  # fatal at once: waiting would not help


async def test_a_base_url_to_another_server_is_one_line_without_the_token(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    # A path nothing serves: a plain-text 404 (not Telegram's JSON), as a proxy would answer.
    typo = telegram.base_url.removesuffix("/bot") + "/api/bot"
    env = start_env(tmp_path, typo, runcomfy.base_url)
    bot = await BotProcess({**env, "LOG_LEVEL": "INFO"}, tmp_path / "bot.log").spawn()

    assert await bot.wait() == 2
    output = bot.output()
    assert REJECTED_MESSAGE in output.splitlines()
    assert "Traceback" not in output and "ERROR" not in output
    assert_no_secrets(output, TG_TOKEN)


async def test_telegram_unreachable_at_start_up_is_waited_out(
    runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    port = unused_port()
    env = start_env(tmp_path, f"http://127.0.0.1:{port}/bot", runcomfy.base_url)
    bot = await BotProcess(env, tmp_path / "bot.log").spawn()
    telegram = FakeTelegram(token=TG_TOKEN)
    try:
        await until(lambda: bot.output().count(WAITING) >= 3 or bot.exited())
        assert not bot.exited(), bot.output()
        await telegram.start(port)  # Telegram is back
        await telegram.wait_for(lambda: READY in bot.output() or bot.exited(), timeout=30)
        telegram.send_text("/help")
        await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
        bot.terminate()
        assert await bot.wait() == 0
    finally:
        if not bot.exited():
            bot.kill()
        await telegram.stop()

    output = bot.output()
    waits = [line for line in output.splitlines() if WAITING in line]
    assert len(waits) >= 3
    assert all(" WARNING bot.app: " in line for line in waits)
    assert "Telegram answered getMe after" in output
    assert "Traceback" not in output
    assert_no_secrets(output, TG_TOKEN)


async def test_sigterm_while_waiting_for_telegram_stops_at_once(
    runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    env = start_env(tmp_path, f"http://127.0.0.1:{unused_port()}/bot", runcomfy.base_url)
    bot = await BotProcess(env, tmp_path / "bot.log").spawn()
    await until(lambda: WAITING in bot.output() or bot.exited())
    stopped = time.monotonic()
    bot.terminate()
    assert await bot.wait() == 0
    assert time.monotonic() - stopped < 5
    assert "Traceback" not in bot.output()


async def test_plain_http_off_this_machine_is_warned_about(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    # RunComfy is not called without jobs: the name (.invalid never resolves) is never looked up.
    local = telegram.base_url.replace("127.0.0.1", "localhost")
    env = start_env(tmp_path, local, "http://runcomfy.invalid:8080")
    bot = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    bot.terminate()
    assert await bot.wait() == 0

    warnings = [line for line in bot.output().splitlines() if "plain http://" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0] and "RUNCOMFY_API_BASE_URL" in warnings[0]
    assert "runcomfy.invalid" in warnings[0]


async def test_webhook_mode_process_starts_answers_and_stops_during_set_webhook(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    port = unused_port()
    secret = "webhook-secret-0123456789"
    env = start_env(tmp_path, telegram.base_url, runcomfy.base_url)
    env.update(
        WEBHOOK_URL="https://bot.example.org/hook",
        WEBHOOK_SECRET=secret,
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT=str(port),
    )
    telegram.delay_next("setWebhook", 10.0)
    starting = await BotProcess(env, tmp_path / "bot.log").spawn()
    await telegram.wait_for(lambda: telegram.faults_pending("setWebhook") == 0, timeout=30)
    starting.terminate()
    assert await starting.wait() == 0
    assert "Traceback" not in starting.output()

    bot = await BotProcess(env, tmp_path / "bot.log").spawn()
    await telegram.wait_for(lambda: READY in bot.output() or bot.exited(), timeout=30)
    assert telegram.webhook["secret_token"] == secret
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"http://127.0.0.1:{port}/hook",
            json=telegram.send_text("/help", push=False),
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
    assert answer.status_code == 200
    await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    bot.terminate()
    assert await bot.wait() == 0
    output = bot.output()
    assert "Traceback" not in output
    assert_no_secrets(output, TG_TOKEN)
    assert secret not in output
    assert telegram.calls_to("getUpdates") == []
