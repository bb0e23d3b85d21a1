"""Getting a finished job's images to the chat, once, and again on request.

One part per concern, composed into :class:`Delivery`, the one object the rest of the bot holds:
``result`` (download, check, plan, send until the delivery deadline, the follow-up, /show),
``files`` (📎 Originals, 🗂 Sheet, 📦 ZIP from the files kept on disk: claims, build slots),
``albums`` (one photo, document or album to Telegram, used by both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Bot

from bot.callbacks import JobAction
from bot.delivery.albums import AlbumSender, Place
from bot.delivery.files import BUILDS_AT_ONCE, FileRequests, Turn
from bot.delivery.result import ResultDelivery
from bot.downloads import Downloader
from bot.models import Job, Status
from bot.originals import OriginalsCache
from bot.sending import MAX_BACKOFF, Background
from bot.store import Store
from bot.texts import tr

__all__ = ["Delivery"]

# The answer to a request that sends, and to one while it is being sent or soon after.
FILES_ANSWERS = {
    JobAction.ORIGINALS: (
        "Sending the original files…",
        "The original files are being sent or were sent above.",
    ),
    JobAction.SHEET: (
        "Making the contact sheet…",
        "The contact sheet is being made or was sent above.",
    ),
    JobAction.ZIP: (
        "Packing the original files…",
        "The ZIP is being sent or was sent above.",
    ),
}
BUILD_WAITS = "Another sheet or ZIP is being made: yours follows in a moment."
BUILDS_FULL = "Many sheets and ZIPs are being made right now: try again in a minute."


class Delivery:
    """Sends jobs' images (a few jobs at a time) and, on request, their originals."""

    def __init__(
        self,
        bot: Bot,
        store: Store,
        downloader: Downloader,
        originals: OriginalsCache,
        background: Background,
        *,
        retry_delay: float,
        max_retry_delay: float = MAX_BACKOFF,
        deadline: float = 3 * 3600.0,
        read_timeout: float = 30.0,
        builds_at_once: int = BUILDS_AT_ONCE,
        story: bool = False,
    ) -> None:
        self.originals = originals
        # Told (job, until) when a job's images meet network trouble: the status can say so.
        self.on_trouble: Callable[[Job, float], None] | None = None
        sender = AlbumSender(
            bot,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            read_timeout=read_timeout,
            on_trouble=self._troubled,
        )
        self.result = ResultDelivery(
            bot,
            store,
            downloader,
            originals,
            background,
            sender,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            deadline=deadline,
            story=story,
        )
        self.files = FileRequests(
            bot,
            store,
            originals,
            sender,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            builds_at_once=builds_at_once,
        )

    def _troubled(self, job: Job, until: float) -> None:
        # Read at each call: the runner sets on_trouble after constructing this.
        if self.on_trouble:
            self.on_trouble(job, until)

    # ---- a job's result ---------------------------------------------------------------------

    def until(self, job: Job) -> float:
        """When the job's delivery stops waiting out Telegram trouble (``ResultDelivery.until``)."""
        return self.result.until(job)

    async def deliver(self, job: Job) -> bool:
        """Send every unit not yet sent, then the follow-up (``ResultDelivery.deliver``)."""
        return await self.result.deliver(job)

    async def show_again(self, job: Job, reply_to: int) -> bool:
        """Every image of the job again, as planned (``ResultDelivery.show_again``)."""
        return await self.result.show_again(job, reply_to)

    def undelivered(self, job: Job) -> bool:
        """Whether the job's plan has units Telegram has not taken yet."""
        return self.result.undelivered(job)

    async def post_actions(self, job: Job) -> None:
        """The follow-up under the images, if it was never posted."""
        await self.result.post_actions(job)

    # ---- 📎 Originals, 🗂 Sheet, 📦 ZIP --------------------------------------------------------

    def claim(self, job_id: int, action: JobAction) -> bool:
        """Whether a tap on ``action``'s button may send (``FileRequests.claim``)."""
        return self.files.claim(job_id, action)

    def release(self, job_id: int, action: JobAction) -> None:
        """Free a claim whose send never began."""
        self.files.release(job_id, action)

    def build_turn(self, job_id: int, action: JobAction) -> Turn:
        """For a claimed Sheet or ZIP tap: ``now``, ``wait`` or ``full`` (``FileRequests``)."""
        return self.files.build_turn(job_id, action)

    async def send_originals(
        self, job: Job, reply_to: int | None, *, to: Place | None = None
    ) -> bool:
        """Every delivered image again, as documents; False if no longer kept."""
        return await self.files.send_originals(job, reply_to, to=to)

    async def send_sheet(
        self, job: Job, reply_to: int | None, lang: str | None, *, to: Place | None = None
    ) -> bool:
        """🗂 One photo of every delivered panel, numbered; False if no longer kept."""
        return await self.files.send_sheet(job, reply_to, lang, to=to)

    async def send_zip(
        self, job: Job, reply_to: int | None, lang: str | None, *, to: Place | None = None
    ) -> bool:
        """📦 Every delivered image and ``prompt.txt`` in one ZIP (or parts); False if no
        longer kept."""
        return await self.files.send_zip(job, reply_to, lang, to=to)

    async def request(
        self,
        job: Job,
        action: JobAction,
        *,
        reply_to: int | None,
        lang: str | None,
        answer: Callable[[str], Awaitable[None]],
        to: Place | None = None,
    ) -> bool | None:
        """📎 Originals, 🗂 Sheet or 📦 ZIP asked for (the chat's button, the studio): claimed,
        given its turn, then sent. ``answer`` is told at once what happens (in ``lang``):
        sending, waiting its turn, or refused. None when refused (not delivered, busy, full),
        else whether they were sent (False: no longer kept)."""
        if job.status != Status.DONE:
            await answer(tr(lang, "The images of this job were not delivered."))
            return None
        sending, busy = FILES_ANSWERS[action]
        if not self.claim(job.id, action):
            await answer(tr(lang, busy))
            return None
        # A sheet or a ZIP: only a few are made at once; the others wait their turn.
        turn = "now" if action == JobAction.ORIGINALS else self.build_turn(job.id, action)
        if turn == "full":
            await answer(tr(lang, BUILDS_FULL))
            return None
        try:
            await answer(tr(lang, BUILD_WAITS) if turn == "wait" else tr(lang, sending))
            if action == JobAction.SHEET:
                return await self.send_sheet(job, reply_to, lang, to=to)
            if action == JobAction.ZIP:
                return await self.send_zip(job, reply_to, lang, to=to)
            return await self.send_originals(job, reply_to, to=to)
        finally:
            # Whatever happened before the send began (a cancelled task, an error): the button
            # works again. A send that began keeps its own pause after a delivered set.
            self.release(job.id, action)
