"""The typed context: handlers reach the runner, store and settings as attributes.

As in python-telegram-bot's ``contexttypesbot.py`` example, ``build_application`` passes
``ContextTypes(context=BotContext, bot_data=Services)``: the Application's ``bot_data`` is one
:class:`Services` instead of a dict with string keys, and every handler gets a :class:`BotContext`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from telegram.ext import CallbackContext, ExtBot

if TYPE_CHECKING:
    from bot.cast_handlers import CastDesk
    from bot.config import Settings
    from bot.downloads import Downloader
    from bot.intake import Intake
    from bot.jobs import JobRunner
    from bot.metrics import MetricsServer
    from bot.permissions import Permissions
    from bot.repeats import Repeats
    from bot.runcomfy import RunComfyClient
    from bot.store import Store
    from bot.story import Story
    from bot.web.server import WebServer
    from bot.web.studio.actions import StudioActions

_T = TypeVar("_T")


class Services:
    """The bot's long-lived objects: the Application's ``bot_data``.

    python-telegram-bot creates it empty with the Application; ``build_application`` sets the
    settings, ``post_init`` the rest, and ``post_stop``/``post_shutdown`` close what is there.
    """

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.store: Store | None = None
        self.client: RunComfyClient | None = None
        self.downloader: Downloader | None = None
        self.runner: JobRunner | None = None
        self.permissions: Permissions | None = None
        self.heartbeat: asyncio.Task[None] | None = None
        self.menu: asyncio.Task[bool] | None = None  # the command menu, set in the background
        self.metrics: MetricsServer | None = None  # with METRICS_PORT only
        self.repeats: Repeats | None = None
        self.web: WebServer | None = None  # webhook mode or PUBLIC_URL: the bot's web server
        self.intake: Intake | None = None  # reference images in (photos, files, albums)
        self.studio: StudioActions | None = None  # with PUBLIC_URL: the studio's actions
        self.cast: CastDesk | None = None  # saved characters (/cast)
        self.story: Story | None = None  # ➡️ Continue and ✏️ Redo


def _ready(value: _T | None, name: str) -> _T:
    if value is None:
        raise RuntimeError(f"no {name} yet: handlers run only after post_init")
    return value


class BotContext(CallbackContext[ExtBot[Any], dict[Any, Any], dict[Any, Any], Services]):
    """What every handler gets: python-telegram-bot's context plus the services, typed."""

    @property
    def settings(self) -> Settings:
        """The settings the bot was started with."""
        return _ready(self.bot_data.settings, "settings")

    @property
    def runner(self) -> JobRunner:
        """The JobRunner created at start-up."""
        return _ready(self.bot_data.runner, "runner")

    @property
    def store(self) -> Store:
        """The job database."""
        return _ready(self.bot_data.store, "store")

    @property
    def intake(self) -> Intake:
        """Reference images in: albums collected, files fetched and cleaned."""
        return _ready(self.bot_data.intake, "intake")

    @property
    def cast(self) -> CastDesk:
        """Saved characters: /cast and its buttons."""
        return _ready(self.bot_data.cast, "cast")

    @property
    def story(self) -> Story:
        """➡️ Continue and ✏️ Redo: a job's next episode, a panel's new version."""
        return _ready(self.bot_data.story, "story")

    @property
    def repeats(self) -> Repeats:
        """What was just answered: repeats of /show and ℹ️ Details, outsiders' refusals."""
        return _ready(self.bot_data.repeats, "repeats")

    @property
    def permissions(self) -> Permissions:
        """Who may cancel a job or change a chat's defaults."""
        return _ready(self.bot_data.permissions, "permissions")
