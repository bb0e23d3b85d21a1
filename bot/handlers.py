"""Telegram handlers: thin, turning updates into runner calls and errors into replies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
import sqlite3
import time

from telegram import LabeledPrice, Message, Update
from telegram.error import BadRequest, Forbidden, TelegramError

from bot import callbacks, limits, payments, render, schema
from bot.callbacks import BuyButton, JobAction, JobButton, ResetButton, SettingButton, SettingField
from bot.command import command_args, parse_seq
from bot.context import BotContext
from bot.errors import RefusedError, SeqbotError
from bot.models import CancelOutcome, ChatDefaults, Job, Origin, SeqRequest, Status
from bot.permissions import origin_of, requester_name, requester_of
from bot.store import Invoice
from bot.texts import lang_of, plural, tr

log = logging.getLogger(__name__)

# Job ids are ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
_JOB_ID_RE = re.compile(r"#?([0-9]{1,18})")

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


async def start(update: Update, context: BotContext) -> None:
    """/start and /help: what the bot does and how to use it."""
    if update.message and context.args == ["buy"] and context.settings.payments:
        await buy_command(update, context)  # the t.me link a group's /buy gives
        return
    if update.message:
        await update.message.reply_text(render.help_text(lang(update)))  # quoted in groups only


def _replied_text(message: Message, bot_id: int) -> str | None:
    """The text (or caption) of the message a command replies to, unless it is the bot's own."""
    replied = message.reply_to_message
    if replied is None or (replied.from_user and replied.from_user.id == bot_id):
        return None
    if message.is_topic_message and replied.message_id == message.message_thread_id:
        return None  # in a forum topic every message "replies" to the topic's first message
    return replied.text or replied.caption


async def seq(update: Update, context: BotContext) -> None:
    """/seq: check who asks, parse, then start a job; or explain what is wrong."""
    message = update.message
    if message is None or message.text is None:
        return
    user = message.from_user
    try:
        limits.check_access(
            context.settings, user_id=user.id if user else None, chat_id=message.chat.id
        )
        request = parse_seq(
            command_args(message.text),
            replied_text=_replied_text(message, context.bot.id),
            defaults=context.store.chat_defaults(message.chat.id),
        )
        if request is None:
            await message.reply_text(render.usage(lang(update)), do_quote=True)
            return
        await context.runner.start(request, origin_of(message))
    except SeqbotError as exc:
        await message.reply_text(exc.text(lang(update)), do_quote=True)


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
        m = _JOB_ID_RE.fullmatch(args[0])
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
    m = _JOB_ID_RE.fullmatch(args[0]) if args else None
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
    try:
        shown = await context.runner.delivery.show_again(found, message.message_id)
    except SeqbotError as exc:
        await message.reply_text(exc.text(language), do_quote=True)
        return
    if not shown:
        await message.reply_text(
            tr(language, "Job #{id} has no delivered images to show.", id=found.id), do_quote=True
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
    text = render.usage_text(
        lang(update),
        today=store.usage(requester, limits.day_start(now)),
        month=store.usage(requester, limits.month_start(now)),
        limit=settings.daily_image_limit_per_user,
        exempt=is_admin,
        resets_in=limits.until_reset(now, lang(update)),
        per_chat=store.usage_by_chat(limits.month_start(now)) if is_admin else None,
    )
    if is_admin and settings.payments:
        received, refunded = store.stars_received(limits.month_start(now))
        cost = sum(c for _, _, _, c in store.usage_by_chat(limits.month_start(now)))
        text += "\n" + payments.stars_line(
            lang(update), received=received, refunded=refunded, cost=render.money(cost)
        )
    await message.reply_text(text, do_quote=True)


async def _job_for_button(
    update: Update, context: BotContext, action: JobAction
) -> tuple[Job, Message] | None:
    """The job a follow-up button names, if the tap came from that job's own follow-up message
    and the tapper may use the bot.

    Answers the tap itself when not (stale, forged or foreign data; a user who is not allowed).
    """
    query = update.callback_query
    assert query is not None
    button = callbacks.parse(query.data)
    job = (
        context.runner.find(button.job_id)
        if isinstance(button, JobButton) and button.action == action
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
    return job, message


async def again_button(update: Update, context: BotContext) -> None:
    """🔁 Again: the same parameters with a new seed, under the same rules as /seq."""
    found = await _job_for_button(update, context, JobAction.AGAIN)
    query = update.callback_query
    if found is None or query is None:
        return
    job, message = found
    request = SeqRequest(
        count=job.count,
        size=job.size,
        mode=job.mode,
        seed=secrets.randbelow(schema.MAX_SEED + 1),
        prompt=job.prompt,
        text=job.text,
        panels=tuple(job.panels),
    )
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
        started = await context.runner.start(request, origin)
    except SeqbotError as exc:
        await query.answer(exc.text(lang(update)), show_alert=True)
        return
    if started is None:
        await query.answer(
            tr(lang(update), "Already started from this message: see the job below.")
        )
        return
    await query.answer(tr(lang(update), "Job #{id}: same settings, new seed.", id=started.id))


# The files buttons (sent from the files kept on disk): the answer to a tap that sends, and to
# one while it is being sent or soon after.
_FILES_ANSWERS = {
    JobAction.ORIGINALS: (
        "Sending the original files…",
        "The original files are being sent or were sent above.",
    ),
    JobAction.SHEET: (
        "Making the contact sheet…",
        "The contact sheet is being made or was sent above.",
    ),
    JobAction.ZIP: (
        "Packing the original files…",
        "The ZIP is being sent or was sent above.",
    ),
}


async def _files_button(update: Update, context: BotContext, action: JobAction) -> None:
    """📎 Originals, 🗂 Sheet, 📦 ZIP: made from the files kept on disk, once per follow-up
    message while being sent (and a while after)."""
    found = await _job_for_button(update, context, action)
    query = update.callback_query
    if found is None or query is None:
        return
    job, message = found
    if job.status != Status.DONE:
        await query.answer(tr(lang(update), "The images of this job were not delivered."))
        return
    delivery = context.runner.delivery
    sending, busy = _FILES_ANSWERS[action]
    if not delivery.claim(job.id, action):
        await query.answer(tr(lang(update), busy))
        return
    await query.answer(tr(lang(update), sending))
    if action == JobAction.SHEET:
        sent = await delivery.send_sheet(job, message.message_id, lang(update))
    elif action == JobAction.ZIP:
        sent = await delivery.send_zip(job, message.message_id, lang(update))
    else:
        sent = await delivery.send_originals(job, message.message_id)
    if not sent:
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
    found = await _job_for_button(update, context, JobAction.DETAILS)
    query = update.callback_query
    if found is None or query is None:
        return
    job, message = found
    await query.answer()
    await message.reply_text(render.details_text(job, lang(update)), do_quote=True)


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
    await query.edit_message_text(
        render.settings_text(changed, lang(update)),
        reply_markup=render.settings_keyboard(changed, lang(update)),
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


# ---- Telegram Stars (registered only when STARS_PACKS is set) ------------------------------------


def _is_bot_admin(message: Message, context: BotContext) -> bool:
    user = message.from_user
    return (
        user is not None
        and message.sender_chat is None
        and user.id in context.settings.admin_user_ids
    )


def _check_buyer(context: BotContext, user_id: int | None) -> None:
    """Raise RefusedError unless ALLOWED_USER_IDS lets this person use the bot. Credits are the
    person's own, so the chat allowlist does not apply (the invoice goes to a private chat)."""
    settings = context.settings
    if user_id is not None and user_id in settings.admin_user_ids:
        return
    if settings.allowed_user_ids and user_id not in settings.allowed_user_ids:
        raise RefusedError("Sorry, this bot is not available to you.")


_PAYMENT_TRIES = 20  # about half a minute of a locked database before a payment is given up


async def buy_command(update: Update, context: BotContext) -> None:
    """/buy: the packs as buttons; a tap sends an invoice to the buyer's private chat."""
    message = update.message
    if message is None:
        return
    if message.sender_chat is not None:
        await message.reply_text(
            tr(
                lang(update),
                "Credits are bought by a person: send /buy from your own account, not as a chat.",
            ),
            do_quote=True,
        )
        return
    try:
        _check_buyer(context, message.from_user.id if message.from_user else None)
    except SeqbotError as exc:
        await message.reply_text(exc.text(lang(update)), do_quote=True)
        return
    await message.reply_text(
        payments.buy_text(context.settings, lang(update)),
        reply_markup=payments.buy_keyboard(context.settings, lang(update)),
        do_quote=True,
    )


async def buy_button(update: Update, context: BotContext) -> None:
    """A tap on a /buy pack: remember an unguessable payload, then send the invoice privately."""
    query = update.callback_query
    if query is None:
        return
    language = lang(update)
    button = callbacks.parse(query.data)
    stars = (
        payments.pack_price(context.settings, button.images)
        if isinstance(button, BuyButton)
        else None
    )
    if not isinstance(button, BuyButton) or stars is None:
        await query.answer(tr(language, "This button no longer works."))
        return
    user = query.from_user
    try:
        _check_buyer(context, user.id)
    except SeqbotError as exc:
        await query.answer(exc.text(language), show_alert=True)
        return
    invoice = Invoice(
        payload=secrets.token_urlsafe(payments.PAYLOAD_BYTES),
        requester_id=user.id,  # a tap always comes from the real person: the credits are theirs
        user_id=user.id,
        images=button.images,
        stars=stars,
        expires_at=time.time() + payments.INVOICE_TTL,
    )
    try:
        context.store.add_invoice(invoice)
        await context.bot.send_invoice(
            chat_id=user.id,
            title=payments.invoice_title(button.images, language),
            description=payments.invoice_description(button.images, language),
            payload=invoice.payload,
            currency=payments.CURRENCY,
            prices=[LabeledPrice(payments.invoice_title(button.images, language), stars)],
        )
    except SeqbotError as exc:
        await query.answer(exc.text(language), show_alert=True)
        return
    except (Forbidden, BadRequest) as exc:
        if isinstance(exc, BadRequest) and "chat not found" not in exc.message.lower():
            raise
        # The buyer never opened a private chat with the bot (or blocked it).
        link = f"https://t.me/{context.bot.username}?start=buy"
        await query.answer(
            tr(
                language,
                "I cannot write to you privately yet. Open {link}, press Start, then tap "
                "the pack again.",
                link=link,
            ),
            show_alert=True,
        )
        return
    chat = query.message.chat if query.message else None
    if chat is not None and chat.id != user.id:
        await query.answer(tr(language, "I sent you the invoice in our private chat."))
    else:
        await query.answer()


async def pre_checkout(update: Update, context: BotContext) -> None:
    """Telegram asks whether a payment may go ahead: answered at once (it waits 10 s at most)."""
    query = update.pre_checkout_query
    if query is None:
        return
    language = lang_of(query.from_user.language_code)
    invoice = context.store.invoice(query.invoice_payload)
    if invoice is None or invoice.user_id != query.from_user.id:
        error = tr(language, "This invoice is not known. Please use /buy again.")
    elif invoice.expires_at < time.time():
        error = tr(language, "This invoice has expired. Please use /buy again.")
    elif (
        query.currency != payments.CURRENCY
        or query.total_amount != invoice.stars
        or payments.pack_price(context.settings, invoice.images) != invoice.stars
    ):
        error = tr(language, "This pack is no longer offered at this price. Please use /buy again.")
    else:
        await query.answer(ok=True)
        return
    log.info("pre-checkout %s refused: %s", query.id, error)
    await query.answer(ok=False, error_message=error)


async def successful_payment(update: Update, context: BotContext) -> None:
    """Telegram took the Stars: record the payment and add its credits, once per charge id."""
    message = update.message
    if message is None or message.successful_payment is None:
        return
    paid = message.successful_payment
    user_id = message.from_user.id if message.from_user else message.chat.id
    delay = 0.1
    for attempt in range(_PAYMENT_TRIES):
        try:
            credited, payment = context.store.record_payment(
                charge_id=paid.telegram_payment_charge_id,
                provider_charge_id=paid.provider_payment_charge_id,
                payload=paid.invoice_payload,
                user_id=user_id,
                stars=paid.total_amount,
            )
            break
        except sqlite3.OperationalError as exc:
            # Telegram will not send this update again once it is handled: keep trying, and
            # if SQLite never lets us, leave every detail in the log for the operator.
            if attempt == _PAYMENT_TRIES - 1:
                log.error(
                    "payment %s NOT CREDITED (database: %s): user %d, payload %s, %d Stars",
                    paid.telegram_payment_charge_id,
                    exc,
                    user_id,
                    paid.invoice_payload,
                    paid.total_amount,
                )
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    language = lang(update)
    if not payment.images:
        log.error(
            "payment %s of %d Stars for an unknown invoice: recorded, no credits added",
            payment.charge_id,
            payment.stars,
        )
        await message.reply_text(
            tr(
                language,
                "Your payment arrived, but the bot does not know its invoice. "
                "Please contact /paysupport and quote charge {charge}.",
                charge=payment.charge_id,
            )
        )
        return
    if credited:
        log.info(
            "payment %s: %d Stars, %d credit(s) for %d",
            payment.charge_id,
            payment.stars,
            payment.images,
            payment.requester_id,
        )
    await message.reply_text(
        tr(
            language,
            "Thank you! {images} added. Your balance: {balance}.",
            images=plural(language, payment.images, "image"),
            balance=plural(language, context.store.balance(payment.requester_id), "image"),
        )
    )


async def balance_command(update: Update, context: BotContext) -> None:
    """/balance: the requester's credits, free images left today, and latest purchases."""
    message = update.message
    if message is None:
        return
    settings, store = context.settings, context.store
    requester = requester_of(message)
    if requester is None:
        return
    now = time.time()
    free_left = max(
        0, settings.free_images_per_day - store.free_used(requester, limits.day_start(now))
    )
    user_id = message.from_user.id if message.from_user else None
    text = payments.balance_text(
        settings,
        lang(update),
        balance=store.balance(requester),
        reserved=store.reserved(requester),
        free_left=free_left,
        payments=store.payments_of(requester),
        exempt_admin=payments.exempt(settings, user_id=user_id, requester_id=requester),
    )
    await message.reply_text(text, do_quote=True)


async def refund_command(update: Update, context: BotContext) -> None:
    """/refund <charge id> (bot admins): refund a purchase whose credits are all unused."""
    message = update.message
    if message is None or not _is_bot_admin(message, context):
        return
    language = lang(update)
    args = context.args or []
    if len(args) != 1 or len(args[0]) > 256:
        await message.reply_text(
            tr(language, "Which payment? For example /refund <charge id> (see /balance)."),
            do_quote=True,
        )
        return
    store = context.store
    charge = args[0]
    known = store.payment(charge)
    payment = store.take_refund(charge)
    if payment is None:
        if known is None:
            answer = tr(language, "There is no payment {charge}.", charge=charge[:60])
        elif known.refunded_at is not None:
            answer = tr(language, "Payment {charge} was already refunded.", charge=charge[:60])
        else:
            answer = tr(
                language,
                "Payment {charge} cannot be refunded: some of its credits are used or held by "
                "a job.",
                charge=charge[:60],
            )
        await message.reply_text(answer, do_quote=True)
        return
    try:
        await context.bot.refund_star_payment(
            user_id=payment.user_id or payment.requester_id, telegram_payment_charge_id=charge
        )
    except TelegramError as exc:
        store.undo_refund(payment)
        log.warning("refund of %s refused by Telegram: %s", charge, exc)
        await message.reply_text(
            tr(
                language,
                "Telegram refused the refund of {charge}: {error}",
                charge=charge[:60],
                error=str(exc)[:200],
            ),
            do_quote=True,
        )
        return
    log.info(
        "payment %s refunded: %d Stars, %d credits removed", charge, payment.stars, payment.images
    )
    await message.reply_text(
        tr(
            language,
            "Refunded {stars} ⭐ of payment {charge}; {images} removed from the balance.",
            stars=payment.stars,
            charge=charge[:60],
            images=plural(language, payment.images, "image"),
        ),
        do_quote=True,
    )


async def return_credits_command(update: Update, context: BotContext) -> None:
    """/return_credits <job id> (bot admins): give back the credits a finished job still holds,
    e.g. one whose submit went unanswered and that RunComfy turned out not to bill."""
    message = update.message
    if message is None or not _is_bot_admin(message, context):
        return
    language = lang(update)
    args = context.args or []
    m = _JOB_ID_RE.fullmatch(args[0]) if args else None
    job = context.runner.find(int(m.group(1))) if m else None
    if job is None:
        await message.reply_text(
            tr(language, "Which job? For example /return_credits 12."), do_quote=True
        )
        return
    if not job.final:
        await message.reply_text(
            tr(language, "Job #{id} is not finished yet.", id=job.id), do_quote=True
        )
        return
    returned = context.store.return_reservation(job.id)
    await message.reply_text(
        tr(
            language,
            "Job #{id}: {images} returned to the balance.",
            id=job.id,
            images=plural(language, returned, "image"),
        ),
        do_quote=True,
    )


async def paysupport_command(update: Update, context: BotContext) -> None:
    """/paysupport: how to get help with a payment (PAYSUPPORT_TEXT)."""
    if update.message:
        text = payments.paysupport_text(context.settings, lang(update))
        await update.message.reply_text(text, do_quote=True)


async def terms_command(update: Update, context: BotContext) -> None:
    """/terms: the terms of sale (TERMS_TEXT)."""
    if update.message:
        text = payments.terms_text(context.settings, lang(update))
        await update.message.reply_text(text, do_quote=True)
