"""Moving a job between states, and ending it: the row, the log line, the metrics, the credits."""

from __future__ import annotations

import logging
import time
from typing import Any

from telegram.error import Forbidden

from bot import metrics
from bot.config import Settings
from bot.errors import PermanentError, SeqbotError
from bot.models import Job, Status
from bot.originals import OriginalsCache
from bot.status import StatusBoard
from bot.store import Store
from bot.texts import tr

# Every part of a job's life logs as ``bot.jobs``: the lines operators know and filter on.
log = logging.getLogger("bot.jobs")


class Transitions:
    """Moves jobs between states and ends them: recorded, logged, counted, settled, shown.

    ``active`` is the runner's map of live jobs: an ended job leaves it here.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        status: StatusBoard,
        active: dict[int, Job],
        originals: OriginalsCache | None = None,
    ) -> None:
        self.store = store
        self.originals = originals
        self.settings = settings
        self.status = status
        self.active = active
        self._operator_alerts: set[str] = set()

    def set(self, job: Job, status: Status, **changes: Any) -> bool:
        """Move the job to ``status``; False while the change waits in memory (see Store)."""
        changed = status != job.status
        saved = self.store.update(job, status=status, **changes)
        if changed:
            self.log_event(job, status.value)
            metrics.job_moved(job)
        return saved

    async def finish(
        self,
        job: Job,
        status: Status,
        *,
        error: str | None = None,
        show: bool = True,
        **changes: Any,
    ) -> None:
        """End the job in ``status`` (once: a final job stays as it is), settle, show it."""
        if job.final:
            return
        self.set(job, status, error=error, finished_at=time.time(), **changes)
        if self.settings.payments:
            self.settle(job)
        self.active.pop(job.id, None)
        await self.release(job)
        if show:
            await self.status.show(job)

    async def release(self, job: Job) -> None:
        """An ended job with nothing to deliver (no plan: it failed or was cancelled before its
        images came) needs none of its files kept: its pin goes, so the size cap may take them.
        Pinned for RunComfy's fetches of its references (at the keep, at the submit) or by a
        delivery that found no usable image; however it ended (a cancel while it waited for its
        turn ends it outside its task)."""
        if self.originals is None or job.plan is not None:
            return  # a planned delivery keeps its own pin until every image is in (or /show)
        try:
            await self.originals.unpin(job.id)
        except OSError as exc:
            log.warning("job %d: its files stay pinned: %s", job.id, exc)

    def settle(self, job: Job) -> None:
        """Payments on: spend or return the job's reserved credits, as its state says.

        Returned when it ended without RunComfy making it (cancelled; refused or failed before
        the submit); spent once RunComfy has its request id; kept reserved when the submit's
        outcome is unknown (it may be billed; a bot admin can return it with /return_credits).
        A locked database delays this, never drops it (``Store.settle``).
        """
        returned = self.store.settle(job)
        if returned:
            log.info("job %d: %d credit(s) returned", job.id, returned)

    async def fail(self, job: Job, exc: Exception) -> None:
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
            await self.finish(job, Status.FAILED, error=error, show=show)
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

    @staticmethod
    def log_event(job: Job, event: str) -> None:
        """The one INFO line per state a job reaches."""
        log.info(
            "job %d %s (request %s, chat %d)", job.id, event, job.request_id or "-", job.chat_id
        )
