"""The life of a job: record, submit once, poll to the end, deliver once; resume after a restart.

One asyncio task per job walks it through its states (``models.Status``), with SQLite as the
record; what it shows goes through ``status``, what it sends through ``delivery``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from telegram import Bot
from telegram.error import Forbidden

from bot import limits, metrics, payments, render, schedule, schema
from bot.config import Settings
from bot.delivery import Delivery
from bot.downloads import Downloader
from bot.errors import (
    PermanentError,
    SeqbotError,
    SubmitUnknownError,
    TelegramUnreachableError,
    TransientError,
)
from bot.models import CANCELLABLE, CancelOutcome, Job, Origin, SeqRequest, Status
from bot.originals import OriginalsCache
from bot.runcomfy import RemoteStatus, RunComfyClient
from bot.sending import Background
from bot.status import StatusBoard
from bot.store import NotEnoughCredits, Store
from bot.texts import tr

log = logging.getLogger(__name__)

_WINDOW_CACHE_SECONDS = 30.0
# On a stop, how long a submit already sent may take beyond HTTP_TIMEOUT_SECONDS to be recorded.
_SUBMIT_GRACE_SECONDS = 1.0
_NOT_RESENT = (
    "It was not sent again, to avoid charging twice. "
    "Please send the command again if no images arrive."
)


class JobRunner:
    """Owns every active job: one asyncio task each, SQLite as the record."""

    def __init__(
        self,
        *,
        bot: Bot,
        store: Store,
        client: RunComfyClient,
        downloader: Downloader,
        settings: Settings,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.background = Background()
        self.status = StatusBoard(
            bot,
            store,
            self.background,
            busy_at=settings.telegram_busy_at,
            retry_delay=settings.telegram_retry_delay,
            on_refused=self._fail,
            estimate=self._estimate,
        )
        originals = OriginalsCache(
            settings.database_path.parent / "originals", keep_days=settings.originals_keep_days
        )
        self.delivery = Delivery(
            bot,
            store,
            downloader,
            originals,
            self.background,
            retry_delay=settings.telegram_retry_delay,
            max_retry_delay=settings.telegram_retry_max,
            deadline=settings.delivery_deadline,
            read_timeout=settings.http_timeout,
        )
        # The same Job object is shared by a job's task and the Cancel button.
        self.active: dict[int, Job] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Jobs waiting for their RunComfy rate-limit slot to be sent: a Cancel ends them at once.
        self._waiting_turn: set[int] = set()
        # Jobs whose submit POST is on its way: a stop lets these finish (see ``stop``).
        self._posting: set[int] = set()
        self._stopping = False
        self._operator_alerts: set[str] = set()
        self._windows: dict[tuple[int, str], tuple[schedule.Window | None, float]] = {}
        # Per queued job: (when first seen, queue position), each time the position changed.
        self._queue_seen: dict[int, list[tuple[float, int]]] = {}
        self._showing: dict[int, asyncio.Lock] = {}  # per job: one /show at a time
        # Jobs whose images meet network trouble at Telegram: until when they are retried.
        self._troubled: dict[int, float] = {}
        self.delivery.on_trouble = self._delivery_trouble
        metrics.watch(self)  # its active jobs, by state, on the metrics page

    @property
    def waiting_for_slots(self) -> dict[str, int]:
        """Requests waiting for a rate-limit slot, by API: where the load is queueing now."""
        return {"telegram": self.status.backlog, "runcomfy": self.client.waiting}

    # ---- starting, resuming, stopping -------------------------------------------------------

    async def start(self, request: SeqRequest, origin: Origin) -> Job | None:
        """Check the limits, record the job, then reply and submit it in the background.

        Returns None when this message already made a job. Raises RefusedError when a limit
        says no, StoreBusyError when SQLite cannot take it. Nothing awaits between the checks
        and the insert, so two commands at once cannot both slip under a limit.
        """
        if self.store.job_for_message(origin.chat_id, origin.message_id) is not None:
            log.info("chat %s message %s already has a job", origin.chat_id, origin.message_id)
            return None
        limits.check_spend(
            self.store,
            self.settings,
            user_id=origin.user_id,
            requester_id=origin.requester_id,
            chat_id=origin.chat_id,
            count=request.count,
            now=time.time(),
        )
        # Payments on: the credits are reserved in the job's own transaction.
        reserve = payments.reserve_for(
            self.store,
            self.settings,
            user_id=origin.user_id,
            requester_id=origin.requester_id,
            count=request.count,
            now=time.time(),
        )
        try:
            job = self.store.create_job(request, origin, reserve=reserve)
        except NotEnoughCredits as exc:
            raise payments.not_enough(exc.needed, exc.available) from None
        if job is None:
            return None
        self._log(job, "recorded")
        metrics.job_moved(job)
        self.active[job.id] = job
        self._spawn(job)
        return job

    async def resume_all(self) -> int:
        """Pick up every unfinished job from SQLite; returns how many. First, every job's
        credits are settled as far as the job got (a lock or a stop may have come between)."""
        self.store.reconcile_reservations()
        jobs = self.store.unfinished()
        for job in jobs:
            self.active[job.id] = job
            self._spawn(job)
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        return len(jobs)

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.id, None))

    async def stop(self) -> None:
        """Stop every job task; their state stays in SQLite to be resumed.

        A submit already sent is let finish first (up to the HTTP timeout): RunComfy bills it
        once it has it, so its request id is recorded and the job polled after the restart.
        Everything else stops at once; a job still waiting to be sent is sent after the restart.
        """
        metrics.unwatch(self)
        self._stopping = True
        sending = [t for job_id, t in self._tasks.items() if job_id in self._posting]
        tasks = list(self._tasks.values())
        for task in tasks:
            if task not in sending:
                task.cancel()
        if sending:
            log.info("stopping: waiting for RunComfy to answer %d submit(s)", len(sending))
            _, late = await asyncio.wait(
                sending, timeout=self.settings.http_timeout + _SUBMIT_GRACE_SECONDS
            )
            for task in late:
                log.error("%s: stopped before RunComfy answered its submit", task.get_name())
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.background.stop()

    def working_on(self, job_id: int) -> bool:
        """Whether the job's task still runs (its final status edit and follow-up may be owed)."""
        return job_id in self._tasks

    def find(self, job_id: int) -> Job | None:
        """The live Job object if the job is active, else the stored row."""
        return self.active.get(job_id) or self.store.get(job_id)

    # ---- the life of one job ----------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        try:
            if job.status_message_id is None and not job.final:
                await self.status.post(job)
            if job.status == Status.NEW:
                await self._submit(job)
                if self._stopping:
                    return  # its submit was in flight at the stop: recorded, resumed at start
            elif job.status == Status.SUBMITTING:
                # The process stopped during the POST: it may have been billed. Never resubmit,
                # and count its images as spent.
                restarted = tr(
                    job.lang,
                    "The bot restarted while sending this job, so it is unclear whether it "
                    "started. It was not sent again, to avoid charging twice. "
                    "Please send the command again if no images arrive.",
                )
                await self._finish(job, Status.FAILED, error=restarted, submit_unknown=1)
            if job.status in (Status.QUEUED, Status.RUNNING):
                await self._poll(job)
            if job.status == Status.SENDING:
                await self._deliver(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail(job, exc)
        finally:
            if job.final:
                self.active.pop(job.id, None)
                self.status.forget(job)
            self._queue_seen.pop(job.id, None)
            self._troubled.pop(job.id, None)

    async def _submit(self, job: Job) -> None:
        if job.cancel_requested:
            await self._finish(job, Status.CANCELLED)
            return
        payload = schema.build_payload(
            text=job.text, count=job.count, size=job.size, mode=job.mode, seed=job.seed
        )
        self._waiting_turn.add(job.id)
        try:
            submission = await self.client.submit(payload, sending=lambda: self._sending(job))
        except SubmitUnknownError as exc:
            log.error("job %d: submit outcome unknown (%s); not resubmitted", job.id, exc)
            error = f"{exc.text(job.lang)} {tr(job.lang, _NOT_RESENT)}"
            # It may have been billed: it counts toward the limits.
            await self._finish(job, Status.FAILED, error=error, submit_unknown=1)
            return
        finally:
            self._waiting_turn.discard(job.id)
            self._posting.discard(job.id)
        if submission is None:  # cancelled while it waited for its turn: never sent
            await self._finish(job, Status.CANCELLED)
            return
        if not self._set(
            job, Status.QUEUED, request_id=submission.request_id, submitted_at=time.time()
        ):
            # RunComfy bills this job: its request id must not be lost. The store keeps trying;
            # until then this line is the only record outside the process.
            log.error(
                "job %d: RunComfy accepted it as request %s, but the database refused to record "
                "that; kept in memory and retried",
                job.id,
                submission.request_id,
            )
            unsaved = tr(
                job.lang,
                "Job #{id} was accepted by RunComfy (request {request}), but the bot could not "
                "record it just now. It keeps trying; the images will follow.",
                id=job.id,
                request=job.request_id,
            )
            self.background.run(self.status.notify(job, unsaved), f"job {job.id}: notice")
        if self.settings.payments:
            self._settle(job)  # RunComfy took it: its credits are spent
        if job.cancel_requested:
            await self._cancel_owed(job)
        else:
            self.status.show_soon(job)

    async def _sending(self, job: Job) -> bool:
        """The job has its RunComfy rate-limit slot: record it as being sent; False: do not send.

        Only from here on can RunComfy have it, so only from here on is a stop's outcome unclear.
        """
        self._waiting_turn.discard(job.id)
        if job.cancel_requested:
            return False
        # On disk before the POST: a crash from here on is never resubmitted.
        if not self._set(job, Status.SUBMITTING):
            try:
                await self.store.saved(job)
            except asyncio.CancelledError:
                # Stopped before the POST: RunComfy never saw it, so it is sent after the restart.
                self.store.update(job, status=Status.NEW)
                raise
            if job.cancel_requested:
                return False
        self._posting.add(job.id)
        return True

    async def _cancel_owed(self, job: Job) -> None:
        """Cancel at RunComfy a job whose Cancel came before its request id; if RunComfy cannot
        be asked now, the poll loop asks again on its next poll (and the deadline still holds)."""
        try:
            outcome = await self.cancel(job)
        except SeqbotError as exc:
            log.warning("job %d: cancel failed, tried again at the next poll: %s", job.id, exc)
            self.status.show_soon(job)
            return
        if outcome == CancelOutcome.TOO_LATE and not job.final:
            # RunComfy answered: it runs and is delivered; nothing more to ask.
            self.store.update(job, cancel_requested=0)

    async def _poll(self, job: Job) -> None:
        assert job.request_id is not None
        submitted = job.submitted_at or job.created_at
        deadline = submitted + self.settings.job_deadline
        failures = polls = 0
        last_queued: float | None = None  # when RunComfy last said "in queue"
        # RunComfy accepted the job a moment ago: a poll at once would learn nothing and spend
        # the budget the schedule keeps for when the job may be done.
        await asyncio.sleep(
            schedule.first_delay(self.settings.poll_interval, time.time() - submitted)
        )
        while not job.final:
            last_check = time.time() >= deadline
            polls += 1
            if job.cancel_requested:
                await self._cancel_owed(job)
                if job.final:
                    return
            try:
                place = job.queue_position if job.status == Status.QUEUED else None
                state = await self.client.status(job.request_id, place)
                if job.final:  # cancelled by a button tap meanwhile
                    return
                if state.status == RemoteStatus.QUEUED:
                    last_queued = time.time()
                    self._saw_place(job.id, state.queue_position, last_queued)
                    self._set(job, Status.QUEUED, queue_position=state.queue_position)
                elif state.status == RemoteStatus.RUNNING:
                    # It started between the last "in queue" and now: take the middle, so the
                    # generation times learnt for the poll schedule are not skewed by our polling.
                    now = time.time()
                    began = (last_queued + now) / 2 if last_queued else now
                    self._set(job, Status.RUNNING, started_at=job.started_at or began)
                elif state.status == RemoteStatus.CANCELLED:
                    await self._finish(job, Status.CANCELLED)
                    return
                elif await self._fetch_result(job):
                    return
                failures = 0
            except TransientError as exc:
                # RunComfy is down or confused: the job is not lost, keep asking, less often.
                failures += 1
                log.warning("job %d: RunComfy trouble (%d in a row): %s", job.id, failures, exc)
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

    def _next_poll(self, job: Job, now: float, polls: int) -> float:
        running = job.status == Status.RUNNING and job.started_at is not None
        return schedule.next_delay(
            interval=self.settings.poll_interval,
            elapsed=now - (job.submitted_at or job.created_at),
            polls=polls,
            running_for=now - job.started_at if running and job.started_at else None,
            queue_position=job.queue_position,
            window=self._window(job.count, job.mode) if running else None,
        )

    def _saw_place(self, job_id: int, place: int | None, now: float) -> None:
        """Remember when each new queue position was first seen (a move back starts afresh)."""
        seen = self._queue_seen.setdefault(job_id, [])
        if place is None or (seen and place > seen[-1][1]):
            seen.clear()
        if place is not None and (not seen or place < seen[-1][1]):
            seen.append((now, place))

    def _estimate(self, job: Job) -> schedule.Estimate | None:
        """What the job's status may say about time: the queue's pace, or similar jobs' times."""
        if job.status == Status.QUEUED:
            wait = schedule.queue_wait(self._queue_seen.get(job.id, []), time.time())
            return schedule.Estimate(queue_wait=wait)
        if job.status == Status.RUNNING:
            return schedule.Estimate(window=self._window(job.count, job.mode))
        if job.status == Status.SENDING and job.id in self._troubled:
            return schedule.Estimate(retry_until=self._troubled[job.id])
        return None

    def _window(self, count: int, mode: str) -> schedule.Window | None:
        """When similar jobs finished generating; refreshed from SQLite every half minute."""
        key, now = (count, mode), time.monotonic()
        cached = self._windows.get(key)
        if cached is None or cached[1] < now:
            window = schedule.window_of(self.store.generation_times(count, mode))
            cached = self._windows[key] = (window, now + _WINDOW_CACHE_SECONDS)
        return cached[0]

    async def _fetch_result(self, job: Job) -> bool:
        """After a final status: fetch the result once. True when the job moved on."""
        assert job.request_id is not None
        result = await self.client.result(job.request_id)
        if result.status == RemoteStatus.FAILED:
            reason = result.error or tr(job.lang, "RunComfy could not make the images.")
            await self._finish(job, Status.FAILED, error=_plain(reason), cost=result.cost)
            return True
        if result.status == RemoteStatus.CANCELLED:
            await self._finish(job, Status.CANCELLED)
            return True
        if result.status != RemoteStatus.COMPLETED:
            return False  # status and result disagree for a moment: poll again
        if not result.images:
            error = tr(job.lang, "RunComfy finished but returned no images.")
            await self._finish(job, Status.FAILED, error=error, cost=result.cost)
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
        self._set(
            job,
            Status.SENDING,
            image_urls=list(result.images[: job.count]),
            cost=result.cost,
            completed_at=time.time(),
        )
        # The images matter more than this edit: deliver while it waits in Telegram's queue.
        self.status.show_soon(job)
        return True

    # ---- delivery ---------------------------------------------------------------------------

    async def _deliver(self, job: Job) -> None:
        """Send the images. Telegram trouble is waited out until the delivery deadline; past it
        the job fails, its images kept on disk for /show."""
        try:
            delivered = await self.delivery.deliver(job)
        except TelegramUnreachableError as exc:
            log.warning("job %d: not delivered by its deadline (%s); kept for /show", job.id, exc)
            await self._finish(job, Status.FAILED, error=self._undelivered(job, exc))
            return
        await self._finish(job, Status.DONE if delivered else Status.FAILED, error=job.error)

    def _delivery_trouble(self, job: Job, until: float) -> None:
        """The first network trouble sending a job's images: its status says it keeps trying."""
        if job.id not in self._troubled:
            self._troubled[job.id] = until
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
            if not lock.locked():
                self._showing.pop(job.id, None)

    async def _delivered_late(self, job: Job) -> None:
        """Every image reached the chat after the job had failed: it is done after all."""
        note = job.error.split("\n", 1)[1] if job.error and "\n" in job.error else None
        # Not through _set: the metrics counted this job (and its cost) when it failed.
        self.store.update(job, status=Status.DONE, error=note)
        self._log(job, "done (the rest delivered by /show)")
        try:
            await self.delivery.post_actions(job)
            await self.status.show(job)
        except Exception as exc:  # the images are there; the rest is a courtesy
            log.warning(
                "job %d: delivered late, but its follow-up or status failed: %s", job.id, exc
            )

    async def _time_out(self, job: Job) -> None:
        if job.status == Status.QUEUED and job.request_id:
            # Still waiting after the deadline: stop it so it is not billed for nothing.
            try:
                await self.client.cancel(job.request_id)
            except SeqbotError as exc:
                log.warning("job %d: cancel at deadline failed: %s", job.id, exc)
        await self._finish(job, Status.TIMED_OUT)

    # ---- cancel -----------------------------------------------------------------------------

    async def cancel(self, job: Job) -> CancelOutcome:
        """Cancel the job, at RunComfy if it is there. Raises RunComfyError if RunComfy fails."""
        if job.final:
            return CancelOutcome.FINAL
        if job.status not in CANCELLABLE:
            return CancelOutcome.TOO_LATE
        if job.request_id is None:
            self.store.update(job, cancel_requested=1)
            task = self._tasks.get(job.id)
            if task is not None and job.id in self._waiting_turn:
                # Still waiting for its turn to be sent: RunComfy never saw it, so it ends now.
                task.cancel()
                await asyncio.wait((task,))
                await self._finish(job, Status.CANCELLED)
                self.status.forget(job)
                return CancelOutcome.CANCELLED
            # Being sent: the job's task cancels it as soon as it can.
            await self.status.show(job)
            if job.status == Status.NEW and job.id not in self._tasks:
                await self._finish(job, Status.CANCELLED)
                return CancelOutcome.CANCELLED
            return CancelOutcome.PENDING
        if await self.client.cancel(job.request_id):
            await self._finish(job, Status.CANCELLED)
            return CancelOutcome.CANCELLED
        if not job.final:
            self._set(job, Status.RUNNING, started_at=job.started_at or time.time())
            await self.status.show(job)
        return CancelOutcome.TOO_LATE

    # ---- state --------------------------------------------------------------------------------

    def _set(self, job: Job, status: Status, **changes: Any) -> bool:
        """Move the job to ``status``; False while the change waits in memory (see Store)."""
        changed = status != job.status
        saved = self.store.update(job, status=status, **changes)
        if changed:
            self._log(job, status.value)
            metrics.job_moved(job)
        return saved

    async def _finish(
        self,
        job: Job,
        status: Status,
        *,
        error: str | None = None,
        show: bool = True,
        **changes: Any,
    ) -> None:
        if job.final:
            return
        self._set(job, status, error=error, finished_at=time.time(), **changes)
        if self.settings.payments:
            self._settle(job)
        self.active.pop(job.id, None)
        if show:
            await self.status.show(job)

    def _settle(self, job: Job) -> None:
        """Payments on: spend or return the job's reserved credits, as its state says.

        Returned when it ended without RunComfy making it (cancelled; refused or failed before
        the submit); spent once RunComfy has its request id; kept reserved when the submit's
        outcome is unknown (it may be billed; a bot admin can return it with /return_credits).
        A locked database delays this, never drops it (``Store.settle``).
        """
        returned = self.store.settle(job)
        if returned:
            log.info("job %d: %d credit(s) returned", job.id, returned)

    async def _fail(self, job: Job, exc: Exception) -> None:
        """End the job with a message that says why; never raises."""
        show = True
        if isinstance(exc, Forbidden):
            # Blocked by the user or removed from the chat: nothing more can be said there.
            log.warning("job %d: chat %d refuses messages (%s)", job.id, job.chat_id, exc.message)
            error, show = tr(job.lang, "The bot cannot post in this chat."), False
        elif isinstance(exc, SeqbotError):
            if isinstance(exc, PermanentError) and exc.operator_problem:
                self._operator_alert(job, exc)
            else:
                log.warning("job %d failed: %s", job.id, exc)
            error = exc.text(job.lang)
        else:
            log.error("job %d failed unexpectedly", job.id, exc_info=exc)
            error = tr(job.lang, "Something went wrong on our side.")
        try:
            await self._finish(job, Status.FAILED, error=error, show=show)
        except Exception as again:  # the chat may refuse even the failure notice
            log.warning("job %d: could not report the failure: %s", job.id, again)

    def _operator_alert(self, job: Job, exc: PermanentError) -> None:
        """A bad token or an empty balance: one loud line per distinct problem, then quiet ones."""
        problem = exc.user_message
        if problem in self._operator_alerts:
            log.warning("job %d refused by RunComfy again: %s", job.id, exc)
            return
        self._operator_alerts.add(problem)
        log.error(
            "\n%s\nOPERATOR ACTION NEEDED: RunComfy refused job %d: %s\n"
            "Jobs will keep failing until this is fixed (check RUNCOMFY_API_TOKEN and the balance).\n%s",
            "!" * 72,
            job.id,
            exc,
            "!" * 72,
        )

    def _log(self, job: Job, event: str) -> None:
        log.info(
            "job %d %s (request %s, chat %d)", job.id, event, job.request_id or "-", job.chat_id
        )


def _plain(reason: str) -> str:
    reason = reason.strip().rstrip(".")
    return render.shorten(reason, 300) + "."
