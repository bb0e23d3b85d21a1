"""The life of a job: submit once, poll to the end, deliver once; resume after a restart."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import (
    Bot,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot import limits, render, runcomfy, schedule, schema
from bot.command import SeqRequest
from bot.config import Settings
from bot.downloads import Downloader
from bot.errors import PermanentError, SeqbotError, SubmitUnknownError, TransientError
from bot.images import DOCUMENT_MAX_BYTES, BadImage, ImageInfo, inspect
from bot.originals import OriginalsCache
from bot.permissions import requester_name, requester_of
from bot.runcomfy import RunComfyClient
from bot.store import CANCELLABLE, Job, Status, Store
from bot.texts import Plural, lang_of, tr

log = logging.getLogger(__name__)

_RETRY_AFTER_RE = re.compile(r"retry after (\d+)", re.IGNORECASE)
_FAILED_ITEM_RE = re.compile(r"failed to send message #(\d+)", re.IGNORECASE)
_SEND_ATTEMPTS = 6
_DOWNLOADS_AT_ONCE = 16
_DELIVERIES_AT_ONCE = 8
_MAX_POLL_BACKOFF = 30.0
_WINDOW_CACHE_SECONDS = 30.0
# After a set of originals was sent, more taps on its button send nothing for this long.
ORIGINALS_REPEAT_SECONDS = 60.0
# Groups allow about 20 messages a minute: within one state, a status edit waits this long.
GROUP_EDIT_INTERVAL = 10.0
# More Telegram requests than this waiting at once means the flood limits are the bottleneck.
TELEGRAM_BUSY = 15


class DeliveryFailed(SeqbotError):
    """Telegram would not take the images, after retries."""


@dataclass(frozen=True)
class Origin:
    """Where a job comes from: the message it answers and who asked."""

    chat_id: int
    message_id: int
    user_id: int | None
    requester_id: int | None  # whose quota and caps: the posting channel or group, else the user
    user_name: str | None
    thread_id: int | None
    chat_type: str | None
    lang: str | None = None

    @classmethod
    def of(cls, message: Message) -> Origin:
        """The origin of a command ``message``."""
        user = message.from_user
        return cls(
            chat_id=message.chat.id,
            message_id=message.message_id,
            user_id=user.id if user else None,
            requester_id=requester_of(message),
            user_name=requester_name(user, message.sender_chat),
            thread_id=message.message_thread_id if message.is_topic_message else None,
            chat_type=message.chat.type,
            lang=lang_of(user.language_code if user else None),
        )


class JobRunner:
    """Owns every active job: one asyncio task each, SQLite as the record."""

    def __init__(
        self,
        *,
        bot: Bot,
        store: Store,
        client: RunComfyClient,
        settings: Settings,
        downloader: Downloader,
        originals: OriginalsCache | None = None,
    ) -> None:
        self.bot = bot
        # Result images come through their own client: no token, public addresses, a deadline.
        self.downloader = downloader
        self.originals = originals or OriginalsCache(
            settings.database_path.parent / "originals", keep_days=settings.originals_keep_days
        )
        self.store = store
        self.client = client
        self.settings = settings
        # The same Job object is shared by a job's task and the Cancel button.
        self.active: dict[int, Job] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._downloads = asyncio.Semaphore(_DOWNLOADS_AT_ONCE)
        self._deliveries = asyncio.Semaphore(_DELIVERIES_AT_ONCE)
        self._operator_alerts: set[str] = set()
        self._in_flight = 0  # Telegram requests of jobs under way (waiting in the rate limiter too)
        self._edit_locks: dict[int, asyncio.Lock] = {}
        self._edit_waiting: set[int] = set()  # jobs with a background edit not yet started
        self._background: set[asyncio.Task[None]] = set()
        self._windows: dict[tuple[int, str], tuple[schedule.Window | None, float]] = {}
        # Per job: what the last status edit showed (state, buttons) and when.
        self._last_edit: dict[int, tuple[tuple[Status, bool], float]] = {}
        # Per job: until when (monotonic) Originals taps send nothing; inf while a set is sent.
        self._originals_busy: dict[int, float] = {}
        self.originals_cooldown = ORIGINALS_REPEAT_SECONDS

    # ---- starting, resuming, stopping -------------------------------------------------------

    async def start(self, request: SeqRequest, origin: Origin) -> Job | None:
        """Check the limits, record the job, then reply and submit it in the background.

        Returns None when this message already made a job. Raises RefusedError when a limit
        says no. Nothing awaits between the checks and the insert, so two commands at once
        cannot both slip under a limit.
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
        job = self.store.create_job(
            chat_id=origin.chat_id,
            message_id=origin.message_id,
            count=request.count,
            size=request.size,
            mode=request.mode,
            seed=request.seed,
            prompt=request.prompt,
            text=request.text,
            user_id=origin.user_id,
            requester_id=origin.requester_id,
            user_name=origin.user_name,
            thread_id=origin.thread_id,
            chat_type=origin.chat_type,
            lang=origin.lang,
        )
        if job is None:
            return None
        self._log(job, "recorded")
        self.active[job.id] = job
        self._spawn(job)
        return job

    async def resume_all(self) -> int:
        """Pick up every unfinished job from SQLite; returns how many."""
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
        """Stop every job task; their state stays in SQLite to be resumed."""
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def find(self, job_id: int) -> Job | None:
        """The live Job object if the job is active, else the stored row."""
        return self.active.get(job_id) or self.store.get(job_id)

    # ---- the life of one job ----------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        try:
            if job.status_message_id is None and not job.final:
                await self._post_status(job)
            if job.status == Status.NEW:
                await self._submit(job)
            elif job.status == Status.SUBMITTING:
                # The process stopped during the POST: it may have been billed. Never resubmit,
                # and count its images as spent.
                await self._finish(
                    job,
                    Status.FAILED,
                    submit_unknown=1,
                    error=tr(
                        job.lang,
                        "The bot restarted while sending this job, so it is unclear whether it "
                        "started. It was not sent again, to avoid charging twice. "
                        "Please send the command again if no images arrive.",
                    ),
                )
            if job.status in (Status.QUEUED, Status.RUNNING):
                await self._poll(job)
            if job.status == Status.SENDING:
                async with self._deliveries:
                    delivered = await self._deliver(job)
                # The last edit waits in Telegram's queue; the delivery slot is free meanwhile.
                if delivered:
                    await self._finish(job, Status.DONE, error=job.error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail(job, exc)
        finally:
            if job.final:
                self.active.pop(job.id, None)
                self._last_edit.pop(job.id, None)

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

    async def _post_status(self, job: Job) -> None:
        """Reply to the command with the status message (before anything is billed)."""
        text, markup = render.status_text(job), render.status_keyboard(job)
        message = await self._with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=text,
                reply_markup=markup,
                message_thread_id=job.thread_id,
                reply_parameters=_reply(job.message_id),
            )
        )
        self.store.update(
            job, status_message_id=message.message_id, status_shown=_shown(text, markup)
        )
        self._last_edit[job.id] = (_milestone(job, markup), time.monotonic())

    async def _submit(self, job: Job) -> None:
        if job.cancel_requested:
            await self._finish(job, Status.CANCELLED)
            return
        payload = schema.build_payload(
            text=job.text, count=job.count, size=job.size, mode=job.mode, seed=job.seed
        )
        # On disk before the POST: a crash from here on is never resubmitted.
        if not self._set(job, Status.SUBMITTING):
            await self.store.saved(job)
            if job.cancel_requested:
                await self._finish(job, Status.CANCELLED)
                return
        try:
            submission = await self.client.submit(payload)
        except SubmitUnknownError as exc:
            log.error("job %d: submit outcome unknown (%s); not resubmitted", job.id, exc)
            await self._finish(
                job,
                Status.FAILED,
                submit_unknown=1,  # it may have been billed: it counts toward the limits
                error=exc.text(job.lang)
                + " "
                + tr(
                    job.lang,
                    "It was not sent again, to avoid charging twice. "
                    "Please send the command again if no images arrive.",
                ),
            )
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
            self._in_background(self._tell_unsaved(job), f"job {job.id}: unsaved notice")
        if job.cancel_requested:
            await self.cancel(job)
        else:
            self._show_soon(job)

    async def _poll(self, job: Job) -> None:
        assert job.request_id is not None
        submitted = job.submitted_at or job.created_at
        deadline = submitted + self.settings.job_deadline
        failures = polls = 0
        last_queued: float | None = None  # when RunComfy last said "in queue"
        while not job.final:
            last_check = time.time() >= deadline
            polls += 1
            try:
                state = await self.client.status(job.request_id)
                if job.final:  # cancelled by a button tap meanwhile
                    return
                if state.status == runcomfy.QUEUED:
                    last_queued = time.time()
                    self._set(job, Status.QUEUED, queue_position=state.queue_position)
                elif state.status == runcomfy.RUNNING:
                    # It started between the last "in queue" and now: take the middle, so the
                    # generation times learnt for the poll schedule are not skewed by our polling.
                    now = time.time()
                    began = (last_queued + now) / 2 if last_queued else now
                    self._set(job, Status.RUNNING, started_at=job.started_at or began)
                elif state.status == runcomfy.CANCELLED:
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
            self._show_soon(job)  # polling never waits for Telegram
            if last_check:
                await self._time_out(job)
                return
            now = time.time()
            delay = self._poll_delay(failures) if failures else self._next_poll(job, now, polls)
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

    def _window(self, count: int, mode: str) -> schedule.Window | None:
        """When similar jobs finished generating; refreshed from SQLite every half minute."""
        key, now = (count, mode), time.monotonic()
        cached = self._windows.get(key)
        if cached is None or cached[1] < now:
            window = schedule.window_of(self.store.generation_times(count, mode))
            cached = self._windows[key] = (window, now + _WINDOW_CACHE_SECONDS)
        return cached[0]

    def _poll_delay(self, failures: int) -> float:
        """The poll interval, backing off (capped, with jitter) while RunComfy keeps failing."""
        interval = self.settings.poll_interval
        backoff = min(interval * 2**failures, max(interval, _MAX_POLL_BACKOFF))
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    async def _fetch_result(self, job: Job) -> bool:
        """After a final status: fetch the result once. True when the job moved on."""
        assert job.request_id is not None
        result = await self.client.result(job.request_id)
        if result.status == runcomfy.FAILED:
            reason = result.error or tr(job.lang, "RunComfy could not make the images.")
            await self._finish(job, Status.FAILED, error=_plain(reason), cost=result.cost)
            return True
        if result.status == runcomfy.CANCELLED:
            await self._finish(job, Status.CANCELLED)
            return True
        if result.status != runcomfy.COMPLETED:
            return False  # status and result disagree for a moment: poll again
        if not result.images:
            await self._finish(
                job,
                Status.FAILED,
                error=tr(job.lang, "RunComfy finished but returned no images."),
                cost=result.cost,
            )
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
        self._show_soon(job)
        return True

    async def _time_out(self, job: Job) -> None:
        if job.status == Status.QUEUED and job.request_id:
            # Still waiting after the deadline: stop it so it is not billed for nothing.
            try:
                await self.client.cancel(job.request_id)
            except SeqbotError as exc:
                log.warning("job %d: cancel at deadline failed: %s", job.id, exc)
        await self._finish(job, Status.TIMED_OUT)

    # ---- delivery ---------------------------------------------------------------------------

    async def _deliver(self, job: Job) -> bool:
        """Send every unit not yet sent, then the follow-up; False if nothing could be sent."""
        data: dict[int, bytes] = {}
        if job.plan is None:
            infos, problems = await self._download_all(job, data)
            photos = [i for i, info in sorted(infos.items()) if info.as_photo]
            documents = [i for i, info in sorted(infos.items()) if not info.as_photo]
            note = _problems_note(problems, job.lang)
            if not photos and not documents:
                error = tr(job.lang, "No image could be delivered.") + f" {note}"
                await self._finish(job, Status.FAILED, error=error)
                return False
            self.store.update(job, plan=render.delivery_plan(photos, documents), error=note or None)
        assert job.plan is not None
        for number, unit in enumerate(job.plan):
            if number in job.delivered:
                continue
            unit = await self._resumed_unit(job, unit, data)
            document_ids = (
                await self._send_unit(
                    job,
                    unit,
                    data,
                    caption=render.caption(job) if number == 0 else None,
                    reply_to=job.message_id,
                )
                if unit["items"]
                else {}
            )
            self.store.update(
                job,
                delivered=[*job.delivered, number],
                delivered_images=job.delivered_images + len(unit["items"]),
                originals={**job.originals, **document_ids},
            )
            for index in unit["items"]:
                data.pop(index, None)
        if job.actions_message_id is None:
            await self._post_actions(job)
        return True

    async def _resumed_unit(
        self, job: Job, unit: dict[str, Any], data: dict[int, bytes]
    ) -> dict[str, Any]:
        """``unit`` with its images in ``data``; after a restart they come from the disk, or
        from RunComfy again. One that cannot be had any more is left out and named."""
        problems: list[tuple[int, SeqbotError | BadImage]] = []
        for index in unit["items"]:
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
        return {**unit, "items": [i for i in unit["items"] if i in data]}

    async def _post_actions(self, job: Job) -> None:
        """The follow-up under the images: Again, Originals, Details (albums carry no buttons)."""
        message = await self._with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=render.actions_text(job),
                reply_markup=render.actions_keyboard(job),
                message_thread_id=job.thread_id,
                reply_parameters=_reply(job.message_id),
            )
        )
        self.store.update(job, actions_message_id=message.message_id)

    async def _download(self, job: Job, index: int) -> bytes:
        async with self._downloads:
            return await self.downloader.download(
                job.image_urls[index], max_bytes=DOCUMENT_MAX_BYTES
            )

    async def _download_all(
        self, job: Job, data: dict[int, bytes]
    ) -> tuple[dict[int, ImageInfo], list[tuple[int, SeqbotError | BadImage]]]:
        async def one(index: int) -> ImageInfo:
            raw = await self._download(job, index)
            info = await asyncio.to_thread(inspect, raw)
            # Kept for Originals and for a resumed delivery; the upload does not wait for the disk.
            self._in_background(self.originals.save(job.id, index, raw), f"job {job.id}: keep")
            data[index] = raw
            return info

        results = await asyncio.gather(
            *(one(i) for i in range(len(job.image_urls))), return_exceptions=True
        )
        infos: dict[int, ImageInfo] = {}
        problems: list[tuple[int, SeqbotError | BadImage]] = []
        for index, outcome in enumerate(results):
            if isinstance(outcome, ImageInfo):
                infos[index] = outcome
            elif isinstance(outcome, BadImage | PermanentError):
                log.warning("job %d: image %d unusable: %s", job.id, index + 1, outcome)
                problems.append((index, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
        return infos, problems

    async def _send_unit(
        self,
        job: Job,
        unit: dict[str, Any],
        files: dict[int, bytes] | dict[int, bytes | str],
        *,
        caption: str | None,
        reply_to: int,
    ) -> dict[str, str]:
        """Send one photo, document or album of ``files`` (bytes, or Telegram file_ids).

        Returns the file_ids of the documents sent, by image index, for Originals to reuse.
        """
        # Shrinks when an album fails part-way: the items before the failed one were delivered.
        items: list[int] = list(unit["items"])
        photo = unit["kind"] == "photo"
        common: dict[str, Any] = {
            "chat_id": job.chat_id,
            "message_thread_id": job.thread_id,
            "reply_parameters": _reply(reply_to),
        }

        def name(index: int) -> str:
            data = files[index]
            ext = _extension(data) if isinstance(data, bytes) else "jpg"
            return f"seq-{job.id}-{index + 1}.{ext}"

        async def send() -> object:
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

        result = await self._with_retries(send, on_album_retry=partly_sent)
        messages = list(result) if isinstance(result, tuple | list) else [result]
        # ``items`` are those of the call that succeeded, so they line up with its messages.
        return {
            str(i): m.document.file_id for i, m in zip(items, messages, strict=False) if m.document
        }

    async def _with_retries(
        self, send: Any, on_album_retry: Callable[[str], None] | None = None
    ) -> Any:
        """Call Telegram, waiting out flood limits and network trouble; Forbidden is final."""
        delay = 1.0
        for attempt in range(1, _SEND_ATTEMPTS + 1):
            try:
                self._in_flight += 1
                return await send()
            except RetryAfter as exc:
                wait = _seconds(exc.retry_after)
            except BadRequest as exc:
                # An album can be refused with "retry after N" as a 400, not a 429.
                m = _RETRY_AFTER_RE.search(exc.message)
                if not m:
                    raise DeliveryFailed(
                        "Telegram refused the images.", detail=exc.message
                    ) from None
                wait = float(m.group(1))
                if on_album_retry:
                    on_album_retry(exc.message)
            except Forbidden:
                raise
            except NetworkError as exc:  # includes TimedOut
                log.warning("Telegram send failed (attempt %d): %s", attempt, exc)
                wait, delay = delay, min(delay * 2, 30.0)
            finally:
                self._in_flight -= 1
            if attempt < _SEND_ATTEMPTS:
                await asyncio.sleep(wait)
        raise DeliveryFailed("Telegram did not accept the images after several tries.")

    # ---- follow-up buttons --------------------------------------------------------------------

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
        indexes = [i for n in job.delivered for i in (job.plan or [])[n]["items"]]
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

    # ---- cancel -----------------------------------------------------------------------------

    async def cancel(self, job: Job) -> str:
        """Cancel at RunComfy: ``cancelled``, ``pending`` (before submit), ``too_late`` or ``final``."""
        if job.final:
            return "final"
        if job.status not in CANCELLABLE:
            return "too_late"
        if job.request_id is None:
            # Not submitted yet: the job's task cancels it as soon as it can.
            self.store.update(job, cancel_requested=1)
            await self._show(job)
            if job.status == Status.NEW and job.id not in self._tasks:
                await self._finish(job, Status.CANCELLED)
                return "cancelled"
            return "pending"
        if await self.client.cancel(job.request_id):
            await self._finish(job, Status.CANCELLED)
            return "cancelled"
        if not job.final:
            self._set(job, Status.RUNNING, started_at=job.started_at or time.time())
            await self._show(job)
        return "too_late"

    # ---- state and the status message -------------------------------------------------------

    def _set(self, job: Job, status: Status, **changes: Any) -> bool:
        """Move the job to ``status``; False while the change waits in memory (see Store)."""
        changed = status != job.status
        saved = self.store.update(job, status=status, **changes)
        if changed:
            self._log(job, status.value)
        return saved

    async def _tell_unsaved(self, job: Job) -> None:
        text = tr(
            job.lang,
            "Job #{id} was accepted by RunComfy (request {request}), but the bot could not "
            "record it just now. It keeps trying; the images will follow.",
            id=job.id,
            request=job.request_id,
        )
        await self._with_retries(
            lambda: self.bot.send_message(
                chat_id=job.chat_id,
                text=text,
                message_thread_id=job.thread_id,
                reply_parameters=_reply(job.message_id),
            )
        )

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
        self.active.pop(job.id, None)
        if show:
            await self._show(job)

    def _log(self, job: Job, event: str) -> None:
        log.info(
            "job %d %s (request %s, chat %d)", job.id, event, job.request_id or "-", job.chat_id
        )

    def _show_soon(self, job: Job) -> None:
        """Edit the status message in the background; edits of one job stay in order.

        One waiting edit per job is enough: it shows the job as it is when its turn comes.
        """
        if job.id in self._edit_waiting:
            return
        self._edit_waiting.add(job.id)

        async def show() -> None:
            try:
                await self._show(job)
            except Forbidden as exc:  # blocked or removed: end the job now, no retry storm
                await self._fail(job, exc)

        self._in_background(show(), f"job {job.id}: status edit")

    def _in_background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``work`` without waiting for it; a failure is logged, not raised."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.info("%s failed in the background: %s", what, exc)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _show(self, job: Job) -> None:
        """Edit the status message to match the job, unless it already does."""
        lock = self._edit_locks.setdefault(job.id, asyncio.Lock())
        async with lock:
            self._edit_waiting.discard(job.id)
            await self._edit_status(job)
        if job.final and not lock.locked():
            self._edit_locks.pop(job.id, None)

    async def _edit_status(self, job: Job) -> None:
        if job.status_message_id is None:
            return
        text, markup = render.status_text(job), render.status_keyboard(job)
        shown = _shown(text, markup)
        if shown == job.status_shown:
            return
        milestone, now = _milestone(job, markup), time.monotonic()
        last = self._last_edit.get(job.id)
        if (
            job.chat_id < 0
            and last
            and last[0] == milestone
            and now - last[1] < GROUP_EDIT_INTERVAL
        ):
            return  # only the queue position or the clock changed: not worth a group message
        if not job.final and self._in_flight >= TELEGRAM_BUSY:
            # Telegram takes ~30 messages a second in all. Under load, replies, images and final
            # states go first; progress edits are skipped (the next change tries again).
            return
        try:
            self._in_flight += 1
            await self.bot.edit_message_text(
                chat_id=job.chat_id,
                message_id=job.status_message_id,
                text=text,
                reply_markup=markup,
            )
        except BadRequest as exc:
            lowered = exc.message.lower()
            if "not modified" in lowered:
                pass
            elif "not found" in lowered or "can't be edited" in lowered:
                # The user deleted the status message: deliver anyway, stop editing.
                log.info("job %d: status message is gone (%s)", job.id, exc.message)
                self.store.update(job, status_message_id=None)
                return
            else:
                log.warning("job %d: could not edit status: %s", job.id, exc.message)
                return
        except RetryAfter as exc:
            # A status edit is not worth waiting for; the next state change retries.
            log.info("job %d: status edit skipped, flood wait %ss", job.id, exc.retry_after)
            return
        except Forbidden:
            raise
        except NetworkError as exc:
            log.warning("job %d: could not edit status: %s", job.id, exc)
            return
        finally:
            self._in_flight -= 1
        self.store.update(job, status_shown=shown)
        self._last_edit[job.id] = (milestone, now)


def _reply(message_id: int) -> ReplyParameters:
    """Reply to ``message_id``, or just post if the user deleted it meanwhile."""
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def _extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[8:12] == b"WEBP":
        return "webp"
    return "jpg"


def _milestone(job: Job, markup: object) -> tuple[Status, bool]:
    """What a status edit must always show: the phase (queued, running, …) and the buttons."""
    phase = Status.QUEUED if job.status in CANCELLABLE else job.status
    return phase, markup is not None


def _shown(text: str, markup: object) -> str:
    return f"{text}\n[buttons]" if markup else text


def _seconds(value: object) -> float:
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)  # type: ignore[arg-type]


def _plain(reason: str) -> str:
    reason = reason.strip().rstrip(".")
    return render.shorten(reason, 300) + "."


def _problems_note(problems: list[tuple[int, SeqbotError | BadImage]], lang: str | None) -> str:
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
