"""A finished job's images to the chat, once: download, check, plan, send, follow up; /show.

The plan (which images go as photos, which as documents, in which albums) is fixed and stored
before the first send; each unit is marked delivered as soon as Telegram took it, so a restart
sends only what is left. /show sends them again from Telegram's copies, and those never
delivered from the files kept on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from telegram import Bot, InlineKeyboardMarkup

from bot import metrics, render, thumbs
from bot.delivery.albums import AlbumSender, Sent
from bot.downloads import Downloader
from bot.errors import PermanentError, SeqbotError, TelegramUnreachableError
from bot.images import DOCUMENT_MAX_BYTES, BadImage, ImageInfo, inspect, max_pixels
from bot.models import DeliveryUnit, Job, UnitKind
from bot.originals import OriginalsCache
from bot.sending import Background, reply, with_retries
from bot.store import Store
from bot.texts import Plural, tr

# The package's one logger name: the lines read as they did before the package was split.
log = logging.getLogger(__package__)

_DOWNLOADS_AT_ONCE = 16
_DELIVERIES_AT_ONCE = 8

Problem = tuple[int, SeqbotError | BadImage]  # an image index, and why it cannot be sent


class ResultDelivery:
    """Sends jobs' images (a few jobs at a time), their follow-up, and /show's images again."""

    def __init__(
        self,
        bot: Bot,
        store: Store,
        downloader: Downloader,
        originals: OriginalsCache,
        background: Background,
        sender: AlbumSender,
        *,
        retry_delay: float,
        max_retry_delay: float,
        deadline: float,
        story: bool = False,
    ) -> None:
        self.bot = bot
        self.store = store
        self.downloader = downloader
        self.originals = originals
        self.background = background
        self.sender = sender
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        # Seconds after RunComfy finished during which a job's images wait out Telegram trouble.
        self.deadline = deadline
        # Where the studio opens (PUBLIC_URL https): a 🖼 Studio button on each follow-up.
        self.studio: render.StudioLinks | None = None
        # Whose jobs get the studio's thumbnails at delivery (set with the studio); none without.
        self.thumbs_for: Callable[[int | None], bool] | None = None
        self.story = story  # ➡️ Continue and ✏️ Redo under the images (reference images are on)
        self._downloads = asyncio.Semaphore(_DOWNLOADS_AT_ONCE)
        self._deliveries = asyncio.Semaphore(_DELIVERIES_AT_ONCE)

    def until(self, job: Job) -> float:
        """When the job's delivery stops waiting out Telegram trouble (a ``time.time()``): counted
        from when RunComfy finished, so a restart keeps the same deadline."""
        return (job.completed_at or job.updated_at or time.time()) + self.deadline

    async def deliver(self, job: Job) -> bool:
        """Send every unit not yet sent, then the follow-up; False (and ``job.error`` says why)
        when not one image could be delivered.

        Network trouble at Telegram is waited out until :meth:`until`; then TelegramUnreachableError,
        with the undelivered images kept on disk for /show.
        """
        until = self.until(job)
        async with self._deliveries:
            # Until every image is in, the kept files are needed (a restart, /show): pinned.
            await self.originals.pin(job.id)
            data: dict[int, bytes] = {}
            if job.plan is None and not await self._plan(job, data):
                return False
            assert job.plan is not None
            reply_to = self._reply_target(job)
            for number, unit in enumerate(job.plan):
                if number in job.delivered:
                    continue
                unit = await self._with_data(job, unit, data)
                sent = (
                    await self.sender.send(
                        job, unit, data, first=number == 0, reply_to=reply_to, until=until
                    )
                    if unit.items
                    else Sent()
                )
                self._delivered(job, number, unit, sent)
                for index in unit.items:
                    data.pop(index, None)
            await self._thumbnails(job)
        await self.originals.unpin(job.id)
        if job.actions_message_id is None:
            try:
                await self._post_actions(job, until=until)
            except TelegramUnreachableError as exc:
                # Every image arrived; only the buttons under them did not. /show posts them.
                log.warning("job %d: delivered, but its follow-up was not: %s", job.id, exc)
        return True

    def _reply_target(self, job: Job) -> int:
        """What the images reply to: the message that asked; a redone panel replies to the
        panel it replaces, in the original album."""
        if job.redo_of is None:
            return job.message_id
        parent = self.store.get(job.redo_of)
        if parent is None or parent.chat_id != job.chat_id:
            return job.message_id
        return panel_message(parent, job.redo_panel or 0) or job.message_id

    def _delivered(self, job: Job, number: int, unit: DeliveryUnit, sent: Sent) -> None:
        """Record plan unit ``number`` as delivered, with the file_ids Telegram gave."""
        metrics.images_sent(job, len(unit.items), time.time())
        # The file_ids: documents for Originals, photos for /show, to send them again.
        kept: dict[str, Any] = (
            {"photos": {**job.photos, **sent.file_ids}}
            if unit.kind == UnitKind.PHOTO
            else {"originals": {**job.originals, **sent.file_ids}}
        )
        # The message ids and unique ids: a reply to one of these images takes it as a reference.
        kept["image_keys"] = {**job.image_keys, **sent.keys}
        self.store.update(
            job,
            delivered=sorted({*job.delivered, number}),
            delivered_images=job.delivered_images + len(unit.items),
            **kept,
        )

    async def _plan(self, job: Job, data: dict[int, bytes]) -> bool:
        """Download and check every image, then fix the plan; False if none is usable."""
        infos, problems = await self._download_all(job, data)
        photos = [i for i, info in sorted(infos.items()) if info.as_photo]
        documents = [i for i, info in sorted(infos.items()) if not info.as_photo]
        note = _problems_note(problems, job.lang)
        if not infos:
            self.store.update(job, error=f"{tr(job.lang, 'No image could be delivered.')} {note}")
            return False
        self.store.update(job, plan=render.delivery_plan(photos, documents), error=note or None)
        return True

    async def _download(self, job: Job, index: int) -> bytes:
        async with self._downloads:
            return await self.downloader.download(
                job.image_urls[index], max_bytes=DOCUMENT_MAX_BYTES
            )

    async def _download_all(
        self, job: Job, data: dict[int, bytes]
    ) -> tuple[dict[int, ImageInfo], list[Problem]]:
        async def one(index: int) -> ImageInfo:
            raw = await self._download(job, index)
            # One hand-off to a worker thread, not two: each costs the event loop a task, a
            # future and a wake-up, and writing 1 MB to the page cache takes well under 1 ms.
            info = await asyncio.to_thread(self._check_and_keep, job.id, index, raw, job.size)
            data[index] = raw
            return info

        results = await asyncio.gather(
            *(one(i) for i in range(len(job.image_urls))), return_exceptions=True
        )
        infos: dict[int, ImageInfo] = {}
        problems: list[Problem] = []
        for index, outcome in enumerate(results):
            if isinstance(outcome, ImageInfo):
                infos[index] = outcome
            elif isinstance(outcome, BadImage | PermanentError):
                log.warning("job %d: image %d unusable: %s", job.id, index + 1, outcome)
                problems.append((index, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
        return infos, problems

    def _check_and_keep(self, job_id: int, index: int, raw: bytes, size: str) -> ImageInfo:
        """In a worker thread: check one image (BadImage if unusable), then keep it on disk for
        Originals and a resumed delivery. A failure to keep it is logged, never the delivery's."""
        info = inspect(raw, max_pixels(size))
        try:
            self.originals.save_here(job_id, index, raw)
        except OSError as exc:
            log.warning("job %d: image %d not kept on disk: %s", job_id, index + 1, exc)
        return info

    async def _with_data(
        self, job: Job, unit: DeliveryUnit, data: dict[int, bytes]
    ) -> DeliveryUnit:
        """``unit`` with its images in ``data``; after a restart they come from the disk, or
        from RunComfy again. One that cannot be had any more is left out and named."""
        problems: list[Problem] = []
        for index in unit.items:
            if index in data:
                continue
            try:
                kept = await self.originals.load(job.id, index)
                if kept is None:
                    kept = await self._download(job, index)
                    # On disk again: if Telegram stays away past the deadline, /show needs it.
                    self.background.run(
                        self.originals.save(job.id, index, kept), f"job {job.id}: keep"
                    )
                data[index] = kept
            except PermanentError as exc:
                log.warning("job %d: image %d lost on resume: %s", job.id, index + 1, exc)
                problems.append((index, exc))
        if not problems:
            return unit
        note = _problems_note(problems, job.lang)
        self.store.update(job, error=f"{job.error} {note}" if job.error else note)
        return DeliveryUnit(unit.kind, tuple(i for i in unit.items if i in data))

    async def _post_actions(self, job: Job, *, until: float | None = None) -> None:
        """The follow-up under the images: its buttons (albums carry none)."""
        message = await with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=render.actions_text(job),
                reply_markup=self.actions_keyboard(job),
                message_thread_id=job.thread_id,
                reply_parameters=reply(job.message_id),
            ),
            what=f"job {job.id}: sendMessage (follow-up)",
            first_delay=self.retry_delay,
            max_delay=self.max_retry_delay,
            until=until,
        )
        self.store.update(job, actions_message_id=message.message_id)

    # ---- /show: the delivered images again, from Telegram's copies ------------------------------

    async def show_again(self, job: Job, reply_to: int) -> bool:
        """Every image of the job again, as planned (albums, photos or documents, captions).

        Delivered ones by the file_ids Telegram gave: nothing is uploaded, nothing fetched from
        RunComfy. A job that ended with units undelivered (Telegram away past the delivery
        deadline, say) gets those from the kept files, and they count as delivered from now on.

        False when there was nothing to send (nothing delivered with a file_id, nothing kept).
        """
        units: list[tuple[int | None, DeliveryUnit]] = []  # (plan number if new, unit)
        files: dict[int, bytes | str] = {}
        # A redone panel shows its latest version (sent as the same kind, by its file_id).
        latest = self.store.latest_versions(job.id)
        for number, unit in enumerate(job.plan or []):
            if number in job.delivered:
                known = job.photos if unit.kind == UnitKind.PHOTO else job.originals
                items = tuple(i for i in unit.items if str(i) in known)
                files.update({i: known[str(i)] for i in items})
                for i in items:
                    redo = latest.get(i)
                    theirs = None
                    if redo is not None:
                        theirs = redo.photos if unit.kind == UnitKind.PHOTO else redo.originals
                    if theirs and "0" in theirs:
                        files[i] = theirs["0"]
                    else:
                        latest.pop(i, None)  # not sendable in this album: the original shows
                if items:
                    units.append((None, DeliveryUnit(unit.kind, items)))
            elif job.final:
                for index in unit.items:
                    latest.pop(index, None)  # sent from the job's own kept files
                    if (data := await self.originals.load(job.id, index)) is not None:
                        files[index] = data
                items = tuple(i for i in unit.items if i in files)
                if items:
                    units.append((number, DeliveryUnit(unit.kind, items)))
        for position, (new, unit) in enumerate(units):
            captions = (
                render.versioned_captions(job, unit.items, latest, first=position == 0)
                if latest
                else None
            )
            sent = await self.sender.send(
                job, unit, files, first=position == 0, reply_to=reply_to, captions=captions
            )
            if new is not None:
                self._delivered(job, new, unit, sent)
            else:  # the same images in new messages: a reply to these takes them too
                # (not a redone panel's: a reply to it would take the original's file)
                keys = {k: i for k, i in sent.keys.items() if i not in latest}
                self.store.update(job, image_keys={**job.image_keys, **keys})
        if any(new is not None for new, _ in units):
            await self._thumbnails(job)
        if job.plan is not None and not self.undelivered(job):
            await self.originals.unpin(job.id)
        return bool(units)

    def actions_keyboard(self, job: Job) -> InlineKeyboardMarkup:
        """The follow-up's buttons as this bot shows them (🖼 Studio, Continue and Redo when on)."""
        return render.actions_keyboard(job, self.studio, story=self.story)

    async def _thumbnails(self, job: Job) -> None:
        """The studio's thumbnails of the delivered images, made once from the kept files while
        they are still pinned, for people who use the studio; a failure costs the studio a
        thumbnail, never the delivery."""
        if self.thumbs_for is None or not self.thumbs_for(job.requester_id):
            return
        if self.store.hidden(job.id):  # hidden from the studio (its set, for a redo) meanwhile
            return
        try:
            await thumbs.keep(self.store, self.originals, job)
        except Exception:
            log.exception("job %d: thumbnails not made", job.id)

    def undelivered(self, job: Job) -> bool:
        """Whether the job's plan has units Telegram has not taken yet."""
        return job.plan is not None and len(set(job.delivered)) < len(job.plan)

    async def post_actions(self, job: Job) -> None:
        """The follow-up under the images, if it was never posted."""
        if job.actions_message_id is None:
            await self._post_actions(job)


def panel_message(job: Job, index: int) -> int | None:
    """The message that first carried image ``index`` of the job (its album item), if known."""
    found = [
        int(key[2:]) for key, i in job.image_keys.items() if key.startswith("m:") and i == index
    ]
    return min(found) if found else None


def _problems_note(problems: list[Problem], lang: str | None) -> str:
    if not problems:
        return ""
    reasons = "; ".join(
        tr(lang, "image {n}: {reason}", n=index + 1, reason=_reason(problem, lang))
        for index, problem in problems
    )
    return tr(
        lang,
        "{images} could not be delivered ({reasons}).",
        images=Plural(len(problems), "image"),
        reasons=reasons,
    )


def _reason(problem: SeqbotError | BadImage, lang: str | None) -> str:
    return problem.text(lang) if isinstance(problem, SeqbotError) else tr(lang, str(problem))
