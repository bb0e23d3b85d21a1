"""Telegram calls that must get through: flood waits and network trouble are waited out.

Used for everything a user must see (the status message, images, the follow-up); progress edits
use their own, lighter rules (``status``). A job's images wait out an outage until their delivery
deadline; other calls give up after ``ATTEMPTS`` tries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from telegram import ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot import metrics
from bot.botapi import flood_wait
from bot.errors import DeliveryFailed, TelegramUnreachableError

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 6
MAX_BACKOFF = 60.0
# Past the first ATTEMPTS tries of a long wait, one line in this many: an outage of hours at a
# try a minute stays readable in the log.
_LOG_EVERY = 10
# A bot token, should a transport error ever quote a request URL.
_TOKEN_RE = re.compile(r"[0-9]{3,20}:[A-Za-z0-9_-]{20,}")


def reply(message_id: int) -> ReplyParameters:
    """Reply to ``message_id``, or just post if the user deleted it meanwhile."""
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def error_text(exc: BaseException) -> str:
    """What Telegram (or the network) said, short and safe to log or show: one line, no token,
    no server page (python-telegram-bot quotes a 502's whole HTML body)."""
    text = str(exc).split(". Parsing the server response", 1)[0]
    text = _TOKEN_RE.sub("[REDACTED]", " ".join(text.split())) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


async def with_retries(
    send: Callable[[], Awaitable[T]],
    *,
    what: str | Callable[[], str] = "Telegram call",
    first_delay: float = 1.0,
    max_delay: float = MAX_BACKOFF,
    until: float | None = None,
    on_album_retry: Callable[[str], None] | None = None,
    on_trouble: Callable[[NetworkError], None] | None = None,
) -> T:
    """Call Telegram until it takes the call: flood waits as asked, network trouble with backoff.

    ``what`` names the call in the log ("job 12: sendMediaGroup"). Network errors, timeouts and
    5xx are retried after ``first_delay`` seconds, doubling up to ``max_delay``: ``ATTEMPTS``
    tries in all, or, with ``until`` (a ``time.time()``), as long as that lasts; then
    TelegramUnreachableError, carrying the last error.

    A 400 that carries "retry after N" (an album refused part-way) is a flood wait too; then
    ``on_album_retry`` gets its text first, to drop the items already delivered. Any other 400
    raises DeliveryFailed; Forbidden (blocked, removed) is raised as it is, at once.
    ``on_trouble`` gets each network error before the wait that follows it.
    """
    delay = min(first_delay, max_delay)
    attempt, last = 0, ""

    def name() -> str:
        return what() if callable(what) else what

    while True:
        attempt += 1
        reason = "429"
        try:
            return await send()
        except RetryAfter as exc:
            wait = flood_wait(exc) or 0.0
            last = f"flood wait {wait:g} s"
            log.info("%s: flood wait %g s (try %d)", name(), wait, attempt)
        except BadRequest as exc:
            asked = flood_wait(exc)
            if asked is None:
                log.warning("%s refused (try %d): %s", name(), attempt, error_text(exc))
                raise DeliveryFailed(
                    "Telegram refused the images. Last error: {error}",
                    error=error_text(exc),
                    detail=f"{name()}: {error_text(exc)}",
                ) from None
            wait = asked
            last = error_text(exc)
            log.info("%s: album stopped by a flood wait of %g s (try %d)", name(), wait, attempt)
            if on_album_retry:
                on_album_retry(exc.message)
        except Forbidden:
            raise
        except NetworkError as exc:  # includes TimedOut and 5xx
            last = error_text(exc)
            if attempt <= ATTEMPTS or attempt % _LOG_EVERY == 0:
                log.warning("%s failed (try %d): %s", name(), attempt, last)
            wait, delay = delay, min(delay * 2, max_delay)
            reason = metrics.telegram_failure(exc)
            if on_trouble:
                on_trouble(exc)
        if until is None:
            if attempt >= ATTEMPTS:
                break
        else:
            left = until - time.time()
            if left <= 0:
                break
            wait = min(wait, left)  # one more try at the deadline itself
        metrics.retried("telegram", reason)
        await asyncio.sleep(wait)
    log.warning("%s: giving up after %d tries; last error: %s", name(), attempt, last)
    raise TelegramUnreachableError(
        "Telegram did not accept the images after several tries.",
        last_error=last,
        tries=attempt,
        what=name(),
    )


class Background:
    """Work nobody waits for (progress edits, copies to disk): failures are logged, not raised,
    and ``stop`` cancels what is left."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._named: dict[str, asyncio.Task[None]] = {}  # started by run_once, by name

    def run_once(self, work: Coroutine[Any, Any, None], what: str) -> bool:
        """Start ``work`` unless work named ``what`` still runs (then ``work`` is dropped, never
        started); True if started. For loops that cover everything of a kind at each turn."""
        running = self._named.get(what)
        if running is not None and not running.done():
            work.close()
            return False
        self._named[what] = self.run(work, what)
        return True

    def run(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Start ``work``; ``what`` names it in the log if it fails."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.info("%s failed in the background: %s", what, exc)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Cancel everything still running and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
