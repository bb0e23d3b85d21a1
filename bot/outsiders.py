"""The gate in front of every handler: updates from outside ALLOWED_CHAT_IDS / ALLOWED_USER_IDS.

An outsider must not be able to make the bot post at will (every post counts against Telegram's
flood limits of that chat and of the bot): a command gets one short refusal per chat and window
(OUTSIDER_REPLY_SECONDS), everything else nothing, a button tap only its callback answer.
"""

from __future__ import annotations

import logging

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot import callbacks, payments
from bot.context import BotContext
from bot.handlers import answer_quietly, lang
from bot.permissions import outsider_refusal

log = logging.getLogger(__name__)

# Commands an allowed user may send from a private chat outside ALLOWED_CHAT_IDS (credits are
# the person's own): those of payments.COMMANDS, and "/start buy" (the link a group's /buy gives).
_BUYING_COMMANDS = frozenset(payments.COMMANDS)


def command_for_me(message: Message, username: str | None) -> tuple[str, str] | None:
    """(command, rest of the text) when ``message`` starts with a command for this bot:
    ``/cmd`` or ``/cmd@this_bot`` (``/cmd@other_bot`` is another bot's), in its text or caption."""
    text = message.text if message.text is not None else message.caption
    entities = message.entities if message.text is not None else message.caption_entities
    if not text or not entities:
        return None
    first = entities[0]
    if first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
        return None
    name, _, addressee = text[1 : first.length].partition("@")
    if addressee and addressee.lower() != (username or "").lower():
        return None
    return name.lower(), text[first.length :].strip()


def _buying(settings_payments: bool, command: tuple[str, str] | None) -> bool:
    if not settings_payments or command is None:
        return False
    name, rest = command
    return name in _BUYING_COMMANDS or (name == "start" and rest == "buy")


async def gate(update: Update, context: BotContext) -> None:
    """Before every other handler: with ALLOWED_CHAT_IDS or ALLOWED_USER_IDS set, an update from
    outside them ends here. A command gets one short refusal per chat and window
    (OUTSIDER_REPLY_SECONDS), so strangers cannot make the bot post at will; a button tap gets a
    callback answer only. Payments pass: a pre-checkout is answered, a payment always credited.
    """
    settings = context.settings
    if not (settings.allowed_chat_ids or settings.allowed_user_ids):
        return
    language = lang(update)
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message else None
        refusal = outsider_refusal(
            settings,
            user_id=query.from_user.id,
            chat_id=chat.id if chat else None,
            private=chat is not None and chat.type == ChatType.PRIVATE,
            buying=settings.payments and bool(callbacks.BUY_PATTERN.match(query.data or "")),
        )
        if refusal is None:
            return
        await answer_quietly(query, refusal.text(language))
        raise ApplicationHandlerStop
    message = update.message
    # Telegram's own word on money is never held back: a payment is credited, a refund (one
    # made outside the bot, too) takes its credits back, whoever the allowlists name.
    if message is None or message.successful_payment or message.refunded_payment:
        return
    command = command_for_me(message, context.bot.username)
    user = message.from_user
    refusal = outsider_refusal(
        settings,
        user_id=user.id if user else None,
        chat_id=message.chat.id,
        private=message.chat.type == ChatType.PRIVATE,
        buying=_buying(settings.payments, command),
    )
    if refusal is None:
        return
    if command is not None and context.repeats.refuse_outsider(message.chat.id):
        log.info(
            "refused /%s in chat %d (outside the allowlists); its next %.0f s are ignored",
            command[0][:32],
            message.chat.id,
            settings.outsider_reply_window,
        )
        await message.reply_text(refusal.text(language), do_quote=True)
    raise ApplicationHandlerStop
