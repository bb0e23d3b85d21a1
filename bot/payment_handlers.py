"""Telegram handlers for payments in Telegram Stars: registered only when STARS_PACKS is set.

/buy and its buttons send invoices; pre-checkout queries are answered at once; a successful
payment is credited exactly once; /balance, /refund, /return_credits, /paysupport and /terms.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time

from telegram import LabeledPrice, Message, Update
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import callbacks, limits, payments
from bot.callbacks import BuyButton
from bot.context import BotContext
from bot.errors import RefusedError, SeqbotError
from bot.handlers import JOB_ID_RE, lang
from bot.permissions import requester_of
from bot.store import Invoice
from bot.texts import lang_of, plural, tr

log = logging.getLogger(__name__)


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


async def start_buy(update: Update, context: BotContext) -> None:
    """``/start buy``: the packs, as /buy shows them; no other handler sees the update."""
    await buy_command(update, context)
    raise ApplicationHandlerStop


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
