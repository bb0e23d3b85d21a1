"""Getting a finished job's images to the chat, once: download, check, plan, send, follow up.

The plan (which images go as photos, which as documents, in which albums) is fixed and stored
before the first send; each unit is marked delivered as soon as Telegram took it, so a restart
sends only what is left. Originals sends the same images again as documents.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Any

from telegram import Bot, InputMediaDocument, InputMediaPhoto

from bot import metrics, render
from bot.downloads import Downloader
from bot.errors import PermanentError, SeqbotError
from bot.images import DOCUMENT_MAX_BYTES, BadImage, ImageInfo, inspect
from bot.models import DeliveryUnit, Job, UnitKind
from bot.originals import OriginalsCache
from bot.sending import Background, reply, with_retries
from bot.store import Store
from bot.texts import Plural, tr

log = logging.getLogger(__name__)

_DOWNLOADS_AT_ONCE = 16
_DELIVERIES_AT_ONCE = 8
_FAILED_ITEM_RE = re.compile(r"failed to send message #([0-9]+)", re.IGNORECASE)
# After a set of originals was sent, more taps on its button send nothing for this long.
ORIGINALS_REPEAT_SECONDS = 60.0

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
    ) -> None:
        self.bot = bot
        self.store = store
        self.downloader = downloader
        self.originals = originals
        self.background = background
        self.retry_delay = retry_delay
        self.originals_cooldown = ORIGINALS_REPEAT_SECONDS
        self._downloads = asyncio.Semaphore(_DOWNLOADS_AT_ONCE)
        self._deliveries = asyncio.Semaphore(_DELIVERIES_AT_ONCE)
        # Per job: until when (monotonic) Originals taps send nothing; inf while a set is sent.
        self._originals_busy: dict[int, float] = {}

    async def deliver(self, job: Job) -> bool:
        """Send every unit not yet sent, then the follow-up; False (and ``job.error`` says why)
        when not one image could be delivered."""
        async with self._deliveries:
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
                        job,
                        unit,
                        data,
                        caption=render.caption(job) if number == 0 else None,
                        reply_to=job.message_id,
                    )
                    if unit.items
                    else {}
                )
                metrics.images_sent(job, len(unit.items), time.time())
                self.store.update(
                    job,
                    delivered=[*job.delivered, number],
                    delivered_images=job.delivered_images + len(unit.items),
                    originals={**job.originals, **sent},
                )
                for index in unit.items:
                    data.pop(index, None)
        if job.actions_message_id is None:
            await self._post_actions(job)
        return True

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
            info = await asyncio.to_thread(inspect, raw)
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
                data[index] = await self.originals.load(job.id, index) or await self._download(
                    job, index
                )
            except PermanentError as exc:
                log.warning("job %d: image %d lost on resume: %s", job.id, index + 1, exc)
                problems.append((index, exc))
        if not problems:
            return unit
        note = _problems_note(problems, job.lang)
        self.store.update(job, error=f"{job.error} {note}" if job.error else note)
        return DeliveryUnit(unit.kind, tuple(i for i in unit.items if i in data))

    async def _post_actions(self, job: Job) -> None:
        """The follow-up under the images: Again, Originals, Details (albums carry no buttons)."""
        message = await with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=render.actions_text(job),
                reply_markup=render.actions_keyboard(job),
                message_thread_id=job.thread_id,
                reply_parameters=reply(job.message_id),
            ),
            first_delay=self.retry_delay,
        )
        self.store.update(job, actions_message_id=message.message_id)

    async def _send_unit(
        self,
        job: Job,
        unit: DeliveryUnit,
        files: dict[int, bytes] | dict[int, bytes | str],
        *,
        caption: str | None,
        reply_to: int,
    ) -> dict[str, str]:
        """Send one photo, document or album of ``files`` (bytes, or Telegram file_ids).

        Returns the file_ids of the documents sent, by image index, for Originals to reuse.
        """
        # Shrinks when an album fails part-way: the items before the failed one were delivered.
        items = list(unit.items)
        photo = unit.kind == UnitKind.PHOTO
        common: dict[str, Any] = {
            "chat_id": job.chat_id,
            "message_thread_id": job.thread_id,
            "reply_parameters": reply(reply_to),
        }

        def name(index: int) -> str:
            data = files[index]
            ext = _extension(data) if isinstance(data, bytes) else "jpg"
            return f"seq-{job.id}-{index + 1}.{ext}"

        async def send() -> Any:
            if len(items) == 1:
                index = items[0]
                if photo:
                    return await self.bot.send_photo(
                        photo=files[index], filename=name(index), caption=caption, **common
                    )
                return await self.bot.send_document(
                    document=files[index], filename=name(index), caption=caption, **common
                )
            media_cls = InputMediaPhoto if photo else InputMediaDocument
            media = [
                media_cls(
                    media=files[index], filename=name(index), caption=caption if n == 0 else None
                )
                for n, index in enumerate(items)
            ]
            return await self.bot.send_media_group(media=media, **common)

        def partly_sent(description: str) -> None:
            nonlocal items, caption
            m = _FAILED_ITEM_RE.search(description)
            sent = int(m.group(1)) - 1 if m else 0
            if 0 < sent < len(items):
                log.info("job %d: album stopped after %d item(s); sending the rest", job.id, sent)
                items, caption = items[sent:], None

        result = await with_retries(send, first_delay=self.retry_delay, on_album_retry=partly_sent)
        messages = list(result) if isinstance(result, tuple | list) else [result]
        # ``items`` are those of the call that succeeded, so they line up with its messages.
        return {
            str(i): m.document.file_id for i, m in zip(items, messages, strict=False) if m.document
        }

    # ---- 📎 Originals ----------------------------------------------------------------------------

    def claim_originals(self, job_id: int) -> bool:
        """Whether a tap on Originals may send the set: not while one is being sent, nor soon after."""
        now = time.monotonic()
        for other, until in list(self._originals_busy.items()):
            if until <= now:
                del self._originals_busy[other]
        if job_id in self._originals_busy:
            return False
        self._originals_busy[job_id] = math.inf
        return True

    async def send_originals(self, job: Job, reply_to: int) -> bool:
        """Every delivered image again, as documents (uncompressed); False if no longer kept.

        Telegram file_ids of documents already sent are reused; the rest come from the disk cache,
        never from RunComfy again. Call :meth:`claim_originals` first.
        """
        sent = False
        try:
            sent = await self._send_originals(job, reply_to)
            return sent
        finally:
            if sent:
                self._originals_busy[job.id] = time.monotonic() + self.originals_cooldown
            else:  # nothing went out: the next tap may try again
                self._originals_busy.pop(job.id, None)

    async def _send_originals(self, job: Job, reply_to: int) -> bool:
        indexes = [i for n in job.delivered for i in (job.plan or [])[n].items]
        files: dict[int, str | bytes] = {}
        for index in indexes:
            known = job.originals.get(str(index))
            files[index] = known or await self.originals.load(job.id, index) or b""
        if not indexes or any(v == b"" for v in files.values()):
            return False
        for unit in render.delivery_plan([], indexes):
            sent = await self._send_unit(job, unit, files, caption=None, reply_to=reply_to)
            self.store.update(job, originals={**job.originals, **sent})
        return True


def _extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[8:12] == b"WEBP":
        return "webp"
    return "jpg"


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
