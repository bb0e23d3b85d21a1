"""Sending a job to RunComfy exactly once: its rate-limit slot, the POST, and a stop meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot import schema
from bot.errors import InputError, SubmitUnknownError
from bot.jobs.states import Transitions
from bot.models import Job, Status
from bot.originals import OriginalsCache
from bot.runcomfy import RunComfyClient
from bot.sending import Background
from bot.status import StatusBoard
from bot.texts import tr
from bot.web.references import ReferenceLinks

log = logging.getLogger("bot.jobs")

# On a stop, how long a submit already sent may take beyond HTTP_TIMEOUT_SECONDS to be recorded.
_SUBMIT_GRACE_SECONDS = 1.0
_NOT_RESENT = (
    "It was not sent again, to avoid charging twice. "
    "Please send the command again if no images arrive."
)


class SubmitStep:
    """A job's one submit: waits for its slot, is on disk before the POST, never resent.

    Knows which jobs wait for their slot (a Cancel ends those at once) and which are being
    posted (a stop lets those finish, see ``stop_tasks``).
    """

    def __init__(
        self,
        client: RunComfyClient,
        states: Transitions,
        status: StatusBoard,
        background: Background,
        *,
        cancel_owed: Callable[[Job], Awaitable[None]],
        http_timeout: float,
        originals: OriginalsCache,
        links: ReferenceLinks | None = None,
    ) -> None:
        self.client = client
        self.states = states
        self.store = states.store
        self.status = status
        self.background = background
        self._cancel_owed = cancel_owed
        self._http_timeout = http_timeout
        self.originals = originals
        self.links = links  # None: PUBLIC_URL is not set, so no references can be published
        # Jobs waiting for their RunComfy rate-limit slot to be sent: a Cancel ends them at once.
        self.waiting_turn: set[int] = set()
        # Jobs whose submit POST is on its way: a stop lets these finish (see ``stop_tasks``).
        self._posting: set[int] = set()
        self.stopping = False

    async def submit(self, job: Job) -> None:
        """Send a ``new`` job once; it ends queued at RunComfy, cancelled or failed."""
        if job.cancel_requested:
            await self.states.finish(job, Status.CANCELLED)
            return
        try:
            payload = await self._payload(job)
        except InputError as exc:
            # Nothing was sent: nothing is billed, reserved credits go back (``finish``).
            log.warning("job %d: not submitted: %s", job.id, exc)
            await self.states.finish(job, Status.FAILED, error=exc.text(job.lang))
            return
        self.waiting_turn.add(job.id)
        try:
            submission = await self.client.submit(
                payload, sending=lambda: self._sending(job), edit=bool(job.refs)
            )
        except SubmitUnknownError as exc:
            log.error("job %d: submit outcome unknown (%s); not resubmitted", job.id, exc)
            error = f"{exc.text(job.lang)} {tr(job.lang, _NOT_RESENT)}"
            # It may have been billed: it counts toward the limits.
            await self.states.finish(job, Status.FAILED, error=error, submit_unknown=1)
            return
        finally:
            self.waiting_turn.discard(job.id)
            self._posting.discard(job.id)
        if submission is None:  # cancelled while it waited for its turn: never sent
            await self.states.finish(job, Status.CANCELLED)
            return
        if not self.states.set(
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
        if self.states.settings.payments:
            self.states.settle(job)  # RunComfy took it: its credits are spent
        if job.cancel_requested:
            await self._cancel_owed(job)
        else:
            self.status.show_soon(job)

    async def _payload(self, job: Job) -> dict[str, Any]:
        """The submit body: today's sequential one, or with reference images their signed URLs,
        once every file is known to be on disk (RunComfy fetches them, maybe minutes later)."""
        if not job.refs:
            return schema.build_payload(
                text=job.text, count=job.count, size=job.size, mode=job.mode, seed=job.seed
            )
        if self.links is None:
            log.error("job %d has reference images, but PUBLIC_URL is not set", job.id)
            raise InputError(
                "This bot is not set up for reference images any more, so the job was not "
                "started and nothing was charged."
            )
        links = self.links
        payload = schema.build_edit_payload(
            text=job.text,
            count=job.count,
            size=job.size,
            mode=job.mode,
            seed=job.seed,
            images=[links.url(job.id, ref.id) for ref in job.refs],
        )
        # RunComfy may fetch them only when the job leaves its queue: the job was pinned when
        # its files were written (JobRunner._keep_refs), so the ORIGINALS_MAX_MB cap spares them
        # until it ends.
        paths = [self.originals.ref_path(job.id, ref.id) for ref in job.refs]
        present = await asyncio.to_thread(lambda: [p.is_file() for p in paths])
        if not all(present):
            missing = present.index(False) + 1
            log.error("job %d: reference image %d is not on disk; not submitted", job.id, missing)
            raise InputError(
                "Reference image {n} is no longer kept, so the job was not started and nothing "
                "was charged. Please send the images again.",
                n=missing,
            )
        return payload

    async def _sending(self, job: Job) -> bool:
        """The job has its RunComfy rate-limit slot: record it as being sent; False: do not send.

        Only from here on can RunComfy have it, so only from here on is a stop's outcome unclear.
        """
        self.waiting_turn.discard(job.id)
        if job.cancel_requested:
            return False
        # On disk before the POST: a crash from here on is never resubmitted.
        if not self.states.set(job, Status.SUBMITTING):
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

    async def interrupted(self, job: Job) -> None:
        """A job found ``submitting`` at start: the process stopped during the POST, so it may
        have been billed. Never resubmitted; its images count as spent."""
        restarted = tr(
            job.lang,
            "The bot restarted while sending this job, so it is unclear whether it "
            "started. It was not sent again, to avoid charging twice. "
            "Please send the command again if no images arrive.",
        )
        await self.states.finish(job, Status.FAILED, error=restarted, submit_unknown=1)

    async def stop_tasks(self, tasks: Mapping[int, asyncio.Task[None]]) -> None:
        """Stop the job tasks, letting a submit already sent finish (up to the HTTP timeout):
        RunComfy bills it once it has it, so its request id is recorded."""
        self.stopping = True
        sending = [t for job_id, t in tasks.items() if job_id in self._posting]
        everything = list(tasks.values())
        for task in everything:
            if task not in sending:
                task.cancel()
        if sending:
            log.info("stopping: waiting for RunComfy to answer %d submit(s)", len(sending))
            _, late = await asyncio.wait(
                sending, timeout=self._http_timeout + _SUBMIT_GRACE_SECONDS
            )
            for task in late:
                log.error("%s: stopped before RunComfy answered its submit", task.get_name())
                task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
