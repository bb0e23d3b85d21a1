"""Telegram calls that must get through: flood waits and network trouble are waited out.

Used for everything a user must see (the status message, images, the follow-up); progress edits
use their own, lighter rules (``status``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from telegram import ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot import metrics
from bot.errors import DeliveryFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 6
_MAX_BACKOFF = 30.0
_RETRY_AFTER_RE = re.compile(r"retry after ([0-9]+)", re.IGNORECASE)


def reply(message_id: int) -> ReplyParameters:
    """Reply to ``message_id``, or just post if the user deleted it meanwhile."""
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def seconds(value: object) -> float:
    """A ``retry_after`` (seconds, or a timedelta in newer python-telegram-bot) in seconds."""
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)  # type: ignore[arg-type]


async def with_retries(
    send: Callable[[], Awaitable[T]],
    *,
    first_delay: float = 1.0,
    on_album_retry: Callable[[str], None] | None = None,
) -> T:
    """Call Telegram until it takes the call: flood waits as asked, network trouble with backoff.

    A 400 that carries "retry after N" (an album refused part-way) is a flood wait too; then
    ``on_album_retry`` gets its text first, to drop the items already delivered. Any other 400
    raises DeliveryFailed; Forbidden (blocked, removed) is raised as it is, at once.
    """
    delay = first_delay
    for attempt in range(1, ATTEMPTS + 1):
        reason = "429"
        try:
            return await send()
        except RetryAfter as exc:
            wait = seconds(exc.retry_after)
        except BadRequest as exc:
            m = _RETRY_AFTER_RE.search(exc.message)
            if not m:
                raise DeliveryFailed("Telegram refused the images.", detail=exc.message) from None
            wait = float(m.group(1))
            if on_album_retry:
                on_album_retry(exc.message)
        except Forbidden:
            raise
        except NetworkError as exc:  # includes TimedOut
            log.warning("Telegram send failed (attempt %d): %s", attempt, exc)
            wait, delay = delay, min(delay * 2, _MAX_BACKOFF)
            reason = metrics.telegram_failure(exc)
        if attempt < ATTEMPTS:
            metrics.retried("telegram", reason)
            await asyncio.sleep(wait)
    raise DeliveryFailed("Telegram did not accept the images after several tries.")


class Background:
    """Work nobody waits for (progress edits, copies to disk): failures are logged, not raised,
    and ``stop`` cancels what is left."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Start ``work``; ``what`` names it in the log if it fails."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.info("%s failed in the background: %s", what, exc)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel everything still running and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
