"""Getting a finished job's images to the chat, once: download, check, plan, send, follow up.

The plan (which images go as photos, which as documents, in which albums) is fixed and stored
before the first send; each unit is marked delivered as soon as Telegram took it, so a restart
sends only what is left. Originals sends the same images again as documents; Sheet and ZIP
make one picture or one archive of them (``sheets``) from the files kept on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from telegram import Bot, InputMediaDocument, InputMediaPhoto
from telegram.error import NetworkError, TimedOut

from bot import metrics, render, sheets
from bot.callbacks import JobAction
from bot.downloads import Downloader
from bot.errors import PermanentError, SeqbotError, TelegramUnreachableError
from bot.images import DOCUMENT_MAX_BYTES, BadImage, ImageInfo, inspect, max_pixels
from bot.models import DeliveryUnit, Job, UnitKind
from bot.originals import KeptFile, OriginalsCache
from bot.sending import MAX_BACKOFF, Background, reply, with_retries
from bot.store import Store
from bot.texts import Plural, tr

log = logging.getLogger(__name__)

_DOWNLOADS_AT_ONCE = 16
_DELIVERIES_AT_ONCE = 8
_MAX_READ_TIMEOUT = 300.0
_FAILED_ITEM_RE = re.compile(r"failed to send message #([0-9]+)", re.IGNORECASE)
# After a set of originals (a sheet, a ZIP) was sent, more taps on its button send nothing for
# this long.
ORIGINALS_REPEAT_SECONDS = 60.0
# Sheets and ZIPs made at once (each holds up to a part of Telegram's upload limit, or a decoded
# panel, in memory); the taps after them wait their turn, up to so many.
BUILDS_AT_ONCE = 2
BUILDS_WAITING = 10

Turn = Literal["now", "wait", "full"]
_BUILT = frozenset({JobAction.SHEET, JobAction.ZIP})

Problem = tuple[int, SeqbotError | BadImage]  # an image index, and why it cannot be sent


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
    ) -> None:
        self.bot = bot
        self.store = store
        self.downloader = downloader
        self.originals = originals
        self.background = background
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        # Seconds after RunComfy finished during which a job's images wait out Telegram trouble.
        self.deadline = deadline
        self.read_timeout = read_timeout  # the HTTP client's; a send after a timeout waits longer
        # Told (job, until) when a job's images meet network trouble: the status can say so.
        self.on_trouble: Callable[[Job, float], None] | None = None
        self.repeat_cooldown = ORIGINALS_REPEAT_SECONDS
        self.zip_part_bytes = DOCUMENT_MAX_BYTES  # Telegram's upload limit for a bot
        self._downloads = asyncio.Semaphore(_DOWNLOADS_AT_ONCE)
        self._deliveries = asyncio.Semaphore(_DELIVERIES_AT_ONCE)
        # Per job and button (Originals, Sheet, ZIP): until when (monotonic) taps send nothing;
        # inf while it is being sent.
        self._busy: dict[tuple[int, JobAction], float] = {}
        self.builds_at_once = builds_at_once
        self._builds = asyncio.Semaphore(builds_at_once)

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
            for number, unit in enumerate(job.plan):
                if number in job.delivered:
                    continue
                unit = await self._with_data(job, unit, data)
                sent = (
                    await self._send_unit(
                        job, unit, data, first=number == 0, reply_to=job.message_id, until=until
                    )
                    if unit.items
                    else {}
                )
                self._delivered(job, number, unit, sent)
                for index in unit.items:
                    data.pop(index, None)
        await self.originals.unpin(job.id)
        if job.actions_message_id is None:
            try:
                await self._post_actions(job, until=until)
            except TelegramUnreachableError as exc:
                # Every image arrived; only the buttons under them did not. /show posts them.
                log.warning("job %d: delivered, but its follow-up was not: %s", job.id, exc)
        return True

    def _delivered(self, job: Job, number: int, unit: DeliveryUnit, sent: dict[str, str]) -> None:
        """Record plan unit ``number`` as delivered, with the file_ids Telegram gave."""
        metrics.images_sent(job, len(unit.items), time.time())
        # The file_ids: documents for Originals, photos for /show, to send them again.
        kept = (
            {"photos": {**job.photos, **sent}}
            if unit.kind == UnitKind.PHOTO
            else {"originals": {**job.originals, **sent}}
        )
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
            info = await asyncio.to_thread(inspect, raw, max_pixels(job.size))
            # Kept for Originals and for a resumed delivery; the upload does not wait for the disk.
            self.background.run(self.originals.save(job.id, index, raw), f"job {job.id}: keep")
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
                reply_markup=render.actions_keyboard(job),
                message_thread_id=job.thread_id,
                reply_parameters=reply(job.message_id),
            ),
            what=f"job {job.id}: sendMessage (follow-up)",
            first_delay=self.retry_delay,
            max_delay=self.max_retry_delay,
            until=until,
        )
        self.store.update(job, actions_message_id=message.message_id)

    async def _send_unit(
        self,
        job: Job,
        unit: DeliveryUnit,
        files: dict[int, bytes] | dict[int, bytes | str],
        *,
        reply_to: int,
        first: bool = False,
        until: float | None = None,
    ) -> dict[str, str]:
        """Send one photo, document or album of ``files`` (bytes, or Telegram file_ids).

        ``first``: the job's first unit, captioned with its parameters (``render.unit_captions``).
        ``until``: wait out network trouble until then (see ``with_retries``).

        Returns the file_ids of what was sent (documents, or the largest size of photos), by
        image index: Originals and /show reuse them.
        """
        # Shrinks when an album fails part-way: the items before the failed one were delivered.
        items = list(unit.items)
        photo = unit.kind == UnitKind.PHOTO
        common: dict[str, Any] = {
            "chat_id": job.chat_id,
            "message_thread_id": job.thread_id,
            "reply_parameters": reply(reply_to),
        }

        # By image index: after a part-failed album the rest is resent without the first's caption.
        captions = render.unit_captions(job, unit.items, first=first)
        # A timeout leaves it unknown whether Telegram took the images: before sending again, give
        # its answer twice as long (up to _MAX_READ_TIMEOUT), so a slow Telegram is waited for
        # rather than sent the same album every minute of a long delivery.
        waits: dict[str, Any] = {}

        def troubled(exc: NetworkError) -> None:
            if isinstance(exc, TimedOut):
                longer = min(2 * waits.get("read_timeout", self.read_timeout), _MAX_READ_TIMEOUT)
                waits["read_timeout"] = max(longer, self.read_timeout)
            if self.on_trouble and until is not None:
                self.on_trouble(job, until)

        def name(index: int) -> str:
            data = files[index]
            ext = sheets.extension(data) if isinstance(data, bytes) else "jpg"
            return f"seq-{job.id}-{index + 1}.{ext}"

        async def send() -> Any:
            if len(items) == 1:
                index = items[0]
                if photo:
                    return await self.bot.send_photo(
                        photo=files[index],
                        filename=name(index),
                        caption=captions.get(index),
                        **common,
                        **waits,
                    )
                return await self.bot.send_document(
                    document=files[index],
                    filename=name(index),
                    caption=captions.get(index),
                    **common,
                    **waits,
                )
            media_cls = InputMediaPhoto if photo else InputMediaDocument
            media = [
                media_cls(media=files[index], filename=name(index), caption=captions.get(index))
                for index in items
            ]
            return await self.bot.send_media_group(media=media, **common, **waits)

        def method() -> str:
            if len(items) > 1:
                return "sendMediaGroup"
            return "sendPhoto" if photo else "sendDocument"

        def partly_sent(description: str) -> None:
            nonlocal items
            m = _FAILED_ITEM_RE.search(description)
            sent = int(m.group(1)) - 1 if m else 0
            if 0 < sent < len(items):
                log.info("job %d: album stopped after %d item(s); sending the rest", job.id, sent)
                items = items[sent:]

        result = await with_retries(
            send,
            what=lambda: f"job {job.id}: {method()}",
            first_delay=self.retry_delay,
            max_delay=self.max_retry_delay,
            until=until,
            on_album_retry=partly_sent,
            on_trouble=troubled,
        )
        messages = list(result) if isinstance(result, tuple | list) else [result]
        # ``items`` are those of the call that succeeded, so they line up with its messages.
        return {
            str(i): file_id
            for i, m in zip(items, messages, strict=False)
            if (file_id := _file_id(m, photo))
        }

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
        for number, unit in enumerate(job.plan or []):
            if number in job.delivered:
                known = job.photos if unit.kind == UnitKind.PHOTO else job.originals
                items = tuple(i for i in unit.items if str(i) in known)
                files.update({i: known[str(i)] for i in items})
                if items:
                    units.append((None, DeliveryUnit(unit.kind, items)))
            elif job.final:
                for index in unit.items:
                    if (data := await self.originals.load(job.id, index)) is not None:
                        files[index] = data
                items = tuple(i for i in unit.items if i in files)
                if items:
                    units.append((number, DeliveryUnit(unit.kind, items)))
        for position, (new, unit) in enumerate(units):
            sent = await self._send_unit(job, unit, files, first=position == 0, reply_to=reply_to)
            if new is not None:
                self._delivered(job, new, unit, sent)
        if job.plan is not None and not self.undelivered(job):
            await self.originals.unpin(job.id)
        return bool(units)

    def undelivered(self, job: Job) -> bool:
        """Whether the job's plan has units Telegram has not taken yet."""
        return job.plan is not None and len(set(job.delivered)) < len(job.plan)

    async def post_actions(self, job: Job) -> None:
        """The follow-up under the images, if it was never posted."""
        if job.actions_message_id is None:
            await self._post_actions(job)

    # ---- 📎 Originals, 🗂 Sheet, 📦 ZIP: the delivered images again, from the disk ----------------

    def claim(self, job_id: int, action: JobAction) -> bool:
        """Whether a tap on ``action``'s button may send: not while it is being sent for this job,
        nor soon after (quick repeated taps would upload it all again each time)."""
        now = time.monotonic()
        for key, until in list(self._busy.items()):
            if until <= now:
                del self._busy[key]
        if (job_id, action) in self._busy:
            return False
        self._busy[(job_id, action)] = math.inf
        return True

    def release(self, job_id: int, action: JobAction) -> None:
        """Free a claim whose send never began; a send that began ends its claim itself."""
        if self._busy.get((job_id, action)) == math.inf:
            del self._busy[(job_id, action)]

    async def _claimed(
        self, job: Job, action: JobAction, send: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Run ``send`` for a tap that :meth:`claim` let through; then start the pause, or free
        the button at once when nothing went out."""
        sent = False
        try:
            sent = await send()
            return sent
        finally:
            if sent:
                self._busy[(job.id, action)] = time.monotonic() + self.repeat_cooldown
            else:  # nothing went out: the next tap may try again
                self._busy.pop((job.id, action), None)

    async def send_originals(self, job: Job, reply_to: int) -> bool:
        """Every delivered image again, as documents (uncompressed); False if no longer kept.

        Telegram file_ids of documents already sent are reused; the rest come from the disk cache,
        never from RunComfy again. Call :meth:`claim` first.
        """
        return await self._claimed(
            job, JobAction.ORIGINALS, lambda: self._send_originals(job, reply_to)
        )

    async def send_sheet(self, job: Job, reply_to: int, lang: str | None) -> bool:
        """🗂 One photo of every delivered panel, numbered, from the disk; False if no longer kept.
        Call :meth:`claim` first."""
        return await self._claimed(
            job, JobAction.SHEET, lambda: self._send_sheet(job, reply_to, lang)
        )

    async def send_zip(self, job: Job, reply_to: int, lang: str | None) -> bool:
        """📦 Every delivered image as ``01.jpg``… with ``prompt.txt``, in one ZIP (or parts of
        Telegram's upload limit), from the disk; False if no longer kept. Call :meth:`claim`
        first."""
        return await self._claimed(job, JobAction.ZIP, lambda: self._send_zip(job, reply_to, lang))

    def _delivered_indexes(self, job: Job) -> list[int]:
        return [i for n in job.delivered for i in (job.plan or [])[n].items]

    async def _kept(self, job: Job) -> list[KeptFile] | None:
        """The kept file of every delivered image, in panel order; None if any is gone."""
        indexes = sorted(self._delivered_indexes(job))
        return await self.originals.files(job.id, indexes) if indexes else None

    def _extra(self, job: Job, reply_to: int) -> dict[str, Any]:
        return {
            "chat_id": job.chat_id,
            "message_thread_id": job.thread_id,
            "reply_parameters": reply(reply_to),
        }

    def build_turn(self, job_id: int, action: JobAction) -> Turn:
        """For a claimed Sheet or ZIP tap: whether it is made ``now``, must ``wait`` for another
        to finish, or cannot even wait (``full``: the claim is released, the tap may come again).

        Counted from the claims under way (this one included): they are taken the moment a tap
        comes, before anything is awaited, so taps in the same instant are told apart."""
        under_way = sum(
            1
            for (_, claimed), until in self._busy.items()
            if claimed in _BUILT and until == math.inf
        )
        if under_way <= self.builds_at_once:
            return "now"
        if under_way <= self.builds_at_once + BUILDS_WAITING:
            return "wait"
        self._busy.pop((job_id, action), None)
        return "full"

    @contextlib.asynccontextmanager
    async def _build_slot(self) -> AsyncIterator[None]:
        """One of the BUILDS_AT_ONCE slots, from the build through its upload: what a sheet or
        a ZIP part holds in memory is let go only once Telegram has it."""
        await self._builds.acquire()
        try:
            yield
        finally:
            self._builds.release()

    async def _send_sheet(self, job: Job, reply_to: int, lang: str | None) -> bool:
        kept = await self._kept(job)
        if kept is None:
            return False
        async with self._build_slot():
            try:
                sheet = await asyncio.to_thread(
                    sheets.contact_sheet,
                    [f.path for f in kept],
                    sheets.panel_ratio(job.size),
                    numbers=[f.index + 1 for f in kept],
                    max_pixels=max_pixels(job.size),
                )
            except FileNotFoundError:  # removed (the size cap) while it waited
                return False
            except sheets.BadPanel as exc:
                log.warning("job %d: no sheet: %s", job.id, exc)
                await self._say(job, reply_to, _sheet_refused(job, exc, lang))
                return True
            caption = tr(
                lang, "🗂 Job #{id}: {images}", id=job.id, images=Plural(len(kept), "image")
            )
            await with_retries(
                lambda: self.bot.send_photo(
                    photo=sheet,
                    filename=f"seq-{job.id}-sheet.jpg",
                    caption=caption,
                    **self._extra(job, reply_to),
                ),
                what=f"job {job.id}: sendPhoto (sheet)",
                first_delay=self.retry_delay,
                max_delay=self.max_retry_delay,
            )
        return True

    async def _say(self, job: Job, reply_to: int, text: str) -> None:
        await with_retries(
            lambda: self.bot.send_message(text=text, **self._extra(job, reply_to)),
            what=f"job {job.id}: sendMessage (no sheet)",
            first_delay=self.retry_delay,
            max_delay=self.max_retry_delay,
        )

    async def _send_zip(self, job: Job, reply_to: int, lang: str | None) -> bool:
        kept = await self._kept(job)
        if kept is None:
            return False
        names = [name for name, _ in sheets.panel_names([(f.index + 1, f.head) for f in kept])]
        prompt = render.details_text(job, lang) + "\n"
        groups = sheets.zip_groups(
            [(name, f.size) for name, f in zip(names, kept, strict=True)],
            prompt,
            self.zip_part_bytes,
        )
        images = Plural(len(kept), "image")
        async with self._build_slot():
            # One part at a time, its files read from the disk as it is built: a job's images
            # are never all in memory at once.
            for number, group in enumerate(groups, start=1):
                try:
                    part = await asyncio.to_thread(
                        sheets.zip_part, [(names[n], kept[n].path) for n in group], prompt
                    )
                except FileNotFoundError:  # removed (the size cap) while it waited
                    if number == 1:
                        return False
                    raise
                if len(groups) == 1:
                    name = f"seq-{job.id}.zip"
                    caption = tr(lang, "📦 Job #{id}: {images}", id=job.id, images=images)
                else:
                    name = f"seq-{job.id}-part{number}.zip"
                    caption = tr(
                        lang,
                        "📦 Job #{id}: {images}, part {part} of {parts}",
                        id=job.id,
                        images=images,
                        part=number,
                        parts=len(groups),
                    )
                await with_retries(
                    functools.partial(
                        self.bot.send_document,
                        document=part,
                        filename=name,
                        caption=caption,
                        **self._extra(job, reply_to),
                    ),
                    what=f"job {job.id}: sendDocument (ZIP)",
                    first_delay=self.retry_delay,
                    max_delay=self.max_retry_delay,
                )
                del part
        return True

    async def _send_originals(self, job: Job, reply_to: int) -> bool:
        indexes = self._delivered_indexes(job)
        files: dict[int, str | bytes] = {}
        for index in indexes:
            known = job.originals.get(str(index))
            files[index] = known or await self.originals.load(job.id, index) or b""
        if not indexes or any(v == b"" for v in files.values()):
            return False
        for unit in render.delivery_plan([], indexes):
            sent = await self._send_unit(job, unit, files, reply_to=reply_to)
            self.store.update(job, originals={**job.originals, **sent})
        return True


def _file_id(message: Any, photo: bool) -> str | None:
    """The file_id of the photo (its largest size) or document ``message`` carries."""
    if photo:
        return message.photo[-1].file_id if message.photo else None
    return message.document.file_id if message.document else None


def _sheet_refused(job: Job, exc: sheets.BadPanel, lang: str | None) -> str:
    return tr(
        lang,
        "No contact sheet of job #{id}: image {n}: {reason}.",
        id=job.id,
        n=exc.number,
        reason=tr(lang, str(exc.problem)),
    )


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
