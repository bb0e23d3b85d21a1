"""Fixtures: the two loopback fakes, settings pointing at them, and the real Application."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx._transports.default
import pytest

from bot.app import allowed_updates, build_application
from bot.config import Settings
from bot.context import Services
from bot.jobs import JobRunner
from bot.store import Store
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram

# As `python -m bot` does (bot/__main__.py) for the bots the tests run in this process: durations
# from python-telegram-bot as timedelta, so a flood wait raises no deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "1")

# Every httpx client loads the CA bundle into a new SSL context: some 20 ms of CPU, several times
# for each bot a test starts, a third of the suite's CPU time. The tests speak plain http on
# loopback only, so they all share one such context, made the way httpx makes it.
_create_ssl_context = httpx.create_ssl_context
_SSL_CONTEXT = _create_ssl_context()


def _shared_ssl_context(
    verify: Any = True, cert: Any = None, trust_env: bool = True
) -> ssl.SSLContext:
    if verify is True and cert is None:
        return _SSL_CONTEXT
    return _create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


httpx.create_ssl_context = _shared_ssl_context  # type: ignore[assignment]
httpx._transports.default.create_ssl_context = _shared_ssl_context  # type: ignore[assignment]

TG_TOKEN = "7012345678:fake-test-token-0123456789"
RC_TOKEN = "rc-test-token-abcdef"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TG_TOKEN) as fake:
        yield fake


# Nothing that reaches RunComfy may carry the bot token or a Telegram file URL (which holds it):
# the fake records an error for any request that does, and assert_clean fails on it.
FORBIDDEN_AT_RUNCOMFY = (TG_TOKEN, TG_TOKEN.partition(":")[2], "/file/bot")


@pytest.fixture
async def runcomfy() -> AsyncIterator[FakeRunComfy]:
    async with FakeRunComfy(token=RC_TOKEN, forbidden=FORBIDDEN_AT_RUNCOMFY) as fake:
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
        # A private chat's own pace (1 a second by default) would make most tests wait on it;
        # tests/test_flood.py runs it at its real shape, faster.
        "PRIVATE_CHAT_MESSAGE_INTERVAL_SECONDS": "0.001",
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
            poll_interval=0.0, timeout=1, allowed_updates=allowed_updates(self.settings)
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


B = TypeVar("B", bound=RunningBot)


class Bots:
    """Real bots for one test; the ``bots`` fixture stops every one still running at teardown.

    ``await bots.start(DAILY_IMAGE_LIMIT_PER_USER="4")`` starts a bot with the test's environment
    and those settings on top. ``await bots.stop(bot)`` stops one at once, for a restart: the next
    ``start()`` has the same settings, so it opens the same database and resumes its jobs.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: list[RunningBot] = []

    async def start(self, **extra: str) -> RunningBot:
        return await self.run(RunningBot(Settings.from_env({**self.env, **extra})))

    async def run(self, bot: B) -> B:
        """Start a bot made elsewhere (another way of receiving updates, say)."""
        await bot.start()
        self.running.append(bot)
        return bot

    async def stop(self, bot: RunningBot | None = None) -> None:
        """Stop ``bot`` (or every running one), as SIGTERM stops ``python -m bot``."""
        for running in [bot] if bot is not None else self.running[::-1]:
            self.running.remove(running)
            await running.stop()


@pytest.fixture
async def bots(env: dict[str, str]) -> AsyncIterator[Bots]:
    started = Bots(env)
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def bot(bots: Bots) -> RunningBot:
    """A bot started with the test's environment, stopped at teardown."""
    return await bots.start()
