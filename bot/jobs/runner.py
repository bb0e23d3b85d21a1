"""JobRunner: the one object the rest of the bot talks to about jobs; it runs each job's task."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from telegram import Bot

from bot import limits, metrics, payments
from bot.config import Settings
from bot.delivery import Delivery
from bot.downloads import Downloader
from bot.errors import StoreBusyError
from bot.jobs.deliver import DeliveryStep
from bot.jobs.estimates import Estimates
from bot.jobs.poll import PollStep
from bot.jobs.states import Transitions
from bot.jobs.submit import SubmitStep
from bot.models import CANCELLABLE, CancelOutcome, Job, Origin, SeqRequest, Status
from bot.originals import OriginalsCache
from bot.runcomfy import RunComfyClient
from bot.sending import Background
from bot.status import StatusBoard
from bot.store import NotEnoughCredits, Store
from bot.web.references import ReferenceLinks, load_key

log = logging.getLogger("bot.jobs")


class JobRunner:
    """Owns every active job: one asyncio task each, SQLite as the record.

    Starts, resumes, cancels and stops jobs, and walks each through its steps (``_run``).
    """

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
        self.estimates = Estimates(store)
        self.status = StatusBoard(
            bot,
            store,
            self.background,
            busy_at=settings.telegram_busy_at,
            retry_delay=settings.telegram_retry_delay,
            on_refused=self._fail,
            estimate=self.estimates.estimate,
        )
        originals = OriginalsCache(
            settings.database_path.parent / "originals",
            keep_days=settings.originals_keep_days,
            max_bytes=settings.originals_max_mb * 1024 * 1024 or None,
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
            # ➡️ Continue and ✏️ Redo need reference images, which need PUBLIC_URL.
            story=settings.public_url is not None,
        )
        # Reference images are published under PUBLIC_URL, signed with a key kept across restarts.
        self.links = (
            ReferenceLinks(settings.public_url, load_key(settings.database_path))
            if settings.public_url
            else None
        )
        # The same Job object is shared by a job's task and the Cancel button.
        self.active: dict[int, Job] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.states = Transitions(store, settings, self.status, self.active, originals)
        self.polls = PollStep(client, self.states, self.status, self.estimates, cancel=self.cancel)
        self.submits = SubmitStep(
            client,
            self.states,
            self.status,
            self.background,
            cancel_owed=self.polls.cancel_owed,
            http_timeout=settings.http_timeout,
            originals=originals,
            links=self.links,
        )
        self.deliveries = DeliveryStep(self.delivery, self.states, self.status, self.estimates)
        metrics.watch(self)  # its active jobs, by state, on the metrics page

    @property
    def waiting_for_slots(self) -> dict[str, int]:
        """Requests waiting for a rate-limit slot, by API: where the load is queueing now."""
        return {"telegram": self.status.backlog, "runcomfy": self.client.waiting}

    # ---- starting, resuming, stopping -------------------------------------------------------

    async def start(
        self, request: SeqRequest, origin: Origin, *, ref_files: Mapping[str, bytes] | None = None
    ) -> Job | None:
        """Check the limits, record the job, then reply and submit it in the background.

        ``ref_files``: the cleaned bytes of each of ``request.refs`` by id, kept on disk after
        the row is written and before the job is started (its submit publishes them).

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
            # A channel or an anonymous admin spends the chat's own credits: say so.
            chat = origin.user_id != origin.requester_id
            raise payments.not_enough(exc.needed, exc.available, chat=chat) from None
        if job is None:
            return None
        self.states.log_event(job, "recorded")
        metrics.job_moved(job)
        self.active[job.id] = job
        if ref_files and not await self._keep_refs(job, ref_files):
            return job
        self._spawn(job)
        return job

    async def _keep_refs(self, job: Job, files: Mapping[str, bytes]) -> bool:
        """Keep the job's reference images on disk; False (the job failed, nothing billed) when
        they cannot be written. Pinned: the size cap must not take them while the job waits."""
        originals = self.delivery.originals
        try:
            await originals.pin(job.id)
            for ref in job.refs:
                await originals.save_ref(job.id, ref.id, files[ref.id])
        except (OSError, KeyError) as exc:
            log.error("job %d: its reference images could not be kept: %s", job.id, exc)
            await self._fail(
                job,
                StoreBusyError(
                    "The reference images could not be kept just now; nothing was charged. "
                    "Please try again in a minute."
                ),
            )
            self.active.pop(job.id, None)
            self.status.forget(job)
            return False
        return True

    async def resume_all(self) -> int:
        """Pick up every unfinished job from SQLite; returns how many. First, every job's
        credits are settled as far as the job got (a lock or a stop may have come between)."""
        self.store.reconcile_reservations()
        await self._release_stale_pins()
        jobs = self.store.unfinished()
        for job in jobs:
            self.active[job.id] = job
            self._spawn(job)
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        return len(jobs)

    async def _release_stale_pins(self) -> None:
        """Pins left by jobs that ended with nothing to deliver (a stop between the end and the
        unpin, or an older version): released, so their files do not outlive the cap."""
        for job_id in await self.delivery.originals.pinned():
            job = self.store.get(job_id)
            if job is None:
                await self.delivery.originals.unpin(job_id)
            elif job.final:
                await self.states.release(job)

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
        await self.submits.stop_tasks(self._tasks)
        await self.background.stop()

    def working_on(self, job_id: int) -> bool:
        """Whether the job's task still runs (its final status edit and follow-up may be owed)."""
        return job_id in self._tasks

    def find(self, job_id: int) -> Job | None:
        """The live Job object if the job is active, else the stored row."""
        return self.active.get(job_id) or self.store.get(job_id)

    # ---- the life of one job ----------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        """One job's task: from the state it is in, through each step to a final state."""
        try:
            if job.status_message_id is None and not job.final:
                await self.status.post(job)
            if job.status == Status.NEW:
                await self.submits.submit(job)
                if self.submits.stopping:
                    return  # its submit was in flight at the stop: recorded, resumed at start
            elif job.status == Status.SUBMITTING:
                await self.submits.interrupted(job)
            if job.status in (Status.QUEUED, Status.RUNNING):
                await self.polls.poll(job)
            if job.status == Status.SENDING:
                await self.deliveries.deliver(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail(job, exc)
        finally:
            if job.final:
                self.active.pop(job.id, None)
                self.status.forget(job)
            self.estimates.forget(job.id)

    async def _fail(self, job: Job, exc: Exception) -> None:
        """End the job with a message that says why; never raises (``Transitions.fail``)."""
        await self.states.fail(job, exc)

    async def show(self, job: Job, reply_to: int) -> bool:
        """/show: the job's images again; False when there is nothing to send (see
        ``DeliveryStep.show``: the rest of a job whose delivery ran past its deadline)."""
        return await self.deliveries.show(job, reply_to)

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
            if task is not None and job.id in self.submits.waiting_turn:
                # Still waiting for its turn to be sent: RunComfy never saw it, so it ends now.
                task.cancel()
                await asyncio.wait((task,))
                await self.states.finish(job, Status.CANCELLED)
                self.status.forget(job)
                return CancelOutcome.CANCELLED
            # Being sent: the job's task cancels it as soon as it can.
            await self.status.show(job)
            if job.status == Status.NEW and job.id not in self._tasks:
                await self.states.finish(job, Status.CANCELLED)
                return CancelOutcome.CANCELLED
            return CancelOutcome.PENDING
        if await self.client.cancel(job.request_id):
            await self.states.finish(job, Status.CANCELLED)
            return CancelOutcome.CANCELLED
        if not job.final:
            self.states.set(job, Status.RUNNING, started_at=job.started_at or time.time())
            await self.status.show(job)
        return CancelOutcome.TOO_LATE
