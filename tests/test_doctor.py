"""``python -m bot doctor`` when Telegram answers badly: one [FAIL] line naming the call and how.

The real process where a traceback used to end it; ``doctor.diagnose`` (what it prints, line by
line) for the rest.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot import doctor as doctor_module
from tests.conftest import RC_TOKEN, TG_TOKEN
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.test_process import ROOT
from tests.test_startup import unused_port

BOT = "@SeqImageBot (id 7012345678)"


async def doctor(env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run ``python -m bot doctor``; its exit code and every line it printed (stdout and stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_URL"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "doctor",
        env={**base, **env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert TG_TOKEN not in text and TG_TOKEN.partition(":")[2] not in text and RC_TOKEN not in text
    return proc.returncode or 0, text.splitlines()


def one_failure(lines: list[str]) -> str:
    """The checklist is complete, nothing else was printed, and exactly Telegram failed."""
    assert len(lines) == 5, "\n".join(lines)  # four checks and the summary: no traceback
    assert [line.split(":")[0] for line in lines[:4]] == [
        "[ok]   Configuration",
        "[FAIL] Telegram",
        "[ok]   RunComfy",
        "[ok]   Database",
    ], lines
    assert lines[4] == "1 check(s) failed."
    return lines[1]


async def test_doctor_process_reports_an_unreadable_get_me_in_one_line(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    # python-telegram-bot cannot make a user of this: a TypeError (traceback, exit 1) before.
    telegram.answer_raw_next("getMe", {"ok": True, "result": {"id": 7012345678, "first_name": "S"}})
    code, lines = await doctor(env, tmp_path)

    assert code == 1
    line = one_failure(lines)
    assert line == (
        "[FAIL] Telegram: getMe failed: an answer that is not the Bot API's (getMe answered, but "
        "the user is not a bot); check TELEGRAM_API_BASE_URL (Telegram's is "
        "https://api.telegram.org/bot)"
    )


@pytest.mark.parametrize(
    ("method", "answer", "says"),
    [
        (
            "getMe",
            "<html><body>Welcome to nginx!</body></html>",
            "getMe failed: an answer that is not the Bot API's (the answer is not JSON); "
            "check TELEGRAM_API_BASE_URL",
        ),
        (
            "getWebhookInfo",
            {"ok": False, "error_code": 500, "description": "Internal Server Error"},
            f"{BOT} answered getMe, but getWebhookInfo failed: HTTP 500: Internal Server Error",
        ),
        (
            "getWebhookInfo",
            {"ok": True, "result": "https://bot.example.org/hook"},
            f"{BOT} answered getMe, but getWebhookInfo failed: an answer that is not the Bot "
            "API's (its result could not be read",
        ),
    ],
    ids=["getMe-not-json", "getWebhookInfo-500", "getWebhookInfo-unreadable"],
)
async def test_doctor_names_the_call_that_failed_and_how(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    env: dict[str, str],
    tmp_path: Path,
    method: str,
    answer: Any,
    says: str,
) -> None:
    status = answer.get("error_code", 200) if isinstance(answer, dict) else 200
    telegram.answer_raw_next(method, answer, status=status)
    checks = await doctor_module.diagnose(env)

    line = one_failure([c.line() for c in checks] + ["1 check(s) failed."])
    assert line.startswith(f"[FAIL] Telegram: {says}"), line
    assert "could not reach" not in line  # Telegram did answer
    assert len(telegram.calls_to(method)) == 1


async def test_doctor_says_when_the_bot_api_did_not_answer(
    runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{unused_port()}/bot"
    checks = await doctor_module.diagnose({**env, "TELEGRAM_API_BASE_URL": nowhere})

    line = one_failure([c.line() for c in checks] + ["1 check(s) failed."])
    assert line.startswith(
        "[FAIL] Telegram: getMe failed: no answer (aiohttp.ClientConnectorError: Connection refused"
    ), line
    assert line.endswith(f"; could not reach the Bot API at {nowhere}")
