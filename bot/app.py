"""Wiring: the Application, its handlers, and the long-lived clients."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from telegram import BotCommand, Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ExtBot,
    filters,
)
from telegram.request import HTTPXRequest

from bot import handlers, render
from bot.config import Settings
from bot.jobs import JobRunner
from bot.permissions import Permissions
from bot.runcomfy import RunComfyClient
from bot.store import Store
from bot.texts import tr

log = logging.getLogger(__name__)

COMMANDS = {
    "seq": "Make a series of images: /seq 4 16:9 prompt",
    "cancel": "Cancel your latest queued job (or /cancel <job id>)",
    "jobs": "This chat's latest jobs",
    "usage": "Your images and cost today and this month",
    "settings": "This chat's defaults: count, ratio, mode",
    "help": "How to use the bot",
}


def commands(lang: str) -> list[BotCommand]:
    """The command menu in ``lang``."""
    return [BotCommand(name, tr(lang, text)) for name, text in COMMANDS.items()]


ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
HEARTBEAT_SECONDS = 30.0
PRUNE_EVERY_BEATS = 120  # an hour


class PriorityRateLimiter(AIORateLimiter):
    """python-telegram-bot's flood control, with edits yielding to new messages.

    Telegram takes about 30 messages a second in all. When replies and images wait for a slot,
    status edits (progress only) wait until none do, so images are not held up behind them.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sending = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    async def process_request(  # type: ignore[override]
        self, callback: Any, args: Any, kwargs: Any, endpoint: str, data: Any, rate_limit_args: Any
    ) -> Any:
        """Apply the limits; an edit first waits until no other message is waiting."""
        if endpoint.startswith("edit"):
            await self._quiet.wait()
            return await super().process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )
        if "chat_id" not in data:
            return await super().process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )
        self._sending += 1
        self._quiet.clear()
        try:
            return await super().process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )
        finally:
            self._sending -= 1
            if not self._sending:
                self._quiet.set()


class TolerantBot(ExtBot[int]):
    """An ExtBot whose polling survives updates that python-telegram-bot cannot read.

    One malformed update would otherwise fail every getUpdates call from then on (the batch is
    parsed as a whole and the offset never moves). It is replaced by an empty update with the same
    id, so it is confirmed and skipped.
    """

    async def _post(self, endpoint: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        result = await super()._post(endpoint, data, **kwargs)
        if endpoint == "getUpdates" and isinstance(result, list):
            return [self._readable(raw) for raw in result]
        return result

    def _readable(self, raw: Any) -> Any:
        try:
            Update.de_json(raw, self)
        except Exception as exc:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            log.warning("skipping update %s that cannot be read: %s", update_id, exc)
            return {"update_id": update_id} if isinstance(update_id, int) else raw
        return raw


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    """The bot, ready to run; clients open in ``post_init`` and close in ``post_shutdown``."""
    timeout = settings.http_timeout
    bot = TolerantBot(
        token=settings.telegram_token,
        base_url=settings.telegram_api_base_url,
        base_file_url=settings.telegram_file_base_url,
        request=HTTPXRequest(
            connection_pool_size=64,
            connect_timeout=min(timeout, 10.0),
            read_timeout=timeout,
            write_timeout=timeout,
            # Albums of ten multi-MB photos take a while to upload.
            media_write_timeout=max(timeout, 120.0),
        ),
        get_updates_request=HTTPXRequest(connect_timeout=min(timeout, 10.0)),
        rate_limiter=PriorityRateLimiter(max_retries=3),
    )
    app = (
        ApplicationBuilder()
        .bot(bot)
        .concurrent_updates(True)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .build()
    )
    app.bot_data["settings"] = settings
    # An edited /seq must never start a second paid job: only new messages count.
    new_messages = filters.UpdateType.MESSAGE
    app.add_handler(CommandHandler(["start", "help"], handlers.start, filters=new_messages))
    app.add_handler(CommandHandler("seq", handlers.seq, filters=new_messages))
    app.add_handler(CommandHandler("cancel", handlers.cancel_command, filters=new_messages))
    app.add_handler(CommandHandler("jobs", handlers.jobs_command, filters=new_messages))
    app.add_handler(CommandHandler("usage", handlers.usage_command, filters=new_messages))
    app.add_handler(CommandHandler("settings", handlers.settings_command, filters=new_messages))
    app.add_handler(
        CallbackQueryHandler(handlers.cancel_button, pattern=f"^{render.CANCEL_PREFIX}")
    )
    for prefix, handler in (
        (render.AGAIN_PREFIX, handlers.again_button),
        (render.ORIGINALS_PREFIX, handlers.originals_button),
        (render.DETAILS_PREFIX, handlers.details_button),
        (render.SETTINGS_PREFIX, handlers.settings_button),
    ):
        app.add_handler(CallbackQueryHandler(handler, pattern=f"^{prefix}"))
    app.add_handler(CallbackQueryHandler(handlers.stale_button))
    app.add_error_handler(handlers.on_error)
    return app


def webhook_options(settings: Settings) -> dict[str, Any]:
    """Arguments for ``run_webhook`` / ``Updater.start_webhook`` in webhook mode."""
    return {
        "listen": settings.webhook_listen,
        "port": settings.webhook_port,
        "url_path": settings.webhook_path,
        "webhook_url": settings.webhook_url,
        # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; anything else gets 403.
        "secret_token": settings.webhook_secret,
        "allowed_updates": ALLOWED_UPDATES,
    }


def run(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, by webhook when WEBHOOK_URL is set, else by long polling."""
    app = build_application(settings)
    if settings.webhook_url:
        app.run_webhook(**webhook_options(settings))
    else:
        app.run_polling(allowed_updates=ALLOWED_UPDATES)


async def _heartbeat(path: Path, runner: JobRunner) -> None:
    """Touch ``path`` every so often (a health check reads it); prune old originals hourly."""
    beats = 0
    while True:
        await asyncio.to_thread(path.touch)
        if beats % PRUNE_EVERY_BEATS == 0:
            pruned = await runner.originals.prune()
            if pruned:
                log.info("removed the kept originals of %d old job(s)", pruned)
        beats += 1
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _post_init(app: Application) -> None:  # type: ignore[type-arg]
    settings: Settings = app.bot_data["settings"]
    store = Store(settings.database_path)
    client = RunComfyClient(
        base_url=settings.runcomfy_api_base_url,
        token=settings.runcomfy_token,
        timeout=settings.http_timeout,
        # Retries back off from a fraction of the poll interval, so tests with fast polls stay fast.
        backoff=min(settings.poll_interval / 2, 1.0),
        max_rate=settings.runcomfy_max_rate,
    )
    runner = JobRunner(bot=app.bot, store=store, client=client, settings=settings)
    app.bot_data.update(
        store=store,
        client=client,
        runner=runner,
        permissions=Permissions(app.bot, settings.admin_user_ids),
    )
    await app.bot.set_my_commands(commands("en"))
    await app.bot.set_my_commands(commands("ru"), language_code="ru")
    log.info(
        "seqbot started as @%s; database %s; Telegram API %s; RunComfy API %s; poll every %ss",
        app.bot.username,
        settings.database_path.resolve(),
        settings.telegram_api_base_url,
        settings.runcomfy_api_base_url,
        settings.poll_interval,
    )
    await runner.resume_all()
    app.bot_data["heartbeat"] = asyncio.create_task(_heartbeat(settings.health_file, runner))


async def _post_stop(app: Application) -> None:  # type: ignore[type-arg]
    heartbeat: asyncio.Task[None] | None = app.bot_data.pop("heartbeat", None)
    if heartbeat:
        heartbeat.cancel()
    runner: JobRunner | None = app.bot_data.get("runner")
    if runner:
        await runner.stop()


async def _post_shutdown(app: Application) -> None:  # type: ignore[type-arg]
    client: RunComfyClient | None = app.bot_data.get("client")
    if client:
        await client.aclose()
    store: Store | None = app.bot_data.get("store")
    if store:
        store.close()
    log.info("seqbot stopped; unfinished jobs resume at the next start")
