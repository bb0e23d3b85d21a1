"""Telegram handlers for payments in Telegram Stars: registered only when STARS_PACKS is set.

/buy and its buttons send invoices; pre-checkout queries are answered at once; a successful
payment is credited exactly once; /balance, /refund, /return_credits, /paysupport and /terms.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import sqlite3
import time

from telegram import Bot, LabeledPrice, Message, Update
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import callbacks, limits, payments, render
from bot.callbacks import BuyButton
from bot.context import BotContext
from bot.errors import SeqbotError
from bot.handlers import JOB_ID_RE, lang
from bot.permissions import requester_of
from bot.store import Invoice, PaidUpdate, Payment, Store
from bot.store.payments import InvoiceClaim
from bot.texts import lang_of, plural, tr

log = logging.getLogger(__name__)


def _is_bot_admin(message: Message, context: BotContext) -> bool:
    user = message.from_user
    return (
        user is not None
        and message.sender_chat is None
        and user.id in context.settings.admin_user_ids
    )


def _check_buyer(context: BotContext, user_id: int | None, chat_id: int | None = None) -> None:
    """Raise RefusedError unless ALLOWED_USER_IDS lets this person use the bot, and, for the
    credits of a chat identity (``chat_id``), ALLOWED_CHAT_IDS lets that chat. A person's own
    credits are theirs wherever they go, so the chat allowlist does not apply to them."""
    if chat_id is None:
        limits.check_user(context.settings, user_id)
    else:
        limits.check_access(context.settings, user_id=user_id, chat_id=chat_id)


# A locked database: the first tries wait at most about this long in the handler; then the buyer
# is told the payment will be credited, and the tries go on in the background until it is.
_PAYMENT_QUICK_TRIES = 4  # 0.1 + 0.2 + 0.4 s
_PAYMENT_RETRY_MOST = 5.0  # seconds between background tries
_REFUND_RETRY_MOST = 600.0  # seconds between asking Telegram again about a pending refund


async def start_buy(update: Update, context: BotContext) -> None:
    """``/start buy``: the packs, as /buy shows them; no other handler sees the update."""
    await buy_command(update, context)
    raise ApplicationHandlerStop


async def buy_command(update: Update, context: BotContext) -> None:
    """/buy: the packs as buttons; a tap sends an invoice to the buyer's private chat. Sent as a
    chat (a channel, or a group's anonymous admin), the packs buy that chat's credits."""
    message = update.message
    if message is None:
        return
    chat = message.sender_chat
    try:
        _check_buyer(
            context,
            message.from_user.id if message.from_user and chat is None else None,
            chat.id if chat is not None else None,
        )
    except SeqbotError as exc:
        await message.reply_text(exc.text(lang(update)), do_quote=True)
        return
    name = _chat_name(chat.title, chat.username, chat.id) if chat is not None else None
    await message.reply_text(
        payments.buy_text(context.settings, lang(update), chat=name),
        reply_markup=payments.buy_keyboard(
            context.settings, lang(update), chat_id=chat.id if chat is not None else None
        ),
        do_quote=True,
    )


def _chat_name(title: str | None, username: str | None, chat_id: int) -> str:
    """A chat identity's name for a text: its title, @username, or id (bounded)."""
    return render.shorten(title or (f"@{username}" if username else str(chat_id)), 64)


async def buy_button(update: Update, context: BotContext) -> None:
    """A tap on a /buy pack: the person's open invoice for it is sent again (or, tapped moments
    ago, nothing is); else a new one with an unguessable payload, sent privately."""
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
        _check_buyer(context, user.id, button.chat_id)
    except SeqbotError as exc:
        await query.answer(exc.text(language), show_alert=True)
        return
    chat_name = None
    if button.chat_id is not None:
        here = query.message.chat if query.message else None
        same = here is not None and here.id == button.chat_id
        chat_name = _chat_name(
            here.title if here and same else None,
            here.username if here and same else None,
            button.chat_id,
        )
    now = time.time()
    fresh = Invoice(
        payload=secrets.token_urlsafe(payments.PAYLOAD_BYTES),
        # A tap always comes from the real person: the credits are theirs, or the chat's the
        # button names (a channel's or a group's, whose anonymous admins share them).
        requester_id=button.chat_id if button.chat_id is not None else user.id,
        user_id=user.id,
        images=button.images,
        stars=stars,
        expires_at=now + payments.INVOICE_TTL,
    )
    try:
        claim, invoice = context.store.claim_invoice(
            fresh, now=now, window=context.settings.repeat_window
        )
    except SeqbotError as exc:
        await query.answer(exc.text(language), show_alert=True)
        return
    if claim == InvoiceClaim.RECENT:
        await query.answer(
            tr(language, "I sent you this invoice a moment ago: it is in our private chat.")
        )
        return
    try:
        await context.bot.send_invoice(
            chat_id=user.id,
            title=payments.invoice_title(button.images, language),
            description=payments.invoice_description(button.images, language, chat=chat_name),
            payload=invoice.payload,
            currency=payments.CURRENCY,
            prices=[LabeledPrice(payments.invoice_title(button.images, language), stars)],
        )
    except (Forbidden, BadRequest) as exc:
        context.store.invoice_unsent(invoice.payload)
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
    except BaseException:
        context.store.invoice_unsent(invoice.payload)
        raise
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
    refused: str | None = None
    if invoice is not None and invoice.user_id == query.from_user.id:
        # The allowlists may have changed since the invoice was sent.
        chat = invoice.requester_id if invoice.requester_id != invoice.user_id else None
        try:
            _check_buyer(context, query.from_user.id, chat)
        except SeqbotError as exc:
            refused = exc.text(language)
    if invoice is None or invoice.user_id != query.from_user.id:
        error = tr(language, "This invoice is not known. Please use /buy again.")
    elif refused is not None:
        error = refused
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
    """Telegram took the Stars: record the payment and add its credits, once per charge id.

    A database that stays locked never makes the buyer pay twice: after a few quick tries the
    payment goes to a file next to the database (recorded from there at the next start), the
    buyer is told it will be credited, and the tries go on in the background until it is.
    """
    message = update.message
    if message is None or message.successful_payment is None:
        return
    paid = message.successful_payment
    language = lang(update)
    update_ = PaidUpdate(
        charge_id=paid.telegram_payment_charge_id,
        provider_charge_id=paid.provider_payment_charge_id,
        payload=paid.invoice_payload,
        user_id=message.from_user.id if message.from_user else message.chat.id,
        stars=paid.total_amount,
        chat_id=message.chat.id,
        lang=language,
    )
    delay = 0.1
    kept = False
    for _ in range(_PAYMENT_QUICK_TRIES):
        try:
            credited, payment = _record(context.store, update_)
        except sqlite3.OperationalError as exc:
            error = exc
            # On disk at the first refusal: Telegram will not send this update again, and the
            # process may stop at any moment. A payment recorded after all is a no-op at replay.
            kept = kept or _keep(context.store, update_, exc)
            await asyncio.sleep(delay)
            delay *= 2
            continue
        await _thank(context.bot, context.store, update_, credited, payment)
        return
    log.error(
        "payment %s not recorded yet (database: %s): user %d, payload %s, %d Stars; "
        "retried in the background",
        update_.charge_id,
        error,
        update_.user_id,
        update_.payload,
        update_.stars,
    )
    await message.reply_text(
        tr(
            language,
            "Your payment arrived (charge {charge}), but the bot could not record it just now. "
            "Do not pay again: it will be credited, and I will tell you here when it is "
            "(or see /paysupport).",
            charge=update_.charge_id[:60],
        )
    )
    context.runner.background.run(
        _keep_recording(context.bot, context.store, update_, 0.2),
        f"recording payment {update_.charge_id}",
    )


def _keep(store: Store, paid: PaidUpdate, error: sqlite3.OperationalError) -> bool:
    """Journal a payment SQLite refused (recorded from there at the next start)."""
    try:
        store.journal_payment(paid)
    except OSError as exc:  # then the log line is the only record: every detail goes in it
        log.error(
            "payment %s could not be kept (database: %s; file: %s): user %d, payload %s, %d Stars",
            paid.charge_id,
            error,
            exc,
            paid.user_id,
            paid.payload,
            paid.stars,
        )
        return False
    log.warning("payment %s kept in %s until SQLite takes it", paid.charge_id, store.journal_path)
    return True


def _record(store: Store, paid: PaidUpdate) -> tuple[bool, Payment]:
    return store.record_payment(
        charge_id=paid.charge_id,
        provider_charge_id=paid.provider_charge_id,
        payload=paid.payload,
        user_id=paid.user_id,
        stars=paid.stars,
    )


async def _keep_recording(bot: Bot, store: Store, paid: PaidUpdate, delay: float) -> None:
    """Try to record a payment until SQLite takes it (a stop leaves it to the journal)."""
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 2, _PAYMENT_RETRY_MOST)
        try:
            credited, payment = _record(store, paid)
        except sqlite3.OperationalError as exc:
            log.warning("payment %s: still not recorded: %s", paid.charge_id, exc)
            continue
        await _thank(bot, store, paid, credited, payment)
        return


async def on_start(bot: Bot, store: Store, *, first_delay: float) -> None:
    """At start: record the payments kept on disk when SQLite refused them (telling each buyer
    whose credits arrive only now). (Refunds left pending: :func:`resolve_refunds`.)"""
    delay = first_delay
    while True:
        done, waiting = store.replay_journal()
        for paid, credited, payment in done:
            log.info("payment %s recorded from the journal", paid.charge_id)
            if credited:
                await _thank(bot, store, paid, credited, payment)
        if not waiting:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, _PAYMENT_RETRY_MOST)


async def _thank(
    bot: Bot, store: Store, paid: PaidUpdate, credited: bool, payment: Payment
) -> None:
    """Tell the buyer what their payment added (or that its invoice is not known)."""
    language = paid.lang
    if not payment.images:
        log.error(
            "payment %s of %d Stars for an unknown invoice: recorded, no credits added",
            payment.charge_id,
            payment.stars,
        )
        await bot.send_message(
            paid.chat_id,
            tr(
                language,
                "Your payment arrived, but the bot does not know its invoice. "
                "Please contact /paysupport and quote charge {charge}.",
                charge=payment.charge_id,
            ),
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
    balance = plural(language, store.balance(payment.requester_id), "image")
    images = plural(language, payment.images, "image")
    if payment.requester_id != paid.user_id:  # bought for a chat identity
        text = tr(
            language,
            "Thank you! {images} added to the credits of the chat you bought them for "
            "(it now has {balance}).",
            images=images,
            balance=balance,
        )
    else:
        text = tr(
            language,
            "Thank you! {images} added. Your balance: {balance}.",
            images=images,
            balance=balance,
        )
    await bot.send_message(paid.chat_id, text)


async def refunded_payment(update: Update, context: BotContext) -> None:
    """Telegram says it returned a payment's Stars: the refund is done (once), whoever asked."""
    message = update.message
    refunded = message.refunded_payment if message else None
    if message is None or refunded is None:
        return
    charge = refunded.telegram_payment_charge_id
    payment, removed = context.store.confirm_refund(charge)
    if payment is None:
        log.warning("Telegram refunded payment %s, which the bot does not know", charge[:60])
        return
    log.info("payment %s: Telegram confirms the refund (%d credits removed now)", charge, removed)
    language = lang(update)
    await message.reply_text(
        tr(
            language,
            "Payment {charge} was refunded: {stars} ⭐ went back to you and its credits were "
            "removed. Your balance: {balance}.",
            charge=charge[:60],
            stars=payment.stars,
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
    user_id = message.from_user.id if message.from_user else None
    free_most = payments.free_per_day(settings, user_id=user_id, requester_id=requester)
    free_left = max(0, free_most - store.free_used(requester, limits.day_start(now)))
    text = payments.balance_text(
        settings,
        lang(update),
        free_most=free_most,
        balance=store.balance(requester),
        reserved=store.reserved(requester),
        free_left=free_left,
        payments=store.payments_of(requester),
        exempt_admin=payments.exempt(settings, user_id=user_id, requester_id=requester),
    )
    await message.reply_text(text, do_quote=True)


class RefundAnswer(enum.Enum):
    """What Telegram said to refundStarPayment."""

    DONE = "done"  # the Stars went back (now, or already before)
    REFUSED = "refused"  # a definite no: the credits came back
    UNKNOWN = "unknown"  # no answer: the refund stays pending and is asked again


async def ask_refund(bot: Bot, store: Store, payment: Payment) -> tuple[RefundAnswer, str]:
    """Ask Telegram to return a pending refund's Stars; its answer decides, and is recorded.

    A timeout or a network error may follow a refund Telegram made, so it keeps the refund
    pending (credits taken); CHARGE_ALREADY_REFUNDED means it was made. Returns (the answer,
    Telegram's error text if any).
    """
    charge = payment.charge_id
    try:
        await bot.refund_star_payment(
            user_id=payment.user_id or payment.requester_id, telegram_payment_charge_id=charge
        )
    except BadRequest as exc:  # a definite answer (BadRequest is also a NetworkError: first)
        if "charge_already_refunded" in exc.message.lower():
            store.confirm_refund(charge)
            log.info("payment %s: Telegram had already refunded it", charge)
            return RefundAnswer.DONE, ""
        store.undo_refund(charge)
        log.warning("refund of %s refused by Telegram: %s", charge, exc.message)
        return RefundAnswer.REFUSED, exc.message
    except TelegramError as exc:
        log.warning("refund of %s: no answer from Telegram (%s); still pending", charge, exc)
        return RefundAnswer.UNKNOWN, str(exc)
    store.confirm_refund(charge)
    log.info(
        "payment %s refunded: %d Stars, %d credits removed", charge, payment.stars, payment.images
    )
    return RefundAnswer.DONE, ""


REFUNDS = "refunds"  # the background loop of resolve_refunds: one at a time


async def resolve_refunds(
    bot: Bot, store: Store, *, first_delay: float, wait_first: bool = False
) -> None:
    """Ask Telegram about every pending refund (at start: the bot may have stopped between
    taking the credits and hearing Telegram), again and again, less often, until none is left.
    ``wait_first``: Telegram was just asked; wait ``first_delay`` before asking again."""
    delay = first_delay
    if wait_first:
        await asyncio.sleep(delay)
        delay = min(delay * 2, _REFUND_RETRY_MOST)
    while pending := store.pending_refunds():
        unknown = 0
        for payment in pending:
            answer, _ = await ask_refund(bot, store, payment)
            unknown += answer == RefundAnswer.UNKNOWN
        if not unknown:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, _REFUND_RETRY_MOST)


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
        elif known.refund_state == "done":
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
    result, error = await ask_refund(context.bot, store, payment)
    if result == RefundAnswer.REFUSED:
        answer = tr(
            language,
            "Telegram refused the refund of {charge}: {error}",
            charge=charge[:60],
            error=error[:200],
        )
    elif result == RefundAnswer.UNKNOWN:
        answer = tr(
            language,
            "Telegram did not answer about the refund of {charge}. Its credits stay removed "
            "and the refund is pending: the bot asks Telegram again until it answers (send "
            "/refund {charge} again to ask now).",
            charge=charge[:60],
        )
        # One loop asks about every pending refund: another /refund (or the start's) joins it.
        context.runner.background.run_once(
            resolve_refunds(
                context.bot,
                store,
                first_delay=context.settings.telegram_retry_delay,
                wait_first=True,
            ),
            REFUNDS,
        )
    else:
        answer = tr(
            language,
            "Refunded {stars} ⭐ of payment {charge}; {images} removed from the balance.",
            stars=payment.stars,
            charge=charge[:60],
            images=plural(language, payment.images, "image"),
        )
    await message.reply_text(answer, do_quote=True)


async def return_credits_command(update: Update, context: BotContext) -> None:
    """/return_credits <job id> (bot admins): give back the credits of a finished job whose
    submit went unanswered (still reserved) once RunComfy turned out not to bill it. A job
    that RunComfy took, or that delivered, keeps its credits spent."""
    message = update.message
    if message is None or not _is_bot_admin(message, context):
        return
    language = lang(update)
    args = context.args or []
    m = JOB_ID_RE.fullmatch(args[0]) if args else None
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
    held = context.store.reservation(job.id)
    returned = context.store.return_reservation(job.id) if held else 0
    if returned or (held and held[0] == "reserved"):
        answer = tr(
            language,
            "Job #{id}: {images} returned to the balance.",
            id=job.id,
            images=plural(language, returned, "image"),
        )
    elif held is None or not held[1]:
        answer = tr(language, "Job #{id} holds no credits: nothing returned.", id=job.id)
    elif held[0] == "returned":
        answer = tr(language, "Job #{id}: its credits were already returned.", id=job.id)
    elif job.delivered_images:
        answer = tr(
            language,
            "Job #{id} delivered its images: its credits are spent. Nothing returned.",
            id=job.id,
        )
    else:
        answer = tr(
            language,
            "Job #{id} reached RunComfy (request {request}): its credits are spent. Nothing "
            "returned.",
            id=job.id,
            request=job.request_id or "-",
        )
    await message.reply_text(answer, do_quote=True)


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
