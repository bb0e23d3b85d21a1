"""The typed context: bot_data is one Services object, handlers get a BotContext."""

from __future__ import annotations

import pytest

from bot.app import build_application
from bot.config import Settings
from bot.context import BotContext, Services
from tests.conftest import RunningBot


def test_build_application_uses_the_typed_context(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    app = build_application(settings)
    assert app.context_types.context is BotContext
    assert isinstance(app.bot_data, Services)
    assert app.bot_data.settings is settings
    context = BotContext(application=app)
    assert context.settings is settings
    # The rest exists only once post_init has run: a clear error, not a KeyError or a None.
    for name in ("runner", "store", "permissions"):
        with pytest.raises(RuntimeError, match=f"no {name} yet"):
            getattr(context, name)


async def test_handlers_reach_the_services_as_attributes(bot: RunningBot) -> None:
    context = BotContext(application=bot.app)
    services = bot.services
    assert context.runner is services.runner is bot.runner
    assert context.store is services.store is bot.store
    assert context.permissions is services.permissions
    assert services.client is not None and services.downloader is not None
    assert services.heartbeat is not None and not services.heartbeat.done()
