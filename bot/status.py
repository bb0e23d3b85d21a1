"""The status message: one per job, posted before anything is billed, then edited to match it.

Every decision about status edits lives here: when an edit is worth a message (never the same
text twice; in groups, within one phase, at most every ``GROUP_EDIT_INTERVAL`` seconds), in what
order (one job's edits never overtake each other), and who goes first under Telegram's flood
limits (replies and images: edits wait for them in the rate limiter, and progress edits are
skipped while many messages wait).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot import metrics, render, schedule
from bot.botapi import edit_text
from bot.flood import PriorityRateLimiter
from bot.models import CANCELLABLE, Job, Status
from bot.sending import Background, error_text, reply, with_retries
from bot.store import Store

log = logging.getLogger(__name__)

# Groups allow about 20 messages a minute: within one phase, a status edit waits this long.
GROUP_EDIT_INTERVAL = 10.0


def milestone(job: Job, markup: object) -> tuple[Status, bool]:
    """What a status edit must always show: the phase (queued, running, …) and the buttons."""
    phase = Status.QUEUED if job.status in CANCELLABLE else job.status
    return phase, markup is not None


def shown(text: str, markup: InlineKeyboardMarkup | None) -> str:
    """What the message shows, as stored to compare with the next edit."""
    return f"{text}\n[buttons]" if markup else text


class StatusBoard:
    """Posts and edits the jobs' status messages."""

    def __init__(
        self,
        bot: Bot,
        store: Store,
        background: Background,
        *,
        busy_at: int,
        retry_delay: float,
        on_refused: Callable[[Job, Exception], Awaitable[None]],
        estimate: Callable[[Job], schedule.Estimate | None] | None = None,
    ) -> None:
        self.bot = bot
        self.store = store
        self.background = background
        self.busy_at = busy_at
        self.retry_delay = retry_delay
        self._on_refused = on_refused  # the chat blocked the bot: the job ends
        self._estimate = estimate  # what the status may say about time (the runner knows)
        limiter = getattr(bot, "rate_limiter", None)  # an ExtBot's; a plain Bot has none
        self._limiter = limiter if isinstance(limiter, PriorityRateLimiter) else None
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: set[int] = set()  # jobs with an edit started in the background, not begun
        # Per job: what the last edit showed (phase, buttons) and when (monotonic).
        self._last: dict[int, tuple[tuple[Status, bool], float]] = {}

    async def post(self, job: Job) -> None:
        """Reply to the command with the status message, Cancel under it; retried until it goes."""
        text, markup = render.status_text(job), render.status_keyboard(job)
        message = await with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=text,
                reply_markup=markup,
                message_thread_id=job.thread_id,
                reply_parameters=reply(job.message_id),
            ),
            what=f"job {job.id}: sendMessage (status)",
            first_delay=self.retry_delay,
        )
        metrics.acknowledged(job, time.time())
        self.store.update(
            job, status_message_id=message.message_id, status_shown=shown(text, markup)
        )
        self._last[job.id] = (milestone(job, markup), time.monotonic())

    async def notify(self, job: Job, text: str) -> None:
        """A short message in reply to the job's command (for what the status cannot say)."""
        await with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=text,
                message_thread_id=job.thread_id,
                reply_parameters=reply(job.message_id),
            ),
            what=f"job {job.id}: sendMessage (notice)",
            first_delay=self.retry_delay,
        )

    def show_soon(self, job: Job) -> None:
        """Edit the status in the background: whoever changed the job need not wait for Telegram.

        One waiting edit per job is enough: it shows the job as it is when its turn comes.
        """
        if job.id in self._waiting:
            return
        self._waiting.add(job.id)

        async def edit() -> None:
            try:
                await self.show(job)
            except Forbidden as exc:  # blocked or removed: end the job now, no retry storm
                await self._on_refused(job, exc)

        self.background.run(edit(), f"job {job.id}: status edit")

    def show_after(self, job: Job, delay: float) -> None:
        """:meth:`show_soon` in ``delay`` seconds, unless the job has ended by then.

        For the "Sending N images" edit: most deliveries are over in a second, and then the
        album and the final edit say it all; a message edited twice within a second costs a
        request and shows nothing the user could read. A slow delivery still shows it.
        """

        async def later() -> None:
            await asyncio.sleep(delay)
            if not job.final:
                self.show_soon(job)

        self.background.run(later(), f"job {job.id}: status edit (later)")

    async def show(self, job: Job) -> None:
        """Edit the status message to match the job now (after any edit of it under way)."""
        lock = self._locks.setdefault(job.id, asyncio.Lock())
        async with lock:
            self._waiting.discard(job.id)
            await self._edit(job)
        if job.final and not lock.locked():
            self._locks.pop(job.id, None)

    @property
    def backlog(self) -> int:
        """Requests waiting for one of Telegram's slots (0 without the bot's rate limiter)."""
        return self._limiter.waiting if self._limiter is not None else 0

    def forget(self, job: Job) -> None:
        """The job has ended: nothing more to remember about its edits."""
        self._last.pop(job.id, None)

    def _worth_it(self, job: Job, phase: tuple[Status, bool], now: float) -> bool:
        last = self._last.get(job.id)
        if job.chat_id < 0 and last and last[0] == phase and now - last[1] < GROUP_EDIT_INTERVAL:
            return False  # only the queue position or the clock changed: not worth a group message
        # Telegram takes ~30 messages a second in all. Under load, replies, images and final
        # states go first; progress edits are skipped (the next change tries again). Counting
        # waiting edits too keeps them from piling up: 10,000 queued jobs want an edit each
        # whenever their place moves, far more than Telegram takes, and a pile of old edits
        # would rank ahead of every new album.
        busy = self._limiter is not None and self.backlog >= self.busy_at
        return job.final or not busy

    async def _edit(self, job: Job) -> None:
        if job.status_message_id is None:
            return
        estimate = self._estimate(job) if self._estimate else None
        text, markup = render.status_text(job, estimate=estimate), render.status_keyboard(job)
        showing = shown(text, markup)
        phase, now = milestone(job, markup), time.monotonic()
        if showing == job.status_shown or not self._worth_it(job, phase, now):
            return
        try:
            await edit_text(
                self.bot,
                chat_id=job.chat_id,
                message_id=job.status_message_id,
                text=text,
                reply_markup=markup,
            )
        except BadRequest as exc:
            lowered = exc.message.lower()
            if "not found" in lowered or "can't be edited" in lowered:
                # The user deleted the status message: deliver anyway, stop editing.
                log.info("job %d: status message is gone (%s)", job.id, exc.message)
                self.store.update(job, status_message_id=None)
                return
            if "not modified" not in lowered:
                log.warning("job %d: editMessageText (status) refused: %s", job.id, exc.message)
                return
        except RetryAfter as exc:
            # A status edit is not worth waiting for; the next state change retries.
            log.info("job %d: status edit skipped, flood wait %ss", job.id, exc.retry_after)
            return
        except Forbidden:
            raise
        except NetworkError as exc:
            log.warning("job %d: editMessageText (status) failed: %s", job.id, error_text(exc))
            return
        except Exception as exc:
            # An answer python-telegram-bot cannot read (an unexpected shape): the edit may well
            # have been made. Whoever changed the job (a Cancel tap, delivery) must not fail over
            # it; the next change edits again.
            log.warning(
                "job %d: status edit got an unexpected answer: %s: %s",
                job.id,
                type(exc).__name__,
                error_text(exc),
            )
            return
        self.store.update(job, status_shown=showing)
        self._last[job.id] = (phase, now)
