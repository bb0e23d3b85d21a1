"""Telegram's flood limits, kept chat by chat: the bot's python-telegram-bot rate limiter.

Telegram limits a bot three ways: about 30 messages a second in all, 20 a minute in a group and
about one a second in a private chat (short bursts pass). Each is a ``RankedBucket`` (slots.py):
replies and images get a slot before status edits that asked earlier.

A 429 (``RetryAfter``) that a chat's own limit earned concerns that chat only: its requests wait
as Telegram asks, every other chat's go on. Only a 429 on a request without a chat (or one
several chats earn at once, which is the bot's overall budget) holds every chat. Answers to a
button tap or a checkout never wait here at all: Telegram drops a checkout that is not answered
within 10 seconds, and neither takes a message slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from telegram.error import BadRequest, RetryAfter
from telegram.ext import BaseRateLimiter

from bot import metrics
from bot.botapi import flood_wait
from bot.slots import RankedBucket

log = logging.getLogger(__name__)

# An edit waits at most this long for the messages that asked after it (progress edits are mostly
# skipped under load anyway, see StatusBoard._worth_it; what still waits is mostly final states).
# Long enough that under a backlog the images go first (1,000 jobs at once: the median first
# image at 46 s with 5 s, at 33 s with 30 s), short enough that a job's "Done" follows its images within half a
# minute and its task, with its memory, ends (10,000 queued jobs).
EDIT_MAX_WAIT = 30.0
# Telegram's answers to a user's action: they take no message slot and wait for no flood hold.
ANSWERS = frozenset(
    {
        "answerCallbackQuery",
        "answerPreCheckoutQuery",
        "answerShippingQuery",
        "answerInlineQuery",
        "answerWebAppQuery",
    }
)
# Telegram drops a checkout not answered within 10 s (a tap's spinner gives up about as soon):
# an answer whose flood wait ends later than this after its first try is not sent again.
ANSWER_DEADLINE = 10.0
# 429s from this many chats within SPREAD_WINDOW seconds: the bot's overall budget, not theirs.
SPREAD_CHATS = 3
SPREAD_WINDOW = 1.0
# Added to every wait Telegram asks for, as python-telegram-bot does (its clock and ours differ).
_MARGIN = 0.1
Chat = int | str  # a chat id, or a @username (treated as a group, as Telegram cannot say)


def chat_of(data: dict[str, Any] | None) -> Chat | None:
    """The chat a request is about (``chat_id``), an integer where it is one."""
    raw = (data or {}).get("chat_id")
    if raw is None or isinstance(raw, bool):
        return None
    with contextlib.suppress(ValueError, TypeError):
        return int(raw)
    return str(raw)


def is_group(chat: Chat) -> bool:
    """Groups, supergroups and channels have negative ids (or a @username)."""
    return isinstance(chat, str) or chat < 0


def posts_message(endpoint: str) -> bool:
    """Whether the request posts or changes a message: what a chat's own limit counts."""
    if endpoint == "sendChatAction":
        return False
    return endpoint.startswith(("send", "edit", "copy", "forward", "stopPoll"))


class FloodHolds:
    """Until when each chat (and the whole bot, ``None``) must wait, as Telegram asked.

    Pure bookkeeping on a given clock; ``PriorityRateLimiter`` sleeps on it. Holds that have
    passed are forgotten, so it stays as small as the chats flooded right now.
    """

    def __init__(
        self, spread_chats: int = SPREAD_CHATS, spread_window: float = SPREAD_WINDOW
    ) -> None:
        self.spread_chats = spread_chats
        self.spread_window = spread_window
        self.everyone = 0.0  # the whole bot waits until then
        self._chats: dict[Chat, float] = {}
        self._recent: dict[Chat, float] = {}  # chat -> when it last earned a 429

    def until(self, chat: Chat | None) -> float:
        """When requests for ``chat`` may go again (for ``None``: when the whole bot may)."""
        own = self._chats.get(chat, 0.0) if chat is not None else 0.0
        return max(self.everyone, own)

    def hold(self, chat: Chat | None, seconds: float, now: float) -> bool:
        """Telegram asked ``chat`` (None: the bot) to wait ``seconds`` from ``now``.

        Returns whether the whole bot now waits: a 429 without a chat, or 429s from
        ``spread_chats`` chats within ``spread_window`` seconds (the overall limit shows that way).
        """
        end = now + seconds + _MARGIN
        self._forget(now)
        if chat is not None:
            self._chats[chat] = max(self._chats.get(chat, 0.0), end)
            self._recent[chat] = now
            if len(self._recent) < self.spread_chats:
                return False
        self.everyone = max(self.everyone, end)
        return True

    @property
    def held(self) -> int:
        """Chats waiting out a flood hold of their own (passed ones may still count)."""
        return len(self._chats)

    def _forget(self, now: float) -> None:
        self._chats = {c: t for c, t in self._chats.items() if t > now}
        self._recent = {c: t for c, t in self._recent.items() if now - t < self.spread_window}


class _Pace:
    """The per-chat buckets: a group's 20 a minute, a private chat's one a second with bursts.

    Buckets of chats that went quiet are dropped (checked when their number has doubled), so a
    bot with 10,000 chats keeps only the busy ones.
    """

    def __init__(self, group: tuple[float, float], private: tuple[float, float]) -> None:
        self.group = group  # (capacity, slots a second); capacity 0: no limit
        self.private = private
        self._buckets: dict[Chat, RankedBucket] = {}
        self._prune_at = 512

    def bucket(self, chat: Chat, now: float) -> RankedBucket | None:
        """The chat's bucket (None when its kind of chat has no limit)."""
        bucket = self._buckets.get(chat)
        if bucket is not None:
            return bucket
        capacity, rate = self.group if is_group(chat) else self.private
        if capacity <= 0 or rate <= 0:
            return None
        if len(self._buckets) >= self._prune_at:
            self._buckets = {c: b for c, b in self._buckets.items() if not b.idle(now)}
            self._prune_at = max(512, 2 * len(self._buckets))
        bucket = self._buckets[chat] = RankedBucket(capacity, rate)
        return bucket

    async def close(self) -> None:
        for bucket in self._buckets.values():
            await bucket.close()


class PriorityRateLimiter(BaseRateLimiter[int]):
    """Telegram's flood limits with edits yielding to new messages, and 429s kept to their chat.

    Per request: wait out the chat's flood hold (a global one too), take a slot of the chat's
    own bucket (messages and edits only), then one of the overall bucket (anything about a chat,
    as python-telegram-bot does). A ``RetryAfter`` holds the chat it came from (the whole bot if
    it has none) and the request is tried again, at most ``max_retries`` times. Answers skip all
    of it, and their own 429 holds nobody else (only the answer is tried again, while of use).
    An edit waits for messages at most ``edit_max_wait`` seconds in each bucket, or under a long
    backlog no job would ever show its final state.
    """

    def __init__(
        self,
        *,
        overall_max_rate: float = 30.0,
        overall_time_period: float = 1.0,
        group_max_rate: float = 20.0,
        group_time_period: float = 60.0,
        private_burst: float = 3.0,
        private_per_second: float = 1.0,
        max_retries: int = 0,
        edit_max_wait: float = EDIT_MAX_WAIT,
        holds: FloodHolds | None = None,
    ) -> None:
        self.edit_max_wait = edit_max_wait
        self.max_retries = max_retries
        self._slots: RankedBucket | None = None
        if overall_max_rate > 0 and overall_time_period > 0:
            # As python-telegram-bot's: 30 at once, 30 a second; ranked.
            self._slots = RankedBucket(overall_max_rate, overall_max_rate / overall_time_period)
        group_rate = group_max_rate / group_time_period if group_time_period > 0 else 0.0
        self._pace = _Pace((group_max_rate, group_rate), (private_burst, private_per_second))
        self.holds = holds or FloodHolds()

    @property
    def waiting(self) -> int:
        """Requests (messages and edits) waiting for an overall slot: Telegram's backlog."""
        return self._slots.waiting if self._slots is not None else 0

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Stop the slot hand-out."""
        if self._slots is not None:
            await self._slots.close()
        await self._pace.close()

    async def process_request(  # type: ignore[override]
        self, callback: Any, args: Any, kwargs: Any, endpoint: str, data: Any, rate_limit_args: Any
    ) -> Any:
        """Send the request when the limits allow; flood waits are waited out and tried again."""
        tries = (rate_limit_args or self.max_retries) + 1
        if endpoint in ANSWERS:
            return await self._answer(callback, args, kwargs, tries)
        chat = chat_of(data)
        later = self.edit_max_wait if endpoint.startswith("edit") else 0.0
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            await self._held(chat)
            if chat is not None:
                bucket = self._pace.bucket(chat, loop.time()) if posts_message(endpoint) else None
                if bucket is not None:
                    await bucket.acquire(later)
                if self._slots is not None:
                    await self._slots.acquire(later)
                await self._held(chat)  # a hold that began while this request waited for a slot
            if attempt > 1:
                metrics.retried("telegram", "429")
            try:
                return await callback(*args, **kwargs)
            except (RetryAfter, BadRequest) as exc:
                wait = flood_wait(exc)
                if wait is None:
                    raise
                self._hold(chat, wait, endpoint)
                if isinstance(exc, BadRequest) or attempt == tries:
                    raise  # an album cut short: the caller sends only what is missing

    async def _answer(self, callback: Any, args: Any, kwargs: Any, tries: int) -> Any:
        """An answer to a tap or a checkout goes at once, whatever else waits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_DEADLINE
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                metrics.retried("telegram", "429")
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                # Held alone: one user's taps must not stop every chat's messages.
                wait = flood_wait(exc) or 0.0
                log.info("Telegram flood control: an answer waits %.0f s", wait)
                if attempt == tries or loop.time() + wait > deadline:
                    raise  # too late to be of use: the user's client has given up
                await asyncio.sleep(wait + _MARGIN)

    def _hold(self, chat: Chat | None, wait: float, endpoint: str) -> None:
        everyone = self.holds.hold(chat, wait, asyncio.get_running_loop().time())
        whom = f"chat {chat}" if chat is not None else "the bot"
        also = " (and the whole bot)" if everyone and chat is not None else ""
        log.info("Telegram flood control: %s waits %.0f s%s after %s", whom, wait, also, endpoint)

    async def _held(self, chat: Chat | None) -> None:
        loop = asyncio.get_running_loop()
        while True:  # a deadline, not an event: look again, the hold may have grown meanwhile
            wait = self.holds.until(chat) - loop.time()
            if wait <= 0:
                return
            await asyncio.sleep(wait)
