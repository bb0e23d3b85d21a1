"""Polling a submitted job until RunComfy is done with it, or its deadline comes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot import render, schedule
from bot.errors import PermanentError, SeqbotError, TransientError
from bot.jobs.estimates import Estimates
from bot.jobs.states import Transitions
from bot.models import CancelOutcome, Job, Status
from bot.runcomfy import RemoteStatus, RunComfyClient
from bot.status import StatusBoard
from bot.texts import tr

log = logging.getLogger("bot.jobs")


class PollStep:
    """A queued or running job's poll loop: on the schedule, with a Cancel owed to RunComfy
    asked again at each poll, timed out at ``JOB_DEADLINE_SECONDS``, its result fetched once."""

    def __init__(
        self,
        client: RunComfyClient,
        states: Transitions,
        status: StatusBoard,
        estimates: Estimates,
        *,
        cancel: Callable[[Job], Awaitable[CancelOutcome]],
    ) -> None:
        self.client = client
        self.states = states
        self.settings = states.settings
        self.status = status
        self.estimates = estimates
        self._cancel = cancel

    async def cancel_owed(self, job: Job) -> None:
        """Cancel at RunComfy a job whose Cancel came before its request id; if RunComfy cannot
        be asked now, the poll loop asks again on its next poll (and the deadline still holds)."""
        try:
            outcome = await self._cancel(job)
        except SeqbotError as exc:
            log.warning("job %d: cancel failed, tried again at the next poll: %s", job.id, exc)
            self.status.show_soon(job)
            return
        if outcome == CancelOutcome.TOO_LATE and not job.final:
            # RunComfy answered: it runs and is delivered; nothing more to ask.
            self.states.store.update(job, cancel_requested=0)

    async def poll(self, job: Job) -> None:
        """Poll until the job is final or ``sending`` (its images listed)."""
        assert job.request_id is not None
        submitted = job.submitted_at or job.created_at
        deadline = submitted + self.settings.job_deadline
        failures = polls = 0
        last_queued: float | None = None  # when RunComfy last said "in queue"
        # A generating job is polled at /result, which answers an unfinished job with its state:
        # the poll that finds the job done brings its images too (one request instead of two).
        by_result = True
        # RunComfy accepted the job a moment ago: a poll at once would learn nothing and spend
        # the budget the schedule keeps for when the job may be done.
        await asyncio.sleep(
            schedule.first_delay(self.settings.poll_interval, time.time() - submitted)
        )
        while not job.final:
            last_check = time.time() >= deadline
            polls += 1
            if job.cancel_requested:
                await self.cancel_owed(job)
                if job.final:
                    return
            at_result = by_result and job.status == Status.RUNNING
            try:
                if at_result:
                    done = await self._fetch_result(job)
                else:
                    done, last_queued = await self._ask_status(job, last_queued)
                if done:
                    return
                failures = 0
            except TransientError as exc:
                # RunComfy is down or confused: the job is not lost, keep asking, less often.
                failures += 1
                log.warning("job %d: RunComfy trouble (%d in a row): %s", job.id, failures, exc)
            except PermanentError as exc:
                if not at_result or exc.operator_problem:
                    raise
                # Not what RunComfy documents: /status, as before, says whether the job itself
                # is gone (then it fails as it always did) or still on its way.
                by_result = False
                log.warning("job %d: result poll refused, asking status: %s", job.id, exc)
            if job.final:
                return
            self.status.show_soon(job)  # polling never waits for Telegram
            if last_check:
                await self._time_out(job)
                return
            now = time.time()
            if failures:
                delay = schedule.backoff(self.settings.poll_interval, failures)
            else:
                delay = self._next_poll(job, now, polls)
            await asyncio.sleep(max(0.0, min(delay, deadline - now)))

    async def _ask_status(self, job: Job, last_queued: float | None) -> tuple[bool, float | None]:
        """One status poll: (True when the job moved on or ended, when it was last in queue)."""
        assert job.request_id is not None
        place = job.queue_position if job.status == Status.QUEUED else None
        state = await self.client.status(job.request_id, place)
        if job.final:  # cancelled by a button tap meanwhile
            return True, last_queued
        # A poll that changes nothing writes nothing: a long queue is mostly such polls.
        if state.status == RemoteStatus.QUEUED:
            last_queued = time.time()
            self.estimates.saw_place(job.id, state.queue_position, last_queued)
            if job.status != Status.QUEUED or job.queue_position != state.queue_position:
                self.states.set(job, Status.QUEUED, queue_position=state.queue_position)
        elif state.status == RemoteStatus.RUNNING:
            if job.status != Status.RUNNING:
                # It started between the last "in queue" and now: take the middle, so the
                # generation times learnt for the poll schedule are not skewed by our polling.
                now = time.time()
                began = (last_queued + now) / 2 if last_queued else now
                self.states.set(job, Status.RUNNING, started_at=job.started_at or began)
        elif state.status == RemoteStatus.CANCELLED:
            await self.states.finish(job, Status.CANCELLED)
            return True, last_queued
        else:
            return await self._fetch_result(job), last_queued
        return False, last_queued

    def _next_poll(self, job: Job, now: float, polls: int) -> float:
        running = job.status == Status.RUNNING and job.started_at is not None
        return schedule.next_delay(
            interval=self.settings.poll_interval,
            elapsed=now - (job.submitted_at or job.created_at),
            polls=polls,
            running_for=now - job.started_at if running and job.started_at else None,
            queue_position=job.queue_position,
            window=self.estimates.window(job.count, job.mode) if running else None,
        )

    async def _fetch_result(self, job: Job) -> bool:
        """Ask /result (a generating job's poll, or after a final status); True when the job
        moved on or ended. Unfinished, it answers the job's state: nothing to fetch yet."""
        assert job.request_id is not None
        result = await self.client.result(job.request_id)
        if job.final:  # cancelled by a button tap meanwhile
            return True
        if result.status == RemoteStatus.QUEUED and job.status == Status.RUNNING:
            # Back in the queue (RunComfy never said so, but it may): /status tells the place.
            self.states.set(job, Status.QUEUED, queue_position=None)
            return False
        if result.status == RemoteStatus.FAILED:
            reason = result.error or tr(job.lang, "RunComfy could not make the images.")
            await self.states.finish(job, Status.FAILED, error=_plain(reason), cost=result.cost)
            return True
        if result.status == RemoteStatus.CANCELLED:
            await self.states.finish(job, Status.CANCELLED)
            return True
        if result.status != RemoteStatus.COMPLETED:
            # Still generating, or status and result disagree for a moment: poll again.
            return False
        if not result.images:
            error = tr(job.lang, "RunComfy finished but returned no images.")
            await self.states.finish(job, Status.FAILED, error=error, cost=result.cost)
            return True
        if len(result.images) > job.count:
            # Never more than was asked (and paid) for: each image is held in memory and sent.
            log.warning(
                "job %d: RunComfy listed %d images for %d asked; %d dropped",
                job.id,
                len(result.images),
                job.count,
                len(result.images) - job.count,
            )
        self.states.set(
            job,
            Status.SENDING,
            image_urls=list(result.images[: job.count]),
            cost=result.cost,
            completed_at=time.time(),
        )
        # The images matter more than this edit, which only a slow delivery needs at all.
        self.status.show_after(job, self.settings.sending_edit_delay)
        return True

    async def _time_out(self, job: Job) -> None:
        if job.status == Status.QUEUED and job.request_id:
            # Still waiting after the deadline: stop it so it is not billed for nothing.
            try:
                await self.client.cancel(job.request_id)
            except SeqbotError as exc:
                log.warning("job %d: cancel at deadline failed: %s", job.id, exc)
        await self.states.finish(job, Status.TIMED_OUT)


def _plain(reason: str) -> str:
    reason = reason.strip().rstrip(".")
    return render.shorten(reason, 300) + "."
