"""Who may cancel a job: its requester, the chat's admins (asked of Telegram, cached) or bot admins;
and who is outside the allowlists altogether."""

from __future__ import annotations

import logging
import time

from telegram import Bot, Chat, Message, User
from telegram.constants import ChatID, ChatMemberStatus
from telegram.error import TelegramError

from bot import limits
from bot.config import Settings
from bot.errors import RefusedError
from bot.models import Job, Origin
from bot.texts import lang_of

log = logging.getLogger(__name__)

ADMIN_CACHE_SECONDS = 60.0
ANONYMOUS_ADMIN = ChatID.ANONYMOUS_ADMIN  # @GroupAnonymousBot: every anonymous admin posts as it
CHANNEL_BOT = ChatID.FAKE_CHANNEL  # @Channel_Bot: everyone posting as a channel posts as it
_SHARED_USERS = frozenset({ANONYMOUS_ADMIN, CHANNEL_BOT})


class Permissions:
    """Answers "may this person cancel that job?" with a short-lived cache of admin lookups."""

    def __init__(self, bot: Bot, bot_admins: frozenset[int]) -> None:
        self.bot = bot
        self.bot_admins = bot_admins
        self._admins: dict[tuple[int, int], tuple[bool, float]] = {}

    async def is_chat_admin(self, chat_id: int, user_id: int) -> bool:
        """Whether Telegram says the user administers the chat (cached briefly)."""
        if chat_id > 0:
            return False  # private chats have no admins
        key = (chat_id, user_id)
        cached = self._admins.get(key)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("could not check admin status in chat %d: %s", chat_id, exc)
            return False
        answer = member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
        self._admins[key] = (answer, now + ADMIN_CACHE_SECONDS)
        return answer

    async def may_administer(
        self, *, chat_id: int, user: User | None, sender_chat: Chat | None = None
    ) -> bool:
        """May change the chat's settings: anyone in a private chat; admins in groups."""
        if chat_id > 0 or (sender_chat is not None and sender_chat.id == chat_id):
            return True
        if user is None:
            return False
        return user.id in self.bot_admins or await self.is_chat_admin(chat_id, user.id)

    async def may_cancel(
        self, job: Job, *, chat_id: int, user: User | None, sender_chat: Chat | None = None
    ) -> bool:
        """The requester, a chat admin (anonymous ones too) or a bot admin may cancel."""
        if sender_chat is not None:
            # Only admins can post as the group itself; a channel may cancel its own jobs.
            return sender_chat.id in (chat_id, job.requester_id)
        if user is None:
            return False
        if user.id in self.bot_admins:
            return True
        if user.id == job.requester_id and user.id not in _SHARED_USERS:
            return True
        return await self.is_chat_admin(chat_id, user.id)


def requester_of(message: Message) -> int | None:
    """Whose job a message asks for: the chat it was posted as (a channel, or the group for an
    anonymous admin), else its sender. Everyone posting as a channel shares one ``from`` user."""
    if message.sender_chat is not None:
        return message.sender_chat.id
    return message.from_user.id if message.from_user else None


def origin_of(message: Message) -> Origin:
    """Where a job asked for by the command ``message`` comes from, and who asked."""
    user = message.from_user
    return Origin(
        chat_id=message.chat.id,
        message_id=message.message_id,
        user_id=user.id if user else None,
        requester_id=requester_of(message),
        user_name=requester_name(user, message.sender_chat),
        thread_id=message.message_thread_id if message.is_topic_message else None,
        chat_type=message.chat.type,
        lang=lang_of(user.language_code if user else None),
    )


def requester_name(user: User | None, sender_chat: Chat | None) -> str | None:
    """The name kept with a job: ``@name`` or a full name; for a message posted as a chat, that
    chat's (``render.requester`` says "an admin of …" when it is the group itself)."""
    if sender_chat is not None:
        return sender_chat.title or (f"@{sender_chat.username}" if sender_chat.username else None)
    if user is None:
        return None
    return f"@{user.username}" if user.username else user.full_name


def outsider_refusal(
    settings: Settings, *, user_id: int | None, chat_id: int | None, private: bool, buying: bool
) -> RefusedError | None:
    """Why ALLOWED_CHAT_IDS / ALLOWED_USER_IDS keep this update out; None when it may come in.

    Bot admins always may. ``buying`` (/buy, its buttons, /balance…) in a private chat answers to
    the user allowlist only: credits are the person's own, and a group's /buy sends them there.
    """
    try:
        if buying and private:
            limits.check_user(settings, user_id)
        else:
            limits.check_access(settings, user_id=user_id, chat_id=chat_id)
    except RefusedError as exc:
        return exc
    return None
