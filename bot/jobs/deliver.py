"""Handing a finished job's images to ``delivery``: by its deadline, or later by /show."""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from bot.delivery import Delivery
from bot.errors import TelegramUnreachableError
from bot.jobs.estimates import Estimates
from bot.jobs.states import Transitions
from bot.models import Job, Status
from bot.status import StatusBoard
from bot.texts import tr

log = logging.getLogger("bot.jobs")


class DeliveryStep:
    """A ``sending`` job's delivery and how it ends; /show for the images again, or the rest
    of them after the delivery deadline (which makes the job ``done`` after all)."""

    def __init__(
        self,
        delivery: Delivery,
        states: Transitions,
        status: StatusBoard,
        estimates: Estimates,
    ) -> None:
        self.delivery = delivery
        self.states = states
        self.store = states.store
        self.status = status
        self.estimates = estimates
        self._showing: dict[int, asyncio.Lock] = {}  # per job: one /show at a time
        self._show_users: collections.Counter[int] = collections.Counter()  # holding or waiting
        delivery.on_trouble = self._trouble

    async def deliver(self, job: Job) -> None:
        """Send the images. Telegram trouble is waited out until the delivery deadline; past it
        the job fails, its images kept on disk for /show."""
        try:
            delivered = await self.delivery.deliver(job)
        except TelegramUnreachableError as exc:
            log.warning("job %d: not delivered by its deadline (%s); kept for /show", job.id, exc)
            await self.states.finish(job, Status.FAILED, error=self._undelivered(job, exc))
            return
        await self.states.finish(job, Status.DONE if delivered else Status.FAILED, error=job.error)

    def _trouble(self, job: Job, until: float) -> None:
        """The first network trouble sending a job's images: its status says it keeps trying."""
        if job.id not in self.estimates.troubled:
            self.estimates.troubled[job.id] = until
            self.status.show_soon(job)

    def _undelivered(self, job: Job, exc: TelegramUnreachableError) -> str:
        """What a job Telegram would not take by its deadline says: why, and how to get it."""
        kept_until = (job.completed_at or time.time()) + self.delivery.originals.keep_seconds
        why = tr(
            job.lang,
            "Telegram did not take the images before the delivery deadline. Last error: {error}",
            error=exc.last_error,
        )
        if kept_until > time.time():
            why += " " + tr(
                job.lang,
                "They are kept until {when} UTC: send /show {id} to get them.",
                when=time.strftime("%Y-%m-%d %H:%M", time.gmtime(kept_until)),
                id=job.id,
            )
        # The delivery note (images RunComfy sent broken) stays on its own line: /show drops the
        # rest once it delivered them.
        return f"{why}\n{job.error}" if job.error else why

    async def show(self, job: Job, reply_to: int) -> bool:
        """/show: the job's images again; False when there is nothing to send.

        A job whose delivery ended before every image arrived (Telegram away past the deadline)
        gets the rest from the kept files; once all arrived it is done, with its follow-up.
        """
        lock = self._showing.setdefault(job.id, asyncio.Lock())
        self._show_users[job.id] += 1
        try:
            async with lock:
                # Another /show may have delivered the rest meanwhile: the row says.
                job = self.store.get(job.id) or job
                late = job.status == Status.FAILED and self.delivery.undelivered(job)
                shown = await self.delivery.show_again(job, reply_to)
                if late and not self.delivery.undelivered(job):
                    await self._delivered_late(job)
                return shown
        finally:
            # Dropped only when no other /show waits for it: a released lock is briefly unlocked
            # before its next waiter takes it, and a new lock then would let a third in at once.
            self._show_users[job.id] -= 1
            if not self._show_users[job.id]:
                del self._show_users[job.id], self._showing[job.id]

    async def _delivered_late(self, job: Job) -> None:
        """Every image reached the chat after the job had failed: it is done after all."""
        note = job.error.split("\n", 1)[1] if job.error and "\n" in job.error else None
        # Not through Transitions.set: the metrics counted this job (and its cost) when it failed.
        self.store.update(job, status=Status.DONE, error=note)
        self.states.log_event(job, "done (the rest delivered by /show)")
        try:
            await self.delivery.post_actions(job)
            await self.status.show(job)
        except Exception as exc:  # the images are there; the rest is a courtesy
            log.warning(
                "job %d: delivered late, but its follow-up or status failed: %s", job.id, exc
            )
