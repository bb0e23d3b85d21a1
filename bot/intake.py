"""Reference images in: a photo, image file or album with ``/seq …``, or ``/seq …`` replying to
one (or to one of the bot's own images), turned into a job with ``SeqRequest.refs``; the saved
characters a ``/seq`` names (``cast=``) go first among them. The same pipeline takes the images of
``/cast add NAME`` (``consumers``: which command's images go where).

Everything is checked, fetched and cleaned before anything is written or billed: the number of
references, room for the images asked for, each file's size, whether Telegram hands it over, and
whether it is a usable image. The files are fetched with ``getFile``: their URL carries the bot
token, so it is never logged, kept or passed on; only the cleaned bytes leave this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from telegram import Bot, Message
from telegram.error import TelegramError

from bot import cast, limits, refimages, render, schema
from bot.command import command_args, parse_seq_command, replied_text
from bot.config import Settings
from bot.errors import InputError, SeqbotError
from bot.models import CastMember, Job, Origin, Reference, SeqRequest
from bot.originals import OriginalsCache
from bot.outsiders import command_for_me
from bot.permissions import origin_of
from bot.refimages import UnusableImage
from bot.store import Store
from bot.texts import lang_of, tr

log = logging.getLogger(__name__)

MAX_REFS = schema.MAX_REFS  # RunComfy's edit-sequential: 1–10 references
MAX_TOTAL = schema.MAX_REFS_AND_IMAGES  # references plus requested images
TELEGRAM_MAX_FILE = 20 * 1024 * 1024  # files over this a bot cannot download
FETCHES_AT_ONCE = 4  # downloads from Telegram in flight, all chats together
# Images being decoded and re-encoded, all chats together: a large PNG decodes to hundreds of
# megabytes, and the default thread pool would otherwise take dozens at once.
CLEANS_AT_ONCE = 2
ALBUMS_REMEMBERED = 512  # albums a reply may still take whole, most recent first
ALBUMS_COLLECTING = 256  # albums waiting for their last item at once; more are not collected
ALBUM_MAX_ITEMS = 10  # Telegram's own limit: a tenth item completes the album
STOP_REPLY_SECONDS = 5.0  # at a stop, how long the replies about albums cut short may take


@dataclass(frozen=True)
class Source:
    """Where one reference comes from: a file a user sent, or one of the bot's own results."""

    kind: str  # "photo", "document" or "result"
    chat_id: int
    message_id: int
    file_id: str = ""
    file_size: int | None = None
    unique_id: str = ""  # the same for the same file, whoever asks and whenever
    job_id: int = 0  # a result: the job and the image's index
    index: int = 0


class RefError(InputError):
    """A reference refused, and why in plain words; with several, which one (1-based)."""

    def __init__(self, user_message: str, *, number: int | None = None) -> None:
        super().__init__(user_message)
        self.number = number

    def text(self, lang: str | None) -> str:
        """The reason in ``lang``, after "Reference 3:" when there are several."""
        why = super().text(lang)
        return why if self.number is None else f"{tr(lang, 'Reference {n}:', n=self.number)} {why}"


def ref_error(reason: str, number: int | None = None) -> RefError:
    """The reply for a reference refused for ``reason`` (a ``UnusableImage`` reason, or
    ``too_big``, ``unavailable``, ``gone``)."""
    match reason:
        case "damaged":
            error = RefError(
                "That image could not be read (it may be damaged). Send it again, or another one."
            )
        case "too_many_pixels":
            error = RefError(
                "That image has too many pixels. Send a smaller one (up to about 50 megapixels)."
            )
        case "too_small":
            error = RefError("That image is too small: each side needs at least 15 pixels.")
        case "ratio":
            error = RefError(
                "That image is too long and narrow: its long side may be at most 16 times its "
                "short side. Crop it and send it again."
            )
        case "too_big":
            error = RefError(
                "That file is over 20 MB, more than Telegram lets a bot download. "
                "Send it as a photo, or a smaller file."
            )
        case "unavailable":
            error = RefError(
                "Telegram did not hand that image over just now. Send it again in a moment."
            )
        case "gone":
            error = RefError(
                "The original of that image is no longer kept. Send it again as a photo."
            )
        case _:
            error = RefError(
                "That file is not an image I can use. Send a JPEG, PNG or WebP photo or file."
            )
    error.number = number
    return error


def media_source(message: Message) -> Source | None:
    """The image a message carries: the largest size of a photo, or a document (any file: its
    bytes decide whether it is an image, not its mime type)."""
    if message.photo:
        largest = message.photo[-1]
        return Source(
            "photo",
            message.chat.id,
            message.message_id,
            largest.file_id,
            largest.file_size,
            largest.file_unique_id,
        )
    if message.document:
        doc = message.document
        return Source(
            "document",
            message.chat.id,
            message.message_id,
            doc.file_id,
            doc.file_size,
            doc.file_unique_id,
        )
    return None


class Consumer(Protocol):
    """What takes a command's images: ``Intake.start`` for ``/seq``, the cast's ``add``."""

    def __call__(
        self, message: Message, text: str, sources: Sequence[Source]
    ) -> Awaitable[None]: ...


class StartJob(Protocol):
    """``JobRunner.start``: checks the limits, writes the job, keeps its reference files, starts."""

    def __call__(
        self, request: SeqRequest, origin: Origin, *, ref_files: Mapping[str, bytes] | None = None
    ) -> Awaitable[Job | None]: ...


@dataclass
class _Album:
    items: dict[int, Message]
    timer: asyncio.Task[None] | None = None


class Intake:
    """Takes images in for jobs: collects albums, remembers them for replies, fetches and cleans
    references (a few at once, each within ``fetch_timeout``), then starts the job."""

    def __init__(
        self,
        bot: Bot,
        settings: Settings,
        store: Store,
        originals: OriginalsCache,
        start_job: StartJob,
        *,
        album_wait: float,
        fetch_timeout: float,
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.store = store
        self.originals = originals
        self.start_job = start_job
        self.album_wait = album_wait
        self.fetch_timeout = fetch_timeout
        self._fetches = asyncio.Semaphore(FETCHES_AT_ONCE)
        self._cleans = asyncio.Semaphore(CLEANS_AT_ONCE)
        self._collecting: dict[tuple[int, str], _Album] = {}
        # (chat, media_group_id) -> the album's items in order: a reply to any takes them all.
        self._albums: OrderedDict[tuple[int, str], tuple[Source, ...]] = OrderedDict()
        self._starting: set[asyncio.Task[None]] = set()  # albums complete, their job starting
        self._told_no_url = False
        # The commands whose photo, album or file this intake takes, and who takes it.
        self.consumers: dict[str, Consumer] = {"seq": self.start}

    # ---- what arrives ------------------------------------------------------------------------

    async def on_media(self, message: Message) -> None:
        """A photo or file: an album item is collected; one captioned ``/seq …`` starts a job,
        ``/cast add …`` saves a character."""
        if message.media_group_id is not None:
            self._collect(message)
            return
        command = command_for_me(message, self.bot.username)
        source = media_source(message)
        consumer = self.consumers.get(command[0]) if command is not None else None
        if consumer is None or source is None:
            return  # a picture without a command: nothing to do
        await consumer(message, message.caption or "", [source])

    def replied_sources(self, message: Message) -> list[Source] | None:
        """The references a ``/seq`` text replying to an image means, or None when it replies to
        no image: the whole album when the bot saw it, else the one image."""
        replied = message.reply_to_message
        if replied is None or (
            message.is_topic_message and replied.message_id == message.message_thread_id
        ):
            return None
        source = media_source(replied)
        if source is None:
            return None
        if replied.from_user is not None and replied.from_user.id == self.bot.id:
            # Matched by the message (an album item is one image) or the file's unique id; a
            # file_id is no promise (Telegram may hand the same file out under another one).
            found = self.store.job_image(
                replied.chat.id,
                message_id=replied.message_id,
                unique_id=source.unique_id,
                file_id=source.file_id,
            )
            if found is None:
                return [dataclasses.replace(source, kind="result", job_id=0)]
            job_id, index = found
            return [dataclasses.replace(source, kind="result", job_id=job_id, index=index)]
        if replied.media_group_id is not None:
            album = self._albums.get((replied.chat.id, replied.media_group_id))
            if album:
                return list(album)
        return [source]

    def _collect(self, message: Message) -> None:
        group = message.media_group_id
        assert group is not None
        key = (message.chat.id, group)
        album = self._collecting.get(key)
        if album is None:
            if len(self._collecting) >= ALBUMS_COLLECTING:
                log.warning("too many albums arriving at once; album %s not collected", group)
                return
            album = self._collecting[key] = _Album({})
        if len(album.items) < ALBUM_MAX_ITEMS:
            album.items[message.message_id] = message
        if album.timer is not None:
            album.timer.cancel()
        # No "album complete" event: it is complete once no item came for a short moment, or at
        # once with its tenth item (Telegram's most).
        wait = 0.0 if len(album.items) >= ALBUM_MAX_ITEMS else self.album_wait
        album.timer = asyncio.get_running_loop().create_task(self._album_done(key, wait))

    async def _album_done(self, key: tuple[int, str], wait: float) -> None:
        await asyncio.sleep(wait)
        album = self._collecting.pop(key)
        task = asyncio.current_task()
        assert task is not None
        self._starting.add(task)
        try:
            await self._album_complete(key, album)
        finally:
            self._starting.discard(task)

    async def _album_complete(self, key: tuple[int, str], album: _Album) -> None:
        items = [album.items[m] for m in sorted(album.items)]  # album order
        sources = [s for s in map(media_source, items) if s is not None]
        self._albums[key] = tuple(sources)
        self._albums.move_to_end(key)
        while len(self._albums) > ALBUMS_REMEMBERED:
            self._albums.popitem(last=False)
        for item in items:
            command = command_for_me(item, self.bot.username)
            consumer = self.consumers.get(command[0]) if command is not None else None
            if consumer is not None:
                try:
                    await consumer(item, item.caption or "", sources)
                except Exception:
                    log.exception("album %s: its command could not be carried out", key[1])
                return

    async def stop(self) -> None:
        """Drop albums still being collected, telling whoever sent one with a command to send it
        again; let those whose job is being started finish (a job written but stopped before its
        files are kept would fail after the restart)."""
        timers = [a.timer for a in self._collecting.values() if a.timer is not None]
        for timer in timers:
            timer.cancel()
        if timers:
            await asyncio.wait(timers)
        # Not started with what has arrived: the rest of the album may come only after the
        # restart, and a job with some of its references would be billed for the wrong thing.
        dropped = [
            item
            for album in self._collecting.values()
            for item in album.items.values()
            if (command := command_for_me(item, self.bot.username)) is not None
            and command[0] in self.consumers
        ]
        self._collecting.clear()
        if dropped:
            await asyncio.wait(
                [asyncio.create_task(_ask_to_resend(item)) for item in dropped],
                timeout=STOP_REPLY_SECONDS,
            )
        if self._starting:
            await asyncio.wait(set(self._starting))

    async def kept_refs(self, job: Job) -> tuple[tuple[Reference, ...], dict[str, bytes]] | None:
        """🔁 Again: the job's references under new ids (the new job's own files, so either job's
        end leaves the other's alone), with their kept bytes; None when any is no longer kept."""
        refs: list[Reference] = []
        files: dict[str, bytes] = {}
        for ref in job.refs:
            data = await self.originals.load_ref(job.id, ref.id)
            if data is None:
                return None
            new = dataclasses.replace(ref, id=secrets.token_urlsafe(12))
            refs.append(new)
            files[new.id] = data
        return tuple(refs), files

    # ---- from the command to the job ---------------------------------------------------------

    async def start(self, message: Message, text: str, sources: Sequence[Source]) -> None:
        """Check, fetch and clean the references, then start the job as a text ``/seq`` does;
        anything wrong gets one short reply and nothing is written or billed."""
        user = message.from_user
        language = lang_of(user.language_code if user else None)
        try:
            await self._start(message, text, sources)
        except SeqbotError as exc:
            await message.reply_text(exc.text(language), do_quote=True)

    async def _start(self, message: Message, text: str, sources: Sequence[Source]) -> None:
        user = message.from_user
        chat_id = message.chat.id
        limits.check_access(self.settings, user_id=user.id if user else None, chat_id=chat_id)
        if not self.settings.public_url:
            if not self._told_no_url:
                self._told_no_url = True
                log.warning(
                    "a reference image was sent, but PUBLIC_URL is not set: reference images "
                    "are off (see the README, 'Reference images')"
                )
            raise InputError(
                "This bot is not set up for reference images. Send /seq with text only."
            )
        parsed = parse_seq_command(
            command_args(text),
            replied_text=replied_text(message, self.bot.id),
            defaults=self.store.chat_defaults(chat_id),
        )
        if parsed is None:
            await message.reply_text(
                render.usage(lang_of(user.language_code if user else None)), do_quote=True
            )
            return
        request = parsed.request
        origin = origin_of(message)
        # The characters first (a database read): an unknown name is refused before anything
        # is fetched, and the counts below include their images.
        cast_refs, files = self.cast_refs(parsed.cast, origin.requester_id)
        check_counts(len(cast_refs) + len(sources), request.count)
        if cast_refs:
            named = [(name, sum(r.name == name for r in cast_refs)) for name in _names(cast_refs)]
            request = dataclasses.replace(request, text=cast.with_naming(request.text, named))
        if self.store.job_for_message(chat_id, message.message_id) is not None:
            return  # this message made its job already (an update delivered twice)
        # The limits again at the start; here, so a refused request fetches nothing.
        limits.check_spend(
            self.store,
            self.settings,
            user_id=origin.user_id,
            requester_id=origin.requester_id,
            chat_id=chat_id,
            count=request.count,
            now=time.time(),
        )
        cleaned = await self.fetch_all(sources) if sources else []
        refs: list[Reference] = list(cast_refs)
        for source, image in zip(sources, cleaned, strict=True):
            ref = Reference(
                id=secrets.token_urlsafe(12),
                kind=source.kind,
                chat_id=source.chat_id,
                message_id=source.message_id,
                width=image.width,
                height=image.height,
                size=len(image.data),
                job_id=source.job_id,
            )
            refs.append(ref)
            files[ref.id] = image.data
        await self.start_job(
            dataclasses.replace(request, refs=tuple(refs)), origin, ref_files=files
        )

    def cast_refs(
        self, names: Sequence[str], owner_id: int | None
    ) -> tuple[list[Reference], dict[str, bytes]]:
        """The named characters' images as the job's own references (new ids, so a later
        ``/cast remove`` leaves a queued job whole), in the order named, with their bytes.
        InputError naming the unknown ones and the owner's list."""
        if not names:
            return [], {}
        members = [
            self.store.cast_by_key(owner_id, cast.key(n)) if owner_id is not None else None
            for n in names
        ]
        unknown = [n for n, m in zip(names, members, strict=True) if m is None]
        if unknown:
            raise unknown_cast(unknown, self.store.cast_list(owner_id) if owner_id else [])
        refs: list[Reference] = []
        files: dict[str, bytes] = {}
        for member in members:
            assert member is not None and owner_id is not None
            for image in self.store.cast_images(owner_id, member.id):
                ref = Reference(
                    id=secrets.token_urlsafe(12),
                    kind="cast",
                    chat_id=image.chat_id,
                    message_id=image.message_id,
                    width=image.width,
                    height=image.height,
                    size=len(image.data),
                    name=member.name,
                )
                refs.append(ref)
                files[ref.id] = image.data
        return refs, files

    async def fetch_all(
        self, sources: Sequence[Source], *, max_side: int = refimages.MAX_SIDE
    ) -> list[refimages.CleanImage]:
        """Every reference fetched and cleaned (to ``max_side`` at most), in order; RefError
        names the first that failed. The first failure stops the others: the user is told at
        once, nothing more is fetched."""
        numbered = len(sources) > 1
        tasks = [asyncio.create_task(self._fetch_clean(s, max_side)) for s in sources]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()  # those still under way (a failure, or this request cancelled)
            await asyncio.gather(*tasks, return_exceptions=True)
        for number, task in enumerate(tasks, 1):
            if task.cancelled():
                continue
            if isinstance(exc := task.exception(), UnusableImage):
                raise ref_error(exc.reason, number if numbered else None)
            if exc is not None:
                raise exc
        return [task.result() for task in tasks]

    async def _fetch_clean(self, source: Source, max_side: int) -> refimages.CleanImage:
        data = await self._fetch(source)
        # Decoding and encoding take tens of milliseconds: never on the event loop, and only a
        # few at once (memory).
        async with self._cleans:
            return await asyncio.to_thread(refimages.clean, data, max_side)

    async def _fetch(self, source: Source) -> bytes:
        """The bytes of one reference. Raises UnusableImage (reason ``too_big``, ``unavailable``,
        ``gone``)."""
        if source.kind == "result":
            kept = await self.originals.load(source.job_id, source.index) if source.job_id else None
            if kept is None:
                raise UnusableImage("gone")
            return kept
        if source.file_size is not None and source.file_size > TELEGRAM_MAX_FILE:
            raise UnusableImage("too_big")
        async with self._fetches:
            try:
                async with asyncio.timeout(self.fetch_timeout):
                    file = await self.bot.get_file(source.file_id)
                    if file.file_size is not None and file.file_size > TELEGRAM_MAX_FILE:
                        raise UnusableImage("too_big")
                    return bytes(await file.download_as_bytearray())
            except UnusableImage:
                raise
            except TelegramError as exc:
                # Only the kind of error: its text may hold the file's URL, and so the token.
                if "too big" in exc.message.lower():
                    raise UnusableImage("too_big") from None
                log.warning(
                    "chat %d: reference in message %d not fetched: %s",
                    source.chat_id,
                    source.message_id,
                    type(exc).__name__,
                )
                raise UnusableImage("unavailable") from None
            except TimeoutError:
                log.warning(
                    "chat %d: reference in message %d not fetched within %ss",
                    source.chat_id,
                    source.message_id,
                    self.fetch_timeout,
                )
                raise UnusableImage("unavailable") from None


def _names(refs: Sequence[Reference]) -> list[str]:
    """The characters' names in the order of their first image."""
    return list(dict.fromkeys(r.name for r in refs))


def unknown_cast(unknown: Sequence[str], saved: Sequence[CastMember]) -> InputError:
    """The reply to ``cast=`` naming characters the person has not saved: with their list."""
    missing = ", ".join(unknown)
    if not saved:
        return InputError(
            "You have no character named {names}: you have none saved yet. Save one by sending "
            "a photo with the caption /cast add NAME.",
            names=missing,
        )
    return InputError(
        "You have no character named {names}. Yours: {saved}.",
        names=missing,
        saved=", ".join(m.name for m in saved),
    )


def check_counts(refs: int, count: int) -> None:
    """Raise InputError when there are too many references, or no room for ``count`` images
    (the rule lives in ``schema``: the submit checks it again)."""
    schema.check_refs(refs, count)


async def _ask_to_resend(message: Message) -> None:
    """The reply to an album's command when a stop cut the album short."""
    user = message.from_user
    text = tr(
        lang_of(user.language_code if user else None),
        "The bot restarted while your album was arriving, and nothing was started or "
        "billed. Please send the album again.",
    )
    try:
        await message.reply_text(text, do_quote=True)
    except TelegramError as exc:
        log.warning("album dropped at stop: no reply (%s)", type(exc).__name__)
