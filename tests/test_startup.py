"""Start-up of the real ``python -m bot``: a rejected token, a Telegram that is not there yet."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.startup import REJECTED_MESSAGE
from bot.texts import languages
from tests.conftest import RC_TOKEN, TG_TOKEN, Bots
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.test_process import READY, ROOT, BotProcess

WAITING = "Telegram did not answer getMe"
FOREVER = 10**6
# The default menu (English), then one per language with a catalogue (Russian).
MENUS = 1 + len(languages())


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
    assert all(" WARNING bot.startup: " in line for line in waits)
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


def healthcheck(env: dict[str, str]) -> int:
    """``python -m bot healthcheck`` with the bot's environment: 0 when it is alive."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "healthcheck"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=30,
    ).returncode


def assert_clean_stop(output: str) -> None:
    """No traceback, and no task left pending or unretrieved when the loop closed."""
    for sign in ("Traceback", "Task was destroyed", "never retrieved", "never awaited"):
        assert sign not in output, output


async def test_telegram_failing_the_command_menu_does_not_keep_the_bot_deaf(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    # getMe answers 500 twice (waited for: it decides everything); setMyCommands answers 500 for
    # good (cosmetic: tried again in the background, while updates are handled).
    telegram.fail_next("getMe", status=500, description="Internal Server Error", times=2)
    telegram.fail_next("setMyCommands", status=500, description="Internal Server Error",
                       times=FOREVER)  # fmt: skip
    env = start_env(tmp_path, telegram.base_url, runcomfy.base_url)
    bot = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        telegram.send_text("/help")
        await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
        assert healthcheck(env) == 0  # Docker sees it alive
        await telegram.wait_for(lambda: len(telegram.calls_to("setMyCommands")) >= 3)
        assert telegram.calls_to("setMyCommands", ok_only=True) == []
        stopped = time.monotonic()
        bot.terminate()  # during the background retries
        assert await bot.wait() == 0
        assert time.monotonic() - stopped < 5
    finally:
        if not bot.exited():
            bot.kill()

    output = bot.output()
    lines = output.splitlines()
    got_me = [line for line in lines if "Telegram answered getMe with" in line]
    assert len(got_me) == 2
    assert "HTTP 500: Internal Server Error (try 1)" in got_me[0]
    assert "Telegram answered getMe after 3 tries" in output
    menus = [line for line in lines if "setMyCommands" in line and " WARNING " in line]
    assert len(menus) >= 2
    assert all("Telegram answered setMyCommands with HTTP 500: Internal Server Error" in line
               for line in menus)  # fmt: skip
    assert all("updates are handled meanwhile" in line for line in menus)
    assert "did not answer" not in output  # Telegram did answer, every time
    assert_clean_stop(output)
    assert_no_secrets(output, TG_TOKEN)


async def test_a_command_menu_telegram_refuses_is_logged_once_and_not_retried(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    telegram.fail_next("setMyCommands", description="Bad Request: BOT_COMMAND_INVALID",
                       times=FOREVER)  # fmt: skip
    env = start_env(tmp_path, telegram.base_url, runcomfy.base_url)
    bot = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        refused = "Telegram refused setMyCommands"
        await until(lambda: refused in bot.output(), timeout=10)
        telegram.send_text("/help")
        await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
        # A retry would come after 0.025 s, then 0.05 s, 0.1 s: none comes in ten times that.
        await asyncio.sleep(0.3)
        assert len(telegram.calls_to("setMyCommands")) == 1  # nor the other languages' menus
        bot.terminate()
        assert await bot.wait() == 0
    finally:
        if not bot.exited():
            bot.kill()

    output = bot.output()
    said = [line for line in output.splitlines() if "BOT_COMMAND_INVALID" in line]
    assert len(said) == 1, output
    assert " WARNING bot.startup: Telegram refused setMyCommands: HTTP 400: " in said[0]
    assert "configuration problem" in said[0] and "command menu stays as it was" in said[0]
    assert_clean_stop(output)
    assert_no_secrets(output, TG_TOKEN)


async def test_a_slow_command_menu_neither_delays_start_up_nor_stop(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    telegram.delay_next("setMyCommands", 60.0)  # ends when the fake stops
    env = start_env(tmp_path, telegram.base_url, runcomfy.base_url)
    started = time.monotonic()
    bot = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    assert time.monotonic() - started < 15  # a process start, not the menu's minute
    assert telegram.faults_pending("setMyCommands") == 0  # the call is under way, held
    telegram.send_text("/help")
    await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    stopped = time.monotonic()
    bot.terminate()
    assert await bot.wait() == 0
    assert time.monotonic() - stopped < 5
    assert_clean_stop(bot.output())


async def test_the_menu_is_set_once_telegram_takes_it_and_stop_leaves_no_task(
    telegram: FakeTelegram, bots: Bots
) -> None:
    telegram.fail_server_next("setMyCommands", times=3)  # a proxy's 502 page
    running = await bots.start()  # not held by the menu
    telegram.send_text("/help")
    await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    await telegram.wait_for(lambda: len(telegram.calls_to("setMyCommands", ok_only=True)) == MENUS)
    assert [c["command"] for c in telegram.commands][:2] == ["seq", "cancel"]
    assert running.services.menu is not None and await running.services.menu is True

    await bots.stop(running)
    telegram.fail_next("setMyCommands", status=503, description="Service Unavailable",
                       times=FOREVER)  # fmt: skip
    again = await bots.start()
    await telegram.wait_for(lambda: len(telegram.calls_to("setMyCommands")) >= MENUS + 3 + 2)
    menu = again.services.menu
    assert menu is not None and not menu.done()  # still trying, in the background
    await bots.stop(again)
    assert menu.cancelled() and again.services.menu is None
    assert [t for t in asyncio.all_tasks() if "in_background" in repr(t)] == []


@pytest.mark.parametrize(
    ("body", "why"),
    # (A page instead of JSON takes the same path: tests/test_botapi.py tells the two apart.)
    [({"ok": True, "result": {"id": "SeqImageBot"}}, "the user has no numeric id")],
)
async def test_a_get_me_that_is_not_the_bot_api_is_one_line_and_exit_2(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path, body: object, why: str
) -> None:
    telegram.answer_raw_next("getMe", body)  # type: ignore[arg-type]
    env = start_env(tmp_path, telegram.base_url, runcomfy.base_url)
    bot = await BotProcess({**env, "LOG_LEVEL": "INFO"}, tmp_path / "bot.log").spawn()

    assert await bot.wait() == 2
    output = bot.output()
    (line,) = [line for line in output.splitlines() if line.startswith("seqbot:")]
    assert line.startswith(
        "seqbot: what answered getMe at TELEGRAM_API_BASE_URL is not the Bot API"
    )
    assert why in line and "Check TELEGRAM_API_BASE_URL" in line
    assert "Traceback" not in output and "ERROR" not in output
    assert_no_secrets(output, TG_TOKEN)
    assert len(telegram.calls_to("getMe")) == 1  # fatal at once
