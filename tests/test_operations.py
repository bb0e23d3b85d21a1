"""Running it for real: webhook mode, doctor, health check, backup, JSON logs, Docker files."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from bot import doctor
from bot.__main__ import main as cli
from bot.app import receive_updates as start_receiving
from bot.config import Settings
from bot.logs import JsonFormatter
from bot.web.server import WebServer
from bot.web.webhook import MAX_BODY_BYTES
from tests.conftest import RC_TOKEN, TG_TOKEN, Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    until_final,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "webhook-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebhookBot(RunningBot):
    """The real Application receiving updates on its webhook server, as ``python -m bot`` does."""

    server: WebServer | None = None

    async def receive_updates(self) -> None:
        """The webhook server and setWebhook, as ``python -m bot`` does."""
        self.server = await start_receiving(self.app, self.settings)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop_updates()  # as ``python -m bot`` stops: updates first
        await super().stop()


@pytest.fixture
async def webhook_bot(env: dict[str, str], bots: Bots) -> WebhookBot:
    port = free_port()
    settings = Settings.from_env(
        {
            **env,
            "WEBHOOK_URL": "https://bot.example.org/seqbot-hook",
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_LISTEN": "127.0.0.1",
            "WEBHOOK_PORT": str(port),
        }
    )
    return await bots.run(WebhookBot(settings))


async def test_webhook_accepts_the_right_secret_and_refuses_others(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, webhook_bot: WebhookBot
) -> None:
    (hook,) = telegram.calls_to("setWebhook", ok_only=True)
    assert hook.params["url"] == "https://bot.example.org/seqbot-hook"
    assert hook.params["secret_token"] == SECRET
    url = f"http://127.0.0.1:{webhook_bot.settings.webhook_port}/seqbot-hook"

    async with httpx.AsyncClient() as client:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret-0123456789"}):
            update = telegram.send_text("/seq 2 a fox", push=False)
            refused = await client.post(url, json=update, headers=headers)
            assert refused.status_code == 403
        update = telegram.send_text("/seq 2 a fox", push=False)
        accepted = await client.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        )
        assert accepted.status_code == 200

    job = await until_final(telegram, webhook_bot)
    assert job.message_id == update["message"]["message_id"]
    assert len(telegram.delivered_media) == 2
    assert runcomfy.count("submit") == 1  # the refused requests processed nothing
    assert telegram.calls_to("getUpdates") == []


async def test_webhook_compares_the_secret_in_constant_time(
    telegram: FakeTelegram, webhook_bot: WebhookBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", spy)
    url = f"http://127.0.0.1:{webhook_bot.settings.webhook_port}/seqbot-hook"
    async with httpx.AsyncClient() as client:
        for secret, status in (("webhook-secret-0123456780", 403), (SECRET, 200)):
            update = telegram.send_text("/help", push=False)
            answer = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
            )
            assert answer.status_code == status
        # An update that cannot be read is skipped, not refused: Telegram would resend it forever.
        broken = await client.post(
            url,
            content=b"{not json",
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"},
        )
        assert broken.status_code == 200
    assert (b"webhook-secret-0123456780", SECRET.encode()) in compared
    assert (SECRET.encode(), SECRET.encode()) in compared
    await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    assert len(telegram.calls_to("sendMessage")) == 1  # /help, once


async def test_webhook_refuses_a_huge_body_before_reading_it(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, webhook_bot: WebhookBot
) -> None:
    url = f"http://127.0.0.1:{webhook_bot.settings.webhook_port}/seqbot-hook"
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    huge = telegram.send_text("/seq 2 a huge fox", push=False)
    body = json.dumps(huge).encode() + b" " * (2 * MAX_BODY_BYTES)  # still valid JSON
    async with httpx.AsyncClient() as client:
        try:
            refused = await client.post(url, content=body, headers=headers)
        except httpx.TransportError:
            pass  # the server closed the connection while the body was still being sent
        else:
            assert refused.status_code == 400
        update = telegram.send_text("/seq 2 a fox", push=False)
        accepted = await client.post(url, content=json.dumps(update).encode(), headers=headers)
        assert accepted.status_code == 200

    job = await until_final(telegram, webhook_bot)
    assert job.message_id == update["message"]["message_id"]
    assert webhook_bot.store.get(2) is None  # the huge update made no job
    assert runcomfy.count("submit") == 1


def test_webhook_needs_a_secret_and_https() -> None:
    base = {"TELEGRAM_BOT_TOKEN": TG_TOKEN, "RUNCOMFY_API_TOKEN": RC_TOKEN}
    with pytest.raises(Exception, match="WEBHOOK_SECRET is required"):
        Settings.from_env({**base, "WEBHOOK_URL": "https://x.org/hook"})
    with pytest.raises(Exception, match="WEBHOOK_URL must be a public https:// URL"):
        Settings.from_env({**base, "WEBHOOK_URL": "http://x.org/hook", "WEBHOOK_SECRET": SECRET})
    with pytest.raises(Exception, match="WEBHOOK_SECRET must be"):
        Settings.from_env({**base, "WEBHOOK_URL": "https://x.org/hook", "WEBHOOK_SECRET": "short"})


async def test_doctor_passes_against_working_services(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, env: dict[str, str]
) -> None:
    checks = await doctor.diagnose(env)
    assert [(c.name, c.ok) for c in checks] == [
        ("Configuration", True),
        ("Telegram", True),
        ("RunComfy", True),
        ("Database", True),
    ]
    assert "@SeqImageBot" in checks[1].detail
    assert "privacy mode on" in checks[1].detail
    assert runcomfy.count("submit") == 0  # nothing billable


async def test_doctor_names_each_failure(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    checks = await doctor.diagnose(
        {
            **env,
            "TELEGRAM_BOT_TOKEN": "7012345678:another-fake-token-000000",
            "RUNCOMFY_API_TOKEN": "wrong",
            "DATABASE_PATH": str(blocker / "seqbot.sqlite3"),
        }
    )
    failed = {c.name: c.detail for c in checks if not c.ok}
    assert set(failed) == {"Telegram", "RunComfy", "Database"}
    assert "token was rejected" in failed["Telegram"]
    assert "token was rejected" in failed["RunComfy"]
    config = await doctor.diagnose({**env, "POLL_INTERVAL_SECONDS": "soon"})
    assert [(c.name, c.ok) for c in config] == [("Configuration", False)]


async def test_doctor_command_prints_a_checklist_and_exit_code(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, env: dict[str, str], tmp_path: Path
) -> None:
    async def run(extra: dict[str, str]) -> tuple[int, str]:
        base = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_URL"))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "doctor",
            env={**base, **env, **extra, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await run({})
    assert code == 0, out
    assert out.splitlines()[-1] == "All checks passed."
    assert sum(line.startswith("[ok]") for line in out.splitlines()) == 4
    code, out = await run({"RUNCOMFY_API_TOKEN": "wrong"})
    assert code == 1
    assert "[FAIL] RunComfy" in out and "1 check(s) failed." in out
    assert TG_TOKEN not in out and RC_TOKEN not in out


def test_help_lists_subcommands_and_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for word in ("doctor", "healthcheck", "backup", "TELEGRAM_BOT_TOKEN", "WEBHOOK_SECRET"):
        assert word in text


async def test_running_bot_keeps_a_heartbeat_for_the_health_check(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    health = bot.settings.health_file
    await asyncio.wait_for(_exists(health), 5)
    assert cli(["healthcheck"]) == 0
    stale = time.time() - 600
    os.utime(health, (stale, stale))
    assert cli(["healthcheck"]) == 1
    health.unlink()
    assert cli(["healthcheck"]) == 1


async def _exists(path: Path) -> None:
    while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110 - a file has no event
        await asyncio.sleep(0.02)


async def test_backup_copies_the_database(
    telegram: FakeTelegram,
    bot: RunningBot,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telegram.send_text("/seq 2 a fox")
    await until_final(telegram, bot)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    target = tmp_path / "backup.sqlite3"
    umask = os.umask(0o022)  # the usual umask: files readable by everyone unless we say so
    try:
        assert cli(["backup", str(target)]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT count(*), max(status) FROM jobs").fetchone() == (1, "done")


def test_json_log_lines_are_json_and_redacted() -> None:
    formatter = JsonFormatter("%(message)s", [TG_TOKEN])
    record = logging.LogRecord("bot.jobs", logging.INFO, __file__, 1, "url %s", (TG_TOKEN,), None)
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "INFO" and entry["logger"] == "bot.jobs"
    assert entry["message"] == "url [REDACTED]"
    assert entry["time"].endswith("Z")


def test_compose_file_uses_env_file_and_a_named_volume() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["seqbot"]
    assert service["env_file"] == ".env"
    volume, target = service["volumes"][0].split(":")
    assert target == "/data" and volume in compose["volumes"]
    assert service["environment"]["DATABASE_PATH"].startswith("/data/")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "bot", "healthcheck"]' in dockerfile
    assert "USER seqbot" in dockerfile and 'CMD ["python", "-m", "bot"]' in dockerfile
