"""Telegram handlers: thin, turning updates into runner calls and errors into replies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time

from telegram import CallbackQuery, Message, ReplyParameters, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import again, callbacks, limits, payments, render, schema
from bot.callbacks import (
    JobAction,
    JobButton,
    PanelButton,
    ResetButton,
    SettingButton,
    SettingField,
)
from bot.command import command_args, parse_seq_command, replied_text
from bot.context import BotContext
from bot.errors import SeqbotError
from bot.models import CancelOutcome, ChatDefaults, Job, Origin
from bot.permissions import origin_of, requester_name, requester_of
from bot.repeats import Shown
from bot.sending import error_text
from bot.texts import lang_of, tr

log = logging.getLogger(__name__)

# Job ids are ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
JOB_ID_RE = re.compile(r"#?([0-9]{1,18})")

# How long a Cancel tap waits for RunComfy before answering "Cancelling…" instead.
_CANCEL_ANSWER_WAIT = 5.0
_CANCEL_ANSWERS = {
    CancelOutcome.CANCELLED: "Cancelled.",
    CancelOutcome.PENDING: "Cancelling…",
    CancelOutcome.TOO_LATE: "Too late: the job is already running and can no longer be cancelled.",
    CancelOutcome.FINAL: "This job has already finished.",
}


def lang(update: object) -> str:
    """The language of whoever sent the update: ``ru`` or ``en``."""
    user = update.effective_user if isinstance(update, Update) else None
    return lang_of(user.language_code if user else None)


async def answer_quietly(
    query: CallbackQuery, text: str | None = None, *, alert: bool = False
) -> None:
    """Answer a tap; a failed answer (too late: "query is too old") is logged, not raised, so it
    never stops what the tap asked for."""
    try:
        await query.answer(text, show_alert=alert)
    except TelegramError as exc:
        log.info("could not answer a button tap: %s", str(exc)[:200])


async def start(update: Update, context: BotContext) -> None:
    """/start and /help: what the bot does and how to use it."""
    if update.message:
        refs = context.settings.public_url is not None
        cast = context.settings.cast_max_per_person > 0
        # Quoted in groups only.
        studio = context.settings.studio_url is not None
        await update.message.reply_text(
            render.help_text(lang(update), refs=refs, cast=cast, studio=studio)
        )


def studio_links(context: BotContext) -> render.StudioLinks | None:
    """Where the studio opens; None when it is off (PUBLIC_URL unset, or not https)."""
    url = context.settings.studio_url
    if url is None:
        return None
    return render.StudioLinks(url, f"https://t.me/{context.bot.username}?start=studio")


async def studio_command(update: Update, context: BotContext) -> None:
    """/studio: the app's button in a private chat; in a group, a link to the private chat (a
    ``web_app`` button works only there)."""
    message = update.message
    if message is None:
        return
    language = lang(update)
    links = studio_links(context)
    if links is None:
        await message.reply_text(
            tr(language, "The studio is not set up on this bot."), do_quote=True
        )
        return
    private = message.chat.type == ChatType.PRIVATE
    text = (
        tr(language, "🖼 Your series, in the studio:")
        if private
        else tr(language, "The studio opens in your private chat with me:")
    )
    await message.reply_text(
        text, reply_markup=render.studio_keyboard(links, language, private=private), do_quote=True
    )


async def start_studio(update: Update, context: BotContext) -> None:
    """``/start studio`` (the link a group's /studio gives): the app's button; no other handler
    sees the update."""
    await studio_command(update, context)
    raise ApplicationHandlerStop


async def seq(update: Update, context: BotContext) -> None:
    """/seq: check who asks, parse, then start a job; or explain what is wrong."""
    message = update.message
    if message is None or message.text is None:
        return
    sources = context.intake.replied_sources(message)
    if sources is not None:  # a reply to a photo, an image file or one of the bot's images
        await context.intake.start(message, message.text, sources)
        return
    user = message.from_user
    try:
        limits.check_access(
            context.settings, user_id=user.id if user else None, chat_id=message.chat.id
        )
        parsed = parse_seq_command(
            command_args(message.text),
            replied_text=replied_text(message, context.bot.id),
            defaults=context.store.chat_defaults(message.chat.id),
        )
        if parsed is None:
            await message.reply_text(render.usage(lang(update)), do_quote=True)
            return
        if parsed.cast:  # saved characters: their images are references, as a photo's are
            await context.intake.start(message, message.text, [])
            return
        await context.runner.start(parsed.request, origin_of(message))
    except SeqbotError as exc:
        await message.reply_text(exc.text(lang(update)), do_quote=True)


async def media(update: Update, context: BotContext) -> None:
    """A photo or file: ``/seq …`` in its caption, or an album item (see ``bot.intake``)."""
    if update.message is not None:
        await context.intake.on_media(update.message)


async def cancel_button(update: Update, context: BotContext) -> None:
    """The Cancel button under a status message."""
    query = update.callback_query
    if query is None:
        return
    runner = context.runner
    button = callbacks.parse(query.data)
    job = (
        runner.find(button.job_id)
        if isinstance(button, JobButton) and button.action == JobAction.CANCEL
        else None
    )
    chat = query.message.chat if query.message else None
    if job is None or chat is None or job.chat_id != chat.id:
        await query.answer(tr(lang(update), "This button no longer works."))
        return
    if not await context.permissions.may_cancel(job, chat_id=chat.id, user=query.from_user):
        await query.answer(_who_may_cancel(job, lang(update)), show_alert=True)
        return
    task = asyncio.ensure_future(runner.cancel(job))
    try:
        outcome = await asyncio.wait_for(asyncio.shield(task), _CANCEL_ANSWER_WAIT)
    except TimeoutError:
        await query.answer(tr(lang(update), "Cancelling…"))
        await task
        return
    except SeqbotError as exc:
        await query.answer(exc.text(lang(update)), show_alert=True)
        return
    await query.answer(tr(lang(update), _CANCEL_ANSWERS[outcome]))


async def cancel_command(update: Update, context: BotContext) -> None:
    """/cancel [job id]: cancel the caller's latest cancellable job, or the one named."""
    message = update.message
    if message is None:
        return
    runner = context.runner
    store = context.store
    user = message.from_user
    chat_id = message.chat.id
    args = context.args or []
    job: Job | None
    if args:
        m = JOB_ID_RE.fullmatch(args[0])
        found = runner.find(int(m.group(1))) if m else None
        job = found if found is not None and found.chat_id == chat_id else None
        if job is None:
            await message.reply_text(
                tr(lang(update), "There is no job {job} in this chat.", job=args[0][:20]),
                do_quote=True,
            )
            return
    else:
        requester = requester_of(message)
        latest = store.latest_cancellable(chat_id, requester) if requester is not None else None
        job = runner.find(latest.id) if latest else None
        if job is None:
            await message.reply_text(
                tr(lang(update), "You have no job here that can still be cancelled."),
                do_quote=True,
            )
            return
    if not await context.permissions.may_cancel(
        job, chat_id=chat_id, user=user, sender_chat=message.sender_chat
    ):
        await message.reply_text(_who_may_cancel(job, lang(update)), do_quote=True)
        return
    try:
        outcome = await runner.cancel(job)
    except SeqbotError as exc:
        await message.reply_text(exc.text(lang(update)), do_quote=True)
        return
    answer = tr(lang(update), _CANCEL_ANSWERS[outcome])
    await message.reply_text(
        tr(lang(update), "Job #{id}: {answer}", id=job.id, answer=answer), do_quote=True
    )


async def jobs_command(update: Update, context: BotContext) -> None:
    """/jobs: the chat's last ten jobs."""
    if update.message is None:
        return
    jobs = context.store.recent(update.message.chat.id, limit=10)
    await update.message.reply_text(
        render.jobs_list(jobs, time.time(), lang(update)), do_quote=True
    )


async def show_command(update: Update, context: BotContext) -> None:
    """/show <job id>: a job's images again in this chat, from Telegram's copies (free, instant)."""
    message = update.message
    if message is None:
        return
    language = lang(update)
    args = context.args or []
    m = JOB_ID_RE.fullmatch(args[0]) if args else None
    if m is None:
        await message.reply_text(
            tr(language, "Which job? For example /show 12 (the numbers are in /jobs)."),
            do_quote=True,
        )
        return
    user = message.from_user
    try:
        limits.check_access(
            context.settings, user_id=user.id if user else None, chat_id=message.chat.id
        )
    except SeqbotError as exc:
        await message.reply_text(exc.text(language), do_quote=True)
        return
    found = context.runner.find(int(m.group(1)))
    if found is None or found.chat_id != message.chat.id:
        await message.reply_text(
            tr(language, "There is no job {job} in this chat.", job=args[0][:20]), do_quote=True
        )
        return
    if not found.final:
        await message.reply_text(
            tr(language, "Job #{id} is not finished yet.", id=found.id), do_quote=True
        )
        return
    key = (found.chat_id, found.id)
    repeats = context.repeats.shows
    earlier = repeats.get(key)
    if earlier is not None:
        await _told_shown(message, found, earlier, language)
        return
    # Remembered before sending: a second /show while the first is still sending posts nothing.
    repeats.put(key, Shown(message.message_id, message.message_thread_id))
    shown = False
    try:
        shown = await context.runner.show(found, message.message_id)
    except SeqbotError as exc:
        await message.reply_text(exc.text(language), do_quote=True)
        return
    finally:
        if not shown:  # nothing went out: the next /show may try again at once
            repeats.discard(key)
    if not shown:
        await message.reply_text(
            tr(language, "Job #{id} has no delivered images to show.", id=found.id), do_quote=True
        )


async def _told_shown(message: Message, job: Job, earlier: Shown, language: str) -> None:
    """A repeated /show within REPEAT_WINDOW_SECONDS: one short reply pointing at the earlier
    /show (the images are right under it); nothing at all for later repeats."""
    if earlier.told:
        return
    earlier.told = True
    same_thread = earlier.thread_id == message.message_thread_id
    await message.reply_text(
        tr(
            language,
            "Job #{id} was sent a moment ago, right under the quoted message. "
            "Ask again a little later to get it once more.",
            id=job.id,
        )
        if same_thread
        else tr(
            language,
            "Job #{id} was sent a moment ago. Ask again a little later to get it once more.",
            id=job.id,
        ),
        reply_parameters=ReplyParameters(
            earlier.reply_to if same_thread else message.message_id,
            allow_sending_without_reply=True,
        ),
    )


async def usage_command(update: Update, context: BotContext) -> None:
    """/usage: the caller's images and cost; for bot admins, totals per chat."""
    message = update.message
    if message is None or message.from_user is None:
        return
    settings = context.settings
    store = context.store
    now = time.time()
    requester = requester_of(message) or message.from_user.id
    is_admin = requester in settings.admin_user_ids and message.sender_chat is None
    # Every chat's spend and the Stars revenue are the operator's business: never in a group.
    totals = is_admin and message.chat.type == ChatType.PRIVATE
    text = render.usage_text(
        lang(update),
        today=store.usage(requester, limits.day_start(now)),
        month=store.usage(requester, limits.month_start(now)),
        limit=settings.daily_image_limit_per_user,
        exempt=is_admin,
        resets_in=limits.until_reset(now, lang(update)),
        per_chat=store.usage_by_chat(limits.month_start(now)) if totals else None,
    )
    if is_admin and not totals:
        text += "\n\n" + render.admin_totals_pointer(lang(update), context.bot.username)
    if totals and settings.payments:
        received, refunded = store.stars_received(limits.month_start(now))
        cost = sum(c for _, _, _, c in store.usage_by_chat(limits.month_start(now)))
        text += "\n" + payments.stars_line(
            lang(update), received=received, refunded=refunded, cost=render.money(cost)
        )
    await message.reply_text(text, do_quote=True)


async def job_for_button(
    update: Update, context: BotContext, action: JobAction
) -> tuple[Job, Message, CallbackQuery] | None:
    """The job a follow-up button names, with the follow-up message and the tap, if the tap came
    from that job's own follow-up message and the tapper may use the bot.

    Answers the tap itself when not (stale, forged or foreign data; a user who is not allowed).
    """
    query = update.callback_query
    assert query is not None
    button = callbacks.parse(query.data)
    ours = (isinstance(button, JobButton) and button.action == action) or (
        isinstance(button, PanelButton) and action == JobAction.REDO
    )
    job = (
        context.runner.find(button.job_id)
        if ours and isinstance(button, JobButton | PanelButton)
        else None
    )
    message = query.message if isinstance(query.message, Message) else None
    if (
        job is None
        or message is None
        or job.chat_id != message.chat.id
        # Data copied onto any other message (the status, /settings) is forged: only the
        # follow-up the bot posted under the images carries these buttons.
        or message.message_id != job.actions_message_id
    ):
        await query.answer(tr(lang(update), "This button no longer works."))
        return None
    try:
        limits.check_access(context.settings, user_id=query.from_user.id, chat_id=job.chat_id)
    except SeqbotError as exc:
        await query.answer(exc.text(lang(update)), show_alert=True)
        return None
    return job, message, query


async def again_button(update: Update, context: BotContext) -> None:
    """🔁 Again: the same parameters with a new seed, under the same rules as /seq."""
    found = await job_for_button(update, context, JobAction.AGAIN)
    if found is None:
        return
    job, message, query = found
    user = query.from_user
    origin = Origin(
        chat_id=job.chat_id,
        message_id=message.message_id,  # one Again per follow-up message, however often tapped
        user_id=user.id,
        requester_id=user.id,  # button taps always come from the real person
        user_name=requester_name(user, None),
        thread_id=job.thread_id,
        chat_type=job.chat_type,
        lang=lang(update),
    )
    try:
        started = await again.start_again(
            job,
            origin,
            start=context.runner.start,
            intake=context.intake,
            store=context.store,
            settings=context.settings,
        )
    except again.ReferencesGoneError as exc:
        # A reply, not an alert: it says what to do next and stays in the chat.
        await answer_quietly(query)
        await message.reply_text(exc.text(lang(update)), do_quote=True)
        return
    except SeqbotError as exc:
        await query.answer(exc.text(lang(update)), show_alert=True)
        return
    if started is None:
        await query.answer(
            tr(lang(update), "Already started from this message: see the job below.")
        )
        return
    await query.answer(tr(lang(update), "Job #{id}: same settings, new seed.", id=started.id))


async def _files_button(update: Update, context: BotContext, action: JobAction) -> None:
    """📎 Originals, 🗂 Sheet, 📦 ZIP: made from the files kept on disk, once per follow-up
    message while being sent (and a while after)."""
    found = await job_for_button(update, context, action)
    if found is None:
        return
    job, message, query = found

    async def answer(text: str) -> None:
        # A tap answered too late ("query is too old") still gets its files.
        await answer_quietly(query, text)

    sent = await context.runner.delivery.request(
        job, action, reply_to=message.message_id, lang=lang(update), answer=answer
    )
    if sent is False:
        await message.reply_text(
            tr(lang(update), "The original files of job #{id} are no longer kept.", id=job.id),
            do_quote=True,
        )


async def originals_button(update: Update, context: BotContext) -> None:
    """📎 Originals: the same images again as documents, uncompressed."""
    await _files_button(update, context, JobAction.ORIGINALS)


async def sheet_button(update: Update, context: BotContext) -> None:
    """🗂 Sheet: every panel in one numbered picture."""
    await _files_button(update, context, JobAction.SHEET)


async def zip_button(update: Update, context: BotContext) -> None:
    """📦 ZIP: every original and prompt.txt in one archive."""
    await _files_button(update, context, JobAction.ZIP)


async def details_button(update: Update, context: BotContext) -> None:
    """ℹ️ Details: prompt, parameters, request id, cost and times."""
    found = await job_for_button(update, context, JobAction.DETAILS)
    if found is None:
        return
    job, message, query = found
    key = (job.chat_id, job.id)
    repeats = context.repeats.details
    if repeats.get(key) is not None:
        # Posted a moment ago: only the tap is answered (20 taps must not make 20 messages).
        await answer_quietly(query, tr(lang(update), "The details were sent just above."))
        return
    repeats.put(key, Shown(message.message_id))
    await answer_quietly(query)
    try:
        versions = context.store.redos(job.id)
        await message.reply_text(render.details_text(job, lang(update), versions), do_quote=True)
    except BaseException:
        repeats.discard(key)  # nothing was posted: the next tap may try again
        raise


async def settings_command(update: Update, context: BotContext) -> None:
    """/settings: the chat's defaults for /seq, with buttons to change them."""
    message = update.message
    if message is None:
        return
    defaults = context.store.chat_defaults(message.chat.id)
    await message.reply_text(
        render.settings_text(defaults, lang(update)),
        reply_markup=render.settings_keyboard(defaults, lang(update)),
        do_quote=True,
    )


async def settings_button(update: Update, context: BotContext) -> None:
    """A tap on the /settings keyboard: only admins may change a group's defaults."""
    query = update.callback_query
    if query is None or not isinstance(query.message, Message):
        if query:
            await query.answer(tr(lang(update), "This button no longer works."))
        return
    chat_id = query.message.chat.id
    if not await context.permissions.may_administer(chat_id=chat_id, user=query.from_user):
        await query.answer(
            tr(lang(update), "Only the chat's admins can change its defaults."), show_alert=True
        )
        return
    store = context.store
    current = store.chat_defaults(chat_id)
    button = callbacks.parse(query.data)
    changed = (
        _apply_setting(current, button) if isinstance(button, SettingButton | ResetButton) else None
    )
    if changed is None:
        await query.answer(tr(lang(update), "This button no longer works."))
        return
    if changed == current:
        await query.answer(tr(lang(update), "Already set."))
        return
    try:
        store.set_chat_defaults(chat_id, changed)
    except SeqbotError as exc:
        await query.answer(exc.text(lang(update)), show_alert=True)
        return
    await query.answer(tr(lang(update), "Saved."))
    try:
        await query.edit_message_text(
            render.settings_text(changed, lang(update)),
            reply_markup=render.settings_keyboard(changed, lang(update)),
        )
    except Exception as exc:
        # Saved and answered already: a message that could not be redrawn (deleted, or an answer
        # python-telegram-bot cannot read) is no reason for "Sorry, something went wrong".
        log.warning(
            "chat %d: settings saved, but the message was not redrawn: %s: %s",
            chat_id,
            type(exc).__name__,
            error_text(exc),
        )


def _apply_setting(current: ChatDefaults, button: callbacks.SettingsButton) -> ChatDefaults | None:
    """The defaults after a /settings tap; None for a count the keyboard does not offer.

    ``callbacks.parse`` already checked the value against the schema.
    """
    if isinstance(button, ResetButton):
        return ChatDefaults()
    if button.field == SettingField.COUNT:
        count = int(button.value)
        return (
            dataclasses.replace(current, count=count) if count in render.SETTINGS_COUNTS else None
        )
    if button.field == SettingField.RATIO:
        return dataclasses.replace(current, size=schema.SIZE_ALIASES[button.value])
    return dataclasses.replace(current, mode=button.value)


def _who_may_cancel(job: Job, language: str) -> str:
    who = render.requester(job, language) or tr(language, "the person who asked for it")
    return tr(
        language, "Only {who} (who asked for this job) or a chat admin can cancel it.", who=who
    )


async def stale_button(update: Update, context: BotContext) -> None:
    """Any other button: answer it, so the client stops its spinner."""
    if update.callback_query:
        await update.callback_query.answer(tr(lang(update), "This button no longer works."))


async def on_error(update: object, context: BotContext) -> None:
    """Log first, then tell the user something short."""
    log.error("error while handling an update", exc_info=context.error)
    if not isinstance(update, Update):
        return
    with contextlib.suppress(TelegramError):
        if update.callback_query:
            await update.callback_query.answer(tr(lang(update), "Sorry, something went wrong."))
        elif update.effective_message and update.effective_message.chat.type == "private":
            await update.effective_message.reply_text(
                tr(lang(update), "Sorry, something went wrong. Please try again.")
            )
