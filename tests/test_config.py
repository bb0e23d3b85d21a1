"""Settings, start-up errors, the store's schema, and secrets kept out of logs."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot import schema
from bot.__main__ import CONFIGURATION
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import RedactingFormatter
from bot.store import Store

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"TELEGRAM_BOT_TOKEN": "7012345678:fake-test-token-0123456789", "RUNCOMFY_API_TOKEN": "rc"}


def test_defaults() -> None:
    s = Settings.from_env(GOOD)
    assert s.telegram_api_base_url == "https://api.telegram.org/bot"
    assert s.telegram_file_base_url == "https://api.telegram.org/file/bot"
    assert s.runcomfy_api_base_url == "https://model-api.runcomfy.net"
    assert s.database_path == Path("data/seqbot.sqlite3")
    assert (s.poll_interval, s.job_deadline, s.log_level) == (2.0, 1800.0, "INFO")
    assert "fake-test-token" not in repr(s) and "'rc'" not in repr(s)


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"TELEGRAM_BOT_TOKEN": ""}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "TELEGRAM_BOT_TOKEN"),
        ({"RUNCOMFY_API_TOKEN": " "}, "RUNCOMFY_API_TOKEN"),
        ({"POLL_INTERVAL_SECONDS": "fast"}, "POLL_INTERVAL_SECONDS"),
        ({"POLL_INTERVAL_SECONDS": "0"}, "POLL_INTERVAL_SECONDS"),
        ({"JOB_DEADLINE_SECONDS": "-5"}, "JOB_DEADLINE_SECONDS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"CAST_MAX_PER_PERSON": "101"}, "CAST_MAX_PER_PERSON"),
        ({"CAST_MAX_PER_PERSON": "-1"}, "CAST_MAX_PER_PERSON"),
        ({"RUNCOMFY_API_BASE_URL": "model-api.runcomfy.net"}, "RUNCOMFY_API_BASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(changes: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**GOOD, **changes})
    assert info.value.variable == variable


def run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_URL"))}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_token_exits_2_with_one_line(tmp_path: Path) -> None:
    done = run_bot({"RUNCOMFY_API_TOKEN": "rc"}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "seqbot: configuration error: TELEGRAM_BOT_TOKEN is not set (get one from @BotFather)"
    ]


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "TELEGRAM_BOT_TOKEN=7012345678:fake-test-token-0123456789\n"
        "RUNCOMFY_API_TOKEN=rc\nPOLL_INTERVAL_SECONDS=abc\n"
    )
    done = run_bot({"POLL_INTERVAL_SECONDS": "nope"}, tmp_path)
    assert done.returncode == 2
    assert "POLL_INTERVAL_SECONDS must be a number of seconds (got 'nope')" in done.stderr
    assert "fake-test-token" not in done.stderr


def test_bundled_schema_is_the_published_one() -> None:
    bundled = json.loads((ROOT / "bot" / "input.schema.json").read_text())
    published = json.loads((ROOT / "tests" / "data" / "runcomfy-input.schema.json").read_text())
    assert bundled == published
    assert schema.RATIOS == ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")
    assert schema.SIZE_ALIASES["2560:1440"] == schema.SIZE_ALIASES["16:9"] == "2560:1440 (16:9)"


def test_migrations_build_the_jobs_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "new" / "seqbot.sqlite3")
    columns = store.db.table("jobs").columns_dict
    for name, kind in {
        "id": int, "chat_id": int, "message_id": int, "status": str, "request_id": str,
        "image_urls": str, "delivered": str, "cost": float, "created_at": float,
    }.items():  # fmt: skip
        assert columns[name] is kind
    assert any(
        i.unique and i.columns == ["chat_id", "message_id"] for i in store.db.table("jobs").indexes
    )
    store.close()
    Store(tmp_path / "new" / "seqbot.sqlite3").close()  # re-opening applies nothing twice


def test_secrets_are_redacted_from_log_lines_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", ["s3cret-telegram", "s3cret-rc"])
    try:
        raise RuntimeError("url https://api.telegram.org/bots3cret-telegram/getMe")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "token %s", ("s3cret-rc",), (type(exc), exc, None)
        )
    text = formatter.format(record)
    assert "s3cret" not in text and text.count("[REDACTED]") == 2


def test_database_and_its_folder_are_for_the_owner_only(tmp_path: Path) -> None:
    umask = os.umask(0o022)  # the usual umask: files readable by everyone unless we say so
    try:
        store = Store(tmp_path / "data" / "seqbot.sqlite3")
        try:
            files = [tmp_path / "data" / f"seqbot.sqlite3{end}" for end in ("", "-wal", "-shm")]
            assert all(f.exists() for f in files)
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
        finally:
            store.close()
    finally:
        os.umask(umask)


@pytest.mark.parametrize(
    ("telegram_url", "runcomfy_url", "warned"),
    [
        ("https://api.telegram.org/bot", "https://model-api.runcomfy.net", []),
        ("http://127.0.0.1:8081/bot", "http://localhost:9000", []),
        ("http://[::1]:8081/bot", "http://127.0.0.2", []),
        ("http://telegram-bot-api:8081/bot", "https://model-api.runcomfy.net", ["TELEGRAM"]),
        ("https://api.telegram.org/bot", "http://runcomfy.invalid", ["RUNCOMFY"]),
    ],
)
def test_plain_http_urls_off_this_machine_are_named(
    telegram_url: str, runcomfy_url: str, warned: list[str]
) -> None:
    settings = Settings.from_env(
        {**GOOD, "TELEGRAM_API_BASE_URL": telegram_url, "RUNCOMFY_API_BASE_URL": runcomfy_url}
    )
    assert [name.split("_")[0] for name, _host in settings.plain_http_urls] == warned


def test_the_bot_tokens_secret_half_is_a_secret_too() -> None:
    assert "fake-test-token-0123456789" in Settings.from_env(GOOD).secrets


class _Recording(dict[str, str]):
    """An environment that remembers every name the settings asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(name)
        return super().get(name, default)


def test_every_setting_is_in_help_env_example_and_readme() -> None:
    env = _Recording(GOOD)
    Settings.from_env(env)
    assert {"TELEGRAM_BOT_TOKEN", "DELIVERY_DEADLINE_SECONDS", "REPEAT_WINDOW_SECONDS"} <= env.asked
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    missing = {
        where: sorted(name for name in env.asked if name not in text)
        for where, text in (
            ("--help", CONFIGURATION),
            (".env.example", example),
            ("README", readme),
        )
    }
    assert missing == {"--help": [], ".env.example": [], "README": []}
