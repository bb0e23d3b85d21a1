"""Fixtures: the two loopback fakes, settings pointing at them, and the real Application."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.app import ALLOWED_UPDATES, build_application
from bot.config import Settings
from bot.context import Services
from bot.jobs import JobRunner
from bot.store import Store
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram

# As `python -m bot` does (bot/__main__.py) for the bots the tests run in this process: durations
# from python-telegram-bot as timedelta, so a flood wait raises no deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "1")

TG_TOKEN = "7012345678:fake-test-token-0123456789"
RC_TOKEN = "rc-test-token-abcdef"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TG_TOKEN) as fake:
        yield fake


@pytest.fixture
async def runcomfy() -> AsyncIterator[FakeRunComfy]:
    async with FakeRunComfy(token=RC_TOKEN) as fake:
        yield fake


def make_env(tmp_path: Path, telegram: FakeTelegram, runcomfy: FakeRunComfy) -> dict[str, str]:
    """The environment a test bot runs with: fast polls, loopback fakes, a temp database."""
    return {
        "TELEGRAM_BOT_TOKEN": TG_TOKEN,
        "RUNCOMFY_API_TOKEN": RC_TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "RUNCOMFY_API_BASE_URL": runcomfy.base_url,
        "DATABASE_PATH": str(tmp_path / "db" / "seqbot.sqlite3"),
        "POLL_INTERVAL_SECONDS": "0.02",
        "JOB_DEADLINE_SECONDS": "30",
        "HTTP_TIMEOUT_SECONDS": "1",
        "TELEGRAM_RETRY_SECONDS": "0.05",  # after a network error; flood waits are Telegram's own
    }


@pytest.fixture
def env(tmp_path: Path, telegram: FakeTelegram, runcomfy: FakeRunComfy) -> dict[str, str]:
    return make_env(tmp_path, telegram, runcomfy)


class RunningBot:
    """The real Application, started the way ``run_polling`` starts it, hooks included."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = build_application(settings)

    async def start(self) -> RunningBot:
        app = self.app
        await app.initialize()
        assert app.post_init is not None
        await app.post_init(app)
        await self.receive_updates()
        await app.start()
        return self

    async def receive_updates(self) -> None:
        """Long polling, as ``run_polling`` does."""
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            poll_interval=0.0, timeout=1, allowed_updates=ALLOWED_UPDATES
        )

    async def stop(self) -> None:
        app = self.app
        assert app.updater is not None
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        assert app.post_stop is not None and app.post_shutdown is not None
        await app.post_stop(app)
        await app.shutdown()
        await app.post_shutdown(app)

    @property
    def services(self) -> Services:
        """The long-lived objects ``post_init`` made (the Application's typed ``bot_data``)."""
        services: Services = self.app.bot_data
        return services

    @property
    def runner(self) -> JobRunner:
        assert self.services.runner is not None, "the bot has not started"
        return self.services.runner

    @property
    def store(self) -> Store:
        assert self.services.store is not None, "the bot has not started"
        return self.services.store


@pytest.fixture
async def bot(env: dict[str, str]) -> AsyncIterator[RunningBot]:
    running = await RunningBot(Settings.from_env(env)).start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def start_bot(env: dict[str, str]) -> AsyncIterator[Callable[..., Awaitable[RunningBot]]]:
    """Start a bot with extra settings; every bot started is stopped at the end of the test."""
    started: list[RunningBot] = []

    async def start(**extra: str) -> RunningBot:
        bot = await RunningBot(Settings.from_env({**env, **extra})).start()
        started.append(bot)
        return bot

    yield start
    for bot in started:
        await bot.stop()
