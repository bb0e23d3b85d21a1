"""Wiring: the Application, its handlers, and the long-lived clients."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegram import BotCommand, MenuButtonWebApp, Update, WebAppInfo
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    PreCheckoutQueryHandler,
    TypeHandler,
    filters,
)

from bot import (
    callbacks,
    cast_handlers,
    handlers,
    metrics,
    outsiders,
    payments,
    render,
    story_handlers,
)
from bot import payment_handlers as pay
from bot.botapi import CheckedRequest, check_result, status_of
from bot.config import Settings
from bot.context import BotContext, Services
from bot.downloads import Downloader
from bot.flood import PriorityRateLimiter
from bot.intake import Intake
from bot.jobs import JobRunner
from bot.permissions import Permissions
from bot.repeats import Repeats
from bot.runcomfy import RunComfyClient
from bot.startup import Call, FatalStartupError, in_background, patiently
from bot.store import Store
from bot.story import Story
from bot.texts import languages, tr
from bot.web.references import load_key, prefix_of
from bot.web.server import References, StudioParts, Webhook, WebServer, write_nonce
from bot.web.studio import static
from bot.web.studio.actions import StudioActions, wire_story
from bot.web.studio.cast import wire_cast
from bot.web.studio.service import Studio

log = logging.getLogger(__name__)

COMMANDS = {
    "seq": "Make a series of images: /seq 4 16:9 prompt",
    "cancel": "Cancel your latest queued job (or /cancel <job id>)",
    "jobs": "This chat's latest jobs",
    "show": "Send a job's images again: /show <job id>",
    "usage": "Your images and cost today and this month",
    "settings": "This chat's defaults: count, ratio, mode",
    "studio": "Your series in a gallery (the studio)",
    "help": "How to use the bot",
}
# Listed only when characters can be used: reference images on (PUBLIC_URL) and
# CAST_MAX_PER_PERSON above 0. /cast itself always answers.
CAST_COMMANDS = {"cast": "Your saved characters: /cast add NAME on a photo"}


# Listed (and handled) only when payments are on (STARS_PACKS).
PAYMENT_COMMANDS = payments.COMMANDS


def commands(
    lang: str, *, payments: bool = False, cast: bool = False, studio: bool = False
) -> list[BotCommand]:
    """The command menu in ``lang`` (with /cast when characters can be used, the payment
    commands when payments are on, /studio when the studio is)."""
    listed = {
        **COMMANDS,
        **(CAST_COMMANDS if cast else {}),
        **(PAYMENT_COMMANDS if payments else {}),
    }
    if not studio:
        del listed["studio"]
    return [BotCommand(name, tr(lang, text)) for name, text in listed.items()]


ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


def allowed_updates(settings: Settings) -> list[str]:
    """The updates to ask Telegram for: checkouts too when payments are on."""
    if settings.payments:
        return [*ALLOWED_UPDATES, Update.PRE_CHECKOUT_QUERY]
    return ALLOWED_UPDATES


HEARTBEAT_SECONDS = 30.0
PRUNE_EVERY_BEATS = 120  # an hour


class TolerantBot(ExtBot[int]):
    """An ExtBot whose polling survives updates that python-telegram-bot cannot read.

    One malformed update would otherwise fail every getUpdates call from then on (the batch is
    parsed as a whole and the offset never moves). It is replaced by an empty update with the same
    id, so it is confirmed and skipped. A getMe that is not a bot raises UnreadableAnswer
    (``botapi.check_result``) instead of a TypeError from deep inside python-telegram-bot.
    """

    async def _post(self, endpoint: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if data:
            _fit_texts(endpoint, data)
        result = await super()._post(endpoint, data, **kwargs)
        check_result(endpoint, result)
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


class CountedRequest(CheckedRequest):
    """python-telegram-bot's HTTP client, counting every request by method and outcome.

    Counted here, below the rate limiter, so a flood wait it retries by itself shows up too.
    """

    async def do_request(self, url: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Send as usual; count the outcome (of the URL, only the method's name is kept)."""
        try:
            code, payload = await super().do_request(url, *args, **kwargs)
        except TelegramError as exc:  # an HTTP error; or no answer: a timeout, a network error
            status = status_of(exc)
            outcome = (
                metrics.telegram_failure(exc) if status is None else metrics.telegram_answer(status)
            )
            metrics.telegram_request(url, outcome)
            raise
        metrics.telegram_request(url, metrics.telegram_answer(code))
        return code, payload


def _fit_texts(endpoint: str, data: dict[str, Any]) -> None:
    """Cut every text and caption to Telegram's limits: the one place that does it.

    Texts carry what users and RunComfy wrote (prompts, error messages); one too long for
    Telegram would make the call fail, and a failed final edit leaves a stale status behind.
    Album captions are made within the limit by ``render.caption``.
    """
    text = data.get("text")
    if isinstance(text, str):
        limit = render.ANSWER_LIMIT if endpoint == "answerCallbackQuery" else render.TEXT_LIMIT
        data["text"] = render.shorten(text, limit)
    caption = data.get("caption")
    if isinstance(caption, str):
        data["caption"] = render.shorten(caption, render.CAPTION_LIMIT)


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    """The bot, ready to run; clients open in ``post_init`` and close in ``post_shutdown``."""
    timeout = settings.http_timeout
    bot = TolerantBot(
        token=settings.telegram_token,
        base_url=settings.telegram_api_base_url,
        base_file_url=settings.telegram_file_base_url,
        request=CountedRequest(
            connection_pool_size=64,
            connect_timeout=min(timeout, 10.0),
            read_timeout=timeout,
            write_timeout=timeout,
            # Albums of ten multi-MB photos take a while to upload.
            media_write_timeout=max(timeout, 120.0),
        ),
        get_updates_request=CountedRequest(connect_timeout=min(timeout, 10.0)),
        rate_limiter=PriorityRateLimiter(
            max_retries=3,
            private_burst=settings.private_chat_burst,
            private_per_second=1.0 / settings.private_chat_interval,
        ),
    )
    app = (
        ApplicationBuilder()
        .bot(bot)
        .context_types(ContextTypes(context=BotContext, bot_data=Services))
        .concurrent_updates(True)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .build()
    )
    app.bot_data.settings = settings
    app.bot_data.repeats = Repeats(settings.repeat_window, settings.outsider_reply_window)
    # Group -2, before everything (/start buy is -1): outsiders get one refusal per chat, at most.
    app.add_handler(TypeHandler(Update, outsiders.gate), group=-2)
    # An edited /seq must never start a second paid job: only new messages count.
    new_messages = filters.UpdateType.MESSAGE
    app.add_handler(CommandHandler(["start", "help"], handlers.start, filters=new_messages))
    app.add_handler(CommandHandler("seq", handlers.seq, filters=new_messages))
    # A photo's or file's "/seq …" is its caption, which CommandHandler never reads; album items
    # come here too, with or without one (a reply to any item takes the whole album).
    media = filters.PHOTO | filters.Document.ALL
    app.add_handler(MessageHandler(new_messages & media, handlers.media))
    app.add_handler(CommandHandler("cancel", handlers.cancel_command, filters=new_messages))
    app.add_handler(CommandHandler("jobs", handlers.jobs_command, filters=new_messages))
    app.add_handler(CommandHandler("show", handlers.show_command, filters=new_messages))
    app.add_handler(CommandHandler("usage", handlers.usage_command, filters=new_messages))
    app.add_handler(CommandHandler("settings", handlers.settings_command, filters=new_messages))
    app.add_handler(CommandHandler("studio", handlers.studio_command, filters=new_messages))
    # The t.me link a group's /studio gives opens the private chat with "/start studio".
    start_studio = new_messages & filters.Regex(r"^/start(@\w+)? studio$")
    app.add_handler(CommandHandler("start", handlers.start_studio, filters=start_studio), group=-1)
    app.add_handler(CommandHandler("cast", cast_handlers.cast_command, filters=new_messages))
    # An answer to ➡️ Continue's or ✏️ Redo's question: a text replying to one of the bot's.
    answers = new_messages & filters.REPLY & filters.TEXT & ~filters.COMMAND
    app.add_handler(MessageHandler(answers, story_handlers.story_reply))
    for action, handler in (
        (callbacks.JobAction.CANCEL, handlers.cancel_button),
        (callbacks.JobAction.AGAIN, handlers.again_button),
        (callbacks.JobAction.ORIGINALS, handlers.originals_button),
        (callbacks.JobAction.SHEET, handlers.sheet_button),
        (callbacks.JobAction.ZIP, handlers.zip_button),
        (callbacks.JobAction.DETAILS, handlers.details_button),
        (callbacks.JobAction.NEXT, story_handlers.continue_button),
        (callbacks.JobAction.REDO, story_handlers.redo_button),
        (callbacks.JobAction.BACK, story_handlers.back_button),
    ):
        app.add_handler(CallbackQueryHandler(handler, pattern=callbacks.job_pattern(action)))
    app.add_handler(
        CallbackQueryHandler(handlers.settings_button, pattern=callbacks.SETTINGS_PATTERN)
    )
    app.add_handler(CallbackQueryHandler(cast_handlers.cast_button, pattern=callbacks.CAST_PATTERN))
    if settings.payments:
        _add_payment_handlers(app)
    # Old formats (another version), forged data: "This button no longer works."
    app.add_handler(CallbackQueryHandler(handlers.stale_button))
    app.add_error_handler(handlers.on_error)
    return app


def _add_payment_handlers(app: Application) -> None:  # type: ignore[type-arg]
    """Telegram Stars: /buy and its buttons, checkout, payments, and the admins' commands."""
    new_messages = filters.UpdateType.MESSAGE
    # The t.me link a group's /buy gives opens the private chat with "/start buy": the packs.
    # Group -1: it runs before /start's help in group 0, and then ends the update's handling.
    start_buy = new_messages & filters.Regex(r"^/start(@\w+)? buy$")
    app.add_handler(CommandHandler("start", pay.start_buy, filters=start_buy), group=-1)
    for name, handler in (
        ("buy", pay.buy_command),
        ("balance", pay.balance_command),
        ("paysupport", pay.paysupport_command),
        ("terms", pay.terms_command),
        ("refund", pay.refund_command),
        ("return_credits", pay.return_credits_command),
    ):
        app.add_handler(CommandHandler(name, handler, filters=new_messages))
    app.add_handler(CallbackQueryHandler(pay.buy_button, pattern=callbacks.BUY_PATTERN))
    # Answered in the handler itself, at once: Telegram waits 10 seconds at most.
    app.add_handler(PreCheckoutQueryHandler(pay.pre_checkout))
    app.add_handler(MessageHandler(filters.SUCCESSFUL_PAYMENT, pay.successful_payment))
    refunded = filters.StatusUpdate.REFUNDED_PAYMENT
    app.add_handler(MessageHandler(refunded, pay.refunded_payment))


def run(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM, by webhook when WEBHOOK_URL is set, else by long polling.

    Returns the exit code: 0 after a stop signal (at any point, start-up included), 2 when
    Telegram rejects the token or what answers getMe is not the Bot API.
    """
    try:
        asyncio.run(serve(settings))
    except FatalStartupError as exc:
        # One line: python-telegram-bot's own message would carry the whole token.
        print(exc.line, file=sys.stderr)
        return 2
    return 0


@dataclass
class _Progress:
    """How far start-up got, so that stopping undoes exactly that."""

    post_init: bool = False
    webhook: WebServer | None = None


async def serve(settings: Settings) -> None:
    """Start the bot, run until SIGINT/SIGTERM, then stop it.

    Like python-telegram-bot's ``run_polling`` (initialize, post_init, updates, start; then the
    reverse), but a signal during any step of start-up cancels that step and stops cleanly, and
    an unreachable Telegram is waited for. Jobs live in SQLite, so a stop never ends one.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for name, host in settings.plain_http_urls:
        log.warning(
            "%s uses plain http:// to %s: the token and all traffic cross the network "
            "unencrypted; use https://",
            name,
            host,
        )
    app = build_application(settings)
    progress = _Progress()
    starting = asyncio.create_task(_start(app, settings, progress))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a rejected token ends here
            how = (
                f"by webhook at {settings.webhook_url}"
                if settings.webhook_url
                else "by long polling"
            )
            log.info("seqbot is receiving updates %s", how)
            await stopping
        else:
            log.info("stop requested during start-up; stopping")
            starting.cancel()
            # Whatever start-up was doing ends here; a stop wins over its outcome.
            await asyncio.wait((starting,))
            if not starting.cancelled():
                starting.exception()  # retrieved, so asyncio does not report it
    finally:
        stopping.cancel()
        await _stop(app, progress)


async def _start(app: Application, settings: Settings, progress: _Progress) -> None:  # type: ignore[type-arg]
    await patiently(app.initialize, "getMe", settings)
    progress.post_init = True  # set first: an interrupted post_init is undone by post_stop too
    assert app.post_init is not None
    await app.post_init(app)
    progress.webhook = await receive_updates(app, settings)
    await app.start()


async def _stop(app: Application, progress: _Progress) -> None:  # type: ignore[type-arg]
    """Undo whatever start-up reached, in reverse order."""
    if progress.webhook is not None:
        # Updates stop first; the rest of the server (references RunComfy may be fetching for
        # a submit on its way) stops in post_shutdown, after the jobs.
        progress.webhook.stop_updates()
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    if progress.post_init and app.post_stop is not None:
        await app.post_stop(app)
    await app.shutdown()
    # The HTTP clients, when initialize was interrupted (shutdown skips an uninitialized app).
    await app.bot.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)


async def receive_updates(app: Application, settings: Settings) -> WebServer | None:  # type: ignore[type-arg]
    """Long polling, or in webhook mode ``setWebhook`` (the web server, listening since
    ``post_init``, takes the updates); returns that server."""
    if not settings.webhook_url:
        assert app.updater is not None
        # Telegram answered getMe a moment ago: deleteWebhook is retried quietly if it blips.
        await app.updater.start_polling(
            allowed_updates=allowed_updates(settings), bootstrap_retries=-1
        )
        return None
    services: Services = app.bot_data
    server = services.web
    assert server is not None, "post_init starts the web server in webhook mode"
    try:
        await patiently(
            lambda: app.bot.set_webhook(
                url=settings.webhook_url or "",
                allowed_updates=allowed_updates(settings),
                # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; anything else gets 403.
                secret_token=settings.webhook_secret,
            ),
            "setWebhook",
            settings,
        )
    except BaseException:
        server.stop_updates()
        raise
    return server


def start_web(app: Application, settings: Settings, runner: JobRunner) -> WebServer | None:  # type: ignore[type-arg]
    """The web server, when webhook mode is on or PUBLIC_URL is set: listening before any job
    is resumed, since RunComfy may fetch a reference the moment a job is submitted."""
    if not settings.webhook_url and runner.links is None:
        return None
    webhook = None
    if settings.webhook_url:
        assert settings.webhook_secret is not None
        webhook = Webhook(app.bot, app.update_queue, settings.webhook_path, settings.webhook_secret)
    references = None
    if runner.links is not None:
        # runner.find: the live job while it runs, so a job ends for its URLs the moment it does.
        references = References(runner.links, runner.find, runner.delivery.originals.ref_path)
    prefix = prefix_of(runner.links.public_url) if runner.links else ""
    studio = None
    if runner.links is not None:
        studio = studio_parts(app, settings, runner, prefix)
    server = WebServer(
        webhook=webhook,
        references=references,
        studio=studio,
        prefix=prefix,
        timeout=settings.webhook_timeout,
    )
    try:
        server.listen(settings.web_port, settings.web_listen)
    except OSError as exc:
        # Waiting does not free a port: one line and exit 2, not a traceback.
        raise FatalStartupError(
            f"seqbot: the web server cannot listen on {settings.web_listen}:{settings.web_port} "
            f"(WEB_LISTEN / WEB_PORT): {exc.strerror or exc}"
        ) from None
    if references is not None:
        write_nonce(settings.database_path, server.nonce)
        log.info(
            "reference images are published under %s (listening on %s:%d)",
            settings.public_url,
            settings.web_listen,
            settings.web_port,
        )
    return server


def studio_parts(
    app: Application,  # type: ignore[type-arg]
    settings: Settings,
    runner: JobRunner,
    prefix: str,
) -> StudioParts:
    """The studio (Mini App) on the bot's web server, under PUBLIC_URL/app/."""
    services: Services = app.bot_data
    studio = Studio(
        bot=app.bot,
        store=runner.store,
        originals=runner.delivery.originals,
        settings=settings,
        key=load_key(settings.database_path),
        prefix=prefix,
        find=runner.find,
        estimate=runner.estimates.estimate,
    )
    runner.delivery.result.thumbs_for = studio.makes_thumbs_for
    actions = StudioActions(studio, runner.start, runner.delivery, services.intake)
    if services.story is not None:
        wire_story(actions, services.story)
    services.studio = actions
    return StudioParts(studio, actions, static.load())


async def _heartbeat(path: Path, runner: JobRunner) -> None:
    """Touch ``path`` every so often (a health check reads it); prune old originals hourly."""
    beats = 0
    while True:
        await asyncio.to_thread(path.touch)
        if beats % PRUNE_EVERY_BEATS == 0:
            pruned = await runner.delivery.originals.prune()
            if pruned:
                log.info("removed the kept originals of %d old job(s)", pruned)
        beats += 1
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _post_init(app: Application) -> None:  # type: ignore[type-arg]
    services: Services = app.bot_data
    settings = services.settings
    assert settings is not None, "build_application sets the settings"
    store = Store(settings.database_path)
    client = RunComfyClient(
        base_url=settings.runcomfy_api_base_url,
        token=settings.runcomfy_token,
        timeout=settings.http_timeout,
        # Retries back off from a fraction of the poll interval, so tests with fast polls stay fast.
        backoff=min(settings.poll_interval / 2, 1.0),
        max_rate=settings.runcomfy_max_rate,
    )
    # Result images never go through the RunComfy client: that one carries the token.
    downloader = Downloader(
        runcomfy_base_url=settings.runcomfy_api_base_url,
        timeout=settings.http_timeout,
        deadline=settings.download_timeout,
        backoff=min(settings.poll_interval / 2, 1.0),
    )
    services.downloader = downloader
    runner = JobRunner(
        bot=app.bot, store=store, client=client, settings=settings, downloader=downloader
    )
    services.store, services.client, services.runner = store, client, runner
    services.permissions = Permissions(app.bot, settings.admin_user_ids)
    services.intake = Intake(
        app.bot,
        settings,
        store,
        runner.delivery.originals,
        runner.start,
        album_wait=settings.album_wait,
        fetch_timeout=settings.reference_fetch_timeout,
    )
    services.story = Story(settings, store, runner.delivery.originals, runner.start)
    services.cast = cast_handlers.CastDesk(settings, store, services.intake, services.permissions)
    services.intake.consumers["cast"] = services.cast.add
    if settings.metrics_port is not None:
        services.metrics = metrics.serve(settings.metrics_port, settings.metrics_listen)
    services.web = start_web(app, settings, runner)
    if services.studio is not None and services.cast is not None:
        wire_cast(services.studio, services.cast)
    if settings.studio_url is not None:
        runner.delivery.result.studio = render.StudioLinks(
            settings.studio_url, f"https://t.me/{app.bot.username}?start=studio"
        )
    elif settings.public_url is not None:
        log.warning(
            "PUBLIC_URL is not https: Telegram opens only https Mini Apps, so the studio has "
            "no buttons (its pages are still served under %s/app/)",
            settings.public_url,
        )

    log.info(
        "seqbot started as @%s; database %s; Telegram API %s; RunComfy API %s; poll every %ss",
        app.bot.username,
        settings.database_path.resolve(),
        settings.telegram_api_base_url,
        settings.runcomfy_api_base_url,
        settings.poll_interval,
    )
    # Nothing waits for the menu: updates are handled while Telegram is slow to take it.
    services.menu = asyncio.create_task(
        in_background(
            menu_calls(app.bot, settings), settings, otherwise="the command menu stays as it was"
        )
    )
    await runner.resume_all()
    if settings.payments:  # payments SQLite refused, refunds the bot stopped in the middle of
        first = settings.telegram_retry_delay
        runner.background.run(pay.on_start(app.bot, store, first_delay=first), "payments")
        runner.background.run_once(
            pay.resolve_refunds(app.bot, store, first_delay=first), pay.REFUNDS
        )
    services.heartbeat = asyncio.create_task(_heartbeat(settings.health_file, runner))


def menu_calls(bot: ExtBot[int], settings: Settings) -> list[tuple[str, Call]]:
    """The command menu: the default one, then one per language (as the users' apps choose);
    with the studio, the private chats' menu button opens it."""
    paying, studio = settings.payments, settings.studio_url is not None
    cast = settings.public_url is not None and settings.cast_max_per_person > 0
    menu = commands("en", payments=paying, cast=cast, studio=studio)
    calls: list[tuple[str, Call]] = [
        ("setMyCommands", functools.partial(bot.set_my_commands, menu))
    ]
    for lang in languages():
        menu = commands(lang, payments=paying, cast=cast, studio=studio)
        call = functools.partial(bot.set_my_commands, menu, language_code=lang)
        calls.append((f"setMyCommands ({lang})", call))
    if settings.studio_url is not None:
        button = MenuButtonWebApp(tr("en", "Studio"), WebAppInfo(settings.studio_url))
        calls.append(
            ("setChatMenuButton", functools.partial(bot.set_chat_menu_button, menu_button=button))
        )
    return calls


async def _post_stop(app: Application) -> None:  # type: ignore[type-arg]
    services: Services = app.bot_data
    tasks = [t for t in (services.heartbeat, services.menu) if t is not None]
    services.heartbeat = services.menu = None
    for task in tasks:
        task.cancel()
    if tasks:
        # Awaited, so nothing is left pending (or warned about) when the loop closes.
        await asyncio.wait(tasks)
    if services.intake:
        await services.intake.stop()
    if services.runner:
        await services.runner.stop()


async def _post_shutdown(app: Application) -> None:  # type: ignore[type-arg]
    services: Services = app.bot_data
    if services.client:
        await services.client.aclose()
    if services.downloader:
        await services.downloader.aclose()
    if services.store:
        services.store.close()
    web, services.web = services.web, None
    if web is not None:  # after the jobs: a submit's references are served to the end
        await web.stop()
    server, services.metrics = services.metrics, None
    if server:
        await asyncio.to_thread(server.close)
    log.info("seqbot stopped; unfinished jobs resume at the next start")
