"""Telegram Stars (optional, off unless STARS_PACKS is set): packs, credits and their texts.

A person buys packs of image credits with ``/buy``; ``/buy`` sent as a chat (a channel, or a group's
anonymous admin) buys that chat's credits, paid by whoever taps. A job reserves its images when it
is recorded (``store.create_job``): a person's free images of the day first (a chat identity gets
none: one person can be many chats), then credits; ``jobs`` spends them when RunComfy accepts the
job and returns them when it is cancelled while queued or refused. The handlers live in
``payment_handlers``; the rows in ``store``.
"""

from __future__ import annotations

import datetime as dt

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks, limits
from bot.callbacks import BuyButton
from bot.config import Settings
from bot.errors import RefusedError
from bot.store import Payment, Reserve, Store
from bot.texts import Plural, plural, tr

CURRENCY = "XTR"  # Telegram Stars
INVOICE_TTL = 24 * 3600.0  # an invoice can be paid for a day; then pre-checkout refuses it
PAYLOAD_BYTES = 24  # secrets.token_urlsafe(24): 32 characters, well within Telegram's 128 bytes

PAYSUPPORT_DEFAULT = (
    "Questions about a payment? Write to the operator of this bot and quote the charge id "
    "shown in /balance. A purchase whose credits are all unused can be refunded."
)
TERMS_DEFAULT = (
    "You buy image credits with Telegram Stars; each image uses one credit. The credits of a "
    "job that is cancelled while queued, or refused before it starts, are returned. A "
    "purchase whose credits are all unused can be refunded on request (see /paysupport). "
    "Images are made by a third-party service and may not always match the prompt."
)


# The payment commands for the menu (listed only when payments are on; see app.commands).
COMMANDS = {
    "buy": "Buy image credits with Telegram Stars",
    "balance": "Your image credits and purchases",
    "paysupport": "Help with a payment",
    "terms": "Terms of sale",
}


def paysupport_text(settings: Settings, lang: str | None) -> str:
    """/paysupport: PAYSUPPORT_TEXT as set, else the built-in text in ``lang``."""
    return settings.paysupport_text or tr(lang, PAYSUPPORT_DEFAULT)


def terms_text(settings: Settings, lang: str | None) -> str:
    """/terms: TERMS_TEXT as set, else the built-in text in ``lang``."""
    return settings.terms_text or tr(lang, TERMS_DEFAULT)


def pack_price(settings: Settings, images: int) -> int | None:
    """The Stars the pack of ``images`` costs now, or None if there is no such pack."""
    return next((stars for n, stars in settings.stars_packs if n == images), None)


def exempt(settings: Settings, *, user_id: int | None, requester_id: int | None) -> bool:
    """Bot admins, asking as themselves, pay nothing (as they have no limits)."""
    return user_id is not None and user_id == requester_id and user_id in settings.admin_user_ids


def reserve_for(
    store: Store,
    settings: Settings,
    *,
    user_id: int | None,
    requester_id: int | None,
    count: int,
    now: float,
) -> Reserve | None:
    """What a new job of ``count`` images reserves; None when it needs no credits.

    Raises RefusedError, naming the number needed, when the requester has too few. The store
    checks again inside the job's own transaction (another process may spend meanwhile).
    """
    if not settings.payments or exempt(settings, user_id=user_id, requester_id=requester_id):
        return None
    if requester_id is None:
        raise not_enough(count, 0)
    today = limits.day_start(now)
    per_day = free_per_day(settings, user_id=user_id, requester_id=requester_id)
    free = max(0, per_day - store.free_used(requester_id, today))
    available = free + store.balance(requester_id)
    if count > available:
        raise not_enough(count, available, chat=per_day == 0 and user_id != requester_id)
    return Reserve(requester_id, per_day, today)


def free_per_day(settings: Settings, *, user_id: int | None, requester_id: int | None) -> int:
    """FREE_IMAGES_PER_DAY for a person; 0 for a chat identity (a channel, or a group's anonymous
    admin): one person can post as many chats, and each would bring its own free images."""
    return settings.free_images_per_day if user_id is not None and user_id == requester_id else 0


def not_enough(needed: int, available: int, *, chat: bool = False) -> RefusedError:
    """The refusal for a job that needs more credits than there are."""
    if chat:
        return RefusedError(
            "This job needs {needed}, but this chat has {available} to spend. Images asked "
            "for as a channel or as an anonymous admin use the chat's own credits (free images "
            "are for people): send /buy the same way to buy them, or post as yourself.",
            needed=Plural(needed, "image"),
            available=Plural(available, "image"),
        )
    return RefusedError(
        "This job needs {needed}, but you have {available} to spend (free images of today "
        "included). Buy image credits with /buy.",
        needed=Plural(needed, "image"),
        available=Plural(available, "image"),
    )


def buy_text(settings: Settings, lang: str | None, *, chat: str | None = None) -> str:
    """/buy: what the packs are (``chat``: the name of the chat identity they are bought for)."""
    if chat is not None:
        return tr(
            lang,
            "Buy image credits for {chat} with Telegram Stars: jobs asked for as {chat} use "
            "them, one credit per image. Whoever taps a pack gets the invoice privately and pays.",
            chat=chat,
        )
    return tr(
        lang,
        "Buy image credits with Telegram Stars: one credit makes one image. "
        "Tap a pack and I send you an invoice.",
    )


def buy_keyboard(
    settings: Settings, lang: str | None, *, chat_id: int | None = None
) -> InlineKeyboardMarkup:
    """One button per pack (``chat_id``: they buy that chat identity's credits)."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    tr(
                        lang,
                        "{images} for {stars} ⭐",
                        images=plural(lang, images, "image"),
                        stars=stars,
                    ),
                    callback_data=callbacks.encode(BuyButton(images, chat_id)),
                )
            ]
            for images, stars in settings.stars_packs
        ]
    )


def invoice_title(images: int, lang: str | None) -> str:
    """The invoice's title and price label (1–32 characters): ``10 images``."""
    return plural(lang, images, "image")[:32]


def invoice_description(images: int, lang: str | None, *, chat: str | None = None) -> str:
    """The invoice's description (1–255 characters)."""
    if chat is not None:
        return tr(
            lang,
            "Image credits for {chat}: {images}, used by jobs asked for as {chat}.",
            chat=chat[:64],
            images=plural(lang, images, "image"),
        )[:255]
    return tr(
        lang,
        "Image credits for this bot: {images}. Each image you ask for uses one credit.",
        images=plural(lang, images, "image"),
    )[:255]


def _date(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")


def balance_text(
    settings: Settings,
    lang: str | None,
    *,
    balance: int,
    reserved: int,
    free_most: int,
    free_left: int,
    payments: list[Payment],
    exempt_admin: bool,
) -> str:
    """/balance: credits, free images left today, and the latest purchases."""
    lines = [tr(lang, "Image credits: {images}", images=plural(lang, balance, "image"))]
    if reserved:
        lines.append(
            tr(lang, "Held by jobs in progress: {images}", images=plural(lang, reserved, "image"))
        )
    if free_most:  # none for a chat identity
        lines.append(
            tr(
                lang,
                "Free today: {left} of {most} left (resets at midnight UTC)",
                left=free_left,
                most=free_most,
            )
        )
    if exempt_admin:
        lines.append(tr(lang, "As a bot admin you need no credits."))
    if payments:
        lines.append("")
        lines.append(tr(lang, "Latest purchases:"))
        for p in payments:
            line = tr(
                lang,
                "{date}: {images} for {stars} ⭐ (charge {charge})",
                date=_date(p.paid_at),
                images=plural(lang, p.images, "image"),
                stars=p.stars,
                charge=p.charge_id,
            )
            if p.refunded_at is not None:
                line += " " + tr(lang, "(refunded)")
            elif p.refund_pending:
                line += " " + tr(lang, "(refund under way)")
            lines.append(line)
    else:
        lines.append(tr(lang, "Buy image credits with /buy."))
    return "\n".join(lines)


def stars_line(lang: str | None, *, received: int, refunded: int, cost: str) -> str:
    """For bot admins in /usage: Stars received this month next to RunComfy's cost."""
    return tr(
        lang,
        "Telegram Stars this month: {received} ⭐ received, {refunded} ⭐ refunded; "
        "RunComfy cost this month: {cost}",
        received=received,
        refunded=refunded,
        cost=cost,
    )
