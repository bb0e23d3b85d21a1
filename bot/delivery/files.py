"""📎 Originals, 🗂 Sheet, 📦 ZIP: a delivered job's images again, on request, from the disk.

Originals sends them as documents (the file_ids Telegram gave reused); Sheet and ZIP make one
picture or one archive of them (``sheets``) from the files kept on disk. A tap claims its button
first: one set at a time per job and button, a pause after it, and only a few builds at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from telegram import Bot

from bot import render, sheets
from bot.callbacks import JobAction
from bot.delivery.albums import AlbumSender, Place, Sent, where
from bot.images import DOCUMENT_MAX_BYTES, max_pixels
from bot.models import Job
from bot.originals import KeptFile, OriginalsCache
from bot.sending import with_retries
from bot.store import Store
from bot.texts import Plural, tr

# The package's one logger name: the lines read as they did before the package was split.
log = logging.getLogger(__package__)

# After a set of originals (a sheet, a ZIP) was sent, more taps on its button send nothing for
# this long.
ORIGINALS_REPEAT_SECONDS = 60.0
# Sheets and ZIPs made at once (each holds up to a part of Telegram's upload limit, or a decoded
# panel, in memory); the taps after them wait their turn, up to so many.
BUILDS_AT_ONCE = 2
BUILDS_WAITING = 10

Turn = Literal["now", "wait", "full"]


_BUILT = frozenset({JobAction.SHEET, JobAction.ZIP})


class FileRequests:
    """The Originals, Sheet and ZIP buttons: their claims, the build slots, and the sends."""

    def __init__(
        self,
        bot: Bot,
        store: Store,
        originals: OriginalsCache,
        sender: AlbumSender,
        *,
        retry_delay: float,
        max_retry_delay: float,
        builds_at_once: int = BUILDS_AT_ONCE,
    ) -> None:
        self.bot = bot
        self.store = store
        self.originals = originals
        self.sender = sender
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.repeat_cooldown = ORIGINALS_REPEAT_SECONDS
        self.zip_part_bytes = DOCUMENT_MAX_BYTES  # Telegram's upload limit for a bot
        # Per job and button (Originals, Sheet, ZIP): until when (monotonic) taps send nothing;
        # inf while it is being sent.
        self._busy: dict[tuple[int, JobAction], float] = {}
        self.builds_at_once = builds_at_once
        self._builds = asyncio.Semaphore(builds_at_once)

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

    async def send_originals(
        self, job: Job, reply_to: int | None, *, to: Place | None = None
    ) -> bool:
        """Every delivered image again, as documents (uncompressed); False if no longer kept.

        Telegram file_ids of documents already sent are reused; the rest come from the disk cache,
        never from RunComfy again. Call :meth:`claim` first.
        """
        return await self._claimed(
            job, JobAction.ORIGINALS, lambda: self._send_originals(job, reply_to, to)
        )

    async def send_sheet(
        self, job: Job, reply_to: int | None, lang: str | None, *, to: Place | None = None
    ) -> bool:
        """🗂 One photo of every delivered panel, numbered, from the disk; False if no longer kept.
        Call :meth:`claim` first."""
        return await self._claimed(
            job, JobAction.SHEET, lambda: self._send_sheet(job, reply_to, lang, to)
        )

    async def send_zip(
        self, job: Job, reply_to: int | None, lang: str | None, *, to: Place | None = None
    ) -> bool:
        """📦 Every delivered image as ``01.jpg``… with ``prompt.txt``, in one ZIP (or parts of
        Telegram's upload limit), from the disk; False if no longer kept. Call :meth:`claim`
        first."""
        return await self._claimed(
            job, JobAction.ZIP, lambda: self._send_zip(job, reply_to, lang, to)
        )

    def _delivered_indexes(self, job: Job) -> list[int]:
        return [i for n in job.delivered for i in (job.plan or [])[n].items]

    async def _kept(self, job: Job) -> list[KeptFile] | None:
        """The kept file of every delivered image, in panel order, a redone panel's latest
        version in its place (its original when that version is no longer kept); None if any
        original is gone."""
        indexes = sorted(self._delivered_indexes(job))
        kept = await self.originals.files(job.id, indexes) if indexes else None
        if kept is None:
            return None
        latest = self.store.latest_versions(job.id)
        for n, file in enumerate(kept):
            redo = latest.get(file.index)
            found = await self.originals.files(redo.id, [0]) if redo is not None else None
            if found:
                kept[n] = dataclasses.replace(found[0], index=file.index)
        return kept

    def _kept_refs(self, job: Job) -> list[tuple[str, int, Path]]:
        """The job's kept references as ZIP entries ``refs/1.jpg``… in the model's order (its
        "image 1" first); one no longer kept is left out."""
        entries = []
        for number, ref in enumerate(job.refs, start=1):
            path = self.originals.ref_path(job.id, ref.id)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            entries.append((f"refs/{number}.jpg", size, path))
        return entries

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

    async def _send_sheet(
        self, job: Job, reply_to: int | None, lang: str | None, to: Place | None
    ) -> bool:
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
                await self._say(job, where(job, reply_to, to), _sheet_refused(job, exc, lang))
                return True
            caption = tr(
                lang, "🗂 Job #{id}: {images}", id=job.id, images=Plural(len(kept), "image")
            )
            await with_retries(
                lambda: self.bot.send_photo(
                    photo=sheet,
                    filename=f"seq-{job.id}-sheet.jpg",
                    caption=caption,
                    **where(job, reply_to, to),
                ),
                what=f"job {job.id}: sendPhoto (sheet)",
                first_delay=self.retry_delay,
                max_delay=self.max_retry_delay,
            )
        return True

    async def _say(self, job: Job, params: dict[str, Any], text: str) -> None:
        await with_retries(
            lambda: self.bot.send_message(text=text, **params),
            what=f"job {job.id}: sendMessage (no sheet)",
            first_delay=self.retry_delay,
            max_delay=self.max_retry_delay,
        )

    async def _send_zip(
        self, job: Job, reply_to: int | None, lang: str | None, to: Place | None
    ) -> bool:
        kept = await self._kept(job)
        if kept is None:
            return False
        names = [name for name, _ in sheets.panel_names([(f.index + 1, f.head) for f in kept])]
        # (name in the archive, size, file): the images, then the references in refs/.
        entries = [(name, f.size, f.path) for name, f in zip(names, kept, strict=True)]
        entries += await asyncio.to_thread(self._kept_refs, job)
        prompt = render.details_text(job, lang, self.store.redos(job.id)) + "\n"
        groups = sheets.zip_groups(
            [(name, size) for name, size, _ in entries], prompt, self.zip_part_bytes
        )
        images = Plural(len(kept), "image")
        async with self._build_slot():
            # One part at a time, its files read from the disk as it is built: a job's images
            # are never all in memory at once.
            for number, group in enumerate(groups, start=1):
                try:
                    part = await asyncio.to_thread(
                        sheets.zip_part, [(entries[n][0], entries[n][2]) for n in group], prompt
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
                        **where(job, reply_to, to),
                    ),
                    what=f"job {job.id}: sendDocument (ZIP)",
                    first_delay=self.retry_delay,
                    max_delay=self.max_retry_delay,
                )
                del part
        return True

    async def _send_originals(self, job: Job, reply_to: int | None, to: Place | None) -> bool:
        indexes = self._delivered_indexes(job)
        files: dict[int, str | bytes] = {}
        latest = self.store.latest_versions(job.id)
        for index in indexes:
            redo = latest.get(index)
            if redo is not None:  # a redone panel: its latest version, if still kept
                theirs = redo.originals.get("0") or await self.originals.load(redo.id, 0)
                if theirs:
                    files[index] = theirs
                    continue
                del latest[index]
            known = job.originals.get(str(index))
            files[index] = known or await self.originals.load(job.id, index) or b""
        if not indexes or any(v == b"" for v in files.values()):
            return False
        for unit in render.delivery_plan([], indexes):
            captions = render.versioned_captions(job, unit.items, latest, first=False)
            sent = await self.sender.send(
                job, unit, files, reply_to=reply_to, captions=captions, to=to
            )
            # A version's document is its own job's, to be reused the next time.
            for key, file_id in sent.file_ids.items():
                if (redo := latest.get(int(key))) is not None:
                    self.store.update(redo, originals={**redo.originals, "0": file_id})
            sent = Sent(
                {k: v for k, v in sent.file_ids.items() if int(k) not in latest},
                {k: v for k, v in sent.keys.items() if v not in latest},
            )
            keys = sent.keys
            if to is not None and to[0] != job.chat_id:
                # Message ids of another chat would name other messages in the job's chat.
                keys = {k: v for k, v in keys.items() if not k.startswith("m:")}
            self.store.update(
                job,
                originals={**job.originals, **sent.file_ids},
                image_keys={**job.image_keys, **keys},
            )
        return True


def _sheet_refused(job: Job, exc: sheets.BadPanel, lang: str | None) -> str:
    return tr(
        lang,
        "No contact sheet of job #{id}: image {n}: {reason}.",
        id=job.id,
        n=exc.number,
        reason=tr(lang, str(exc.problem)),
    )
