"""The studio's answers, apart from HTTP: who asks (initData), their series, their images.

The tornado handlers (``handlers.py``) only turn requests into these calls and answers into
JSON; actions are in ``actions.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from telegram.error import TelegramError

from bot import images, limits, thumbs
from bot.errors import SeqbotError
from bot.models import Job, Status
from bot.repeats import Recent
from bot.schedule import Estimate
from bot.sheets import extension
from bot.texts import lang_of
from bot.web.studio import auth, views
from bot.web.studio.ratelimit import RateLimit
from bot.web.studio.texts import error_text, page_texts
from bot.web.studio.tokens import ImageTokens

if TYPE_CHECKING:
    from telegram import Bot

    from bot.config import Settings
    from bot.originals import OriginalsCache
    from bot.store import Store

log = logging.getLogger(__name__)

PAGE_MAX = 30
TELEGRAM_MAX_FILE = 20 * 1024 * 1024  # what getFile lets a bot download
_FULLS_AT_ONCE = 4  # full-size images fetched from Telegram at once
# Full-size images per person: the page loads the panel on screen and its two neighbours.
_FULLS_PER_SECOND = 4.0
_FULLS_BURST = 12
_PEOPLE_REMEMBERED = 100_000  # studio users kept in memory; the rest are asked of the database
_MAKING_AT_ONCE = 2  # thumbnails decoded at once: a newcomer's first gallery leaves a core free
_SMALLS_KEPT = 512  # reference and character thumbnails kept in memory (~15 KB each)
_SMALLS_SECONDS = 3600.0
_CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


STATUS = {
    "unauthorized": 401,
    "expired": 401,
    "not_found": 404,
    "bad_request": 400,
    "rate_limited": 429,
    "unavailable": 503,
}


class ApiRefusal(Exception):
    """An answer other than 200: the contract's error code, its status, a user-safe message."""

    def __init__(self, code: str, message: str | None = None, retry_after: float = 0.0) -> None:
        super().__init__(code)
        self.code = code
        self.status = STATUS[code]
        self.message = message  # None: the code's own text
        self.retry_after = retry_after
        self.lang: str | None = None  # the language of its message, when not the asker's

    def body(self, lang: str | None) -> dict:
        """``{"error": {"code", "message"}}``."""
        return {
            "error": {"code": self.code, "message": self.message or error_text(self.code, lang)}
        }


@dataclass(frozen=True)
class Person:
    """Who is asking, as initData says: their id (whose jobs they see), name and language."""

    id: int
    first_name: str
    lang: str


@dataclass(frozen=True)
class Picture:
    """An image answer: its bytes, type, and how long the browser may keep it."""

    data: bytes
    content_type: str
    max_age: int


class Studio:
    """Everything the studio's handlers ask: sign-in, pages, images."""

    def __init__(
        self,
        *,
        bot: Bot,
        store: Store,
        originals: OriginalsCache,
        settings: Settings,
        key: bytes,
        prefix: str,
        find: Callable[[int], Job | None] | None = None,
        estimate: Callable[[Job], Estimate | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.store = store
        self.originals = originals
        self.settings = settings
        self.prefix = prefix
        self.clock = clock
        self._find = find or store.get
        self._estimate = estimate  # the runner's: what a running job's status counts on
        self._auth_key = auth.secret_key(settings.telegram_token)
        self.tokens = ImageTokens(key, settings.studio_image_token_seconds)
        self.rate = RateLimit(settings.studio_rate_per_second, settings.studio_rate_burst)
        self._fulls = asyncio.Semaphore(_FULLS_AT_ONCE)
        self.full_rate = RateLimit(_FULLS_PER_SECOND, _FULLS_BURST)
        self._people: set[int] = set()  # who has opened the studio (the database has them all)
        self._making = asyncio.Semaphore(_MAKING_AT_ONCE)
        self._smalls: Recent[bytes, bytes] = Recent(_SMALLS_SECONDS, cap=_SMALLS_KEPT)

    # ---- who asks -------------------------------------------------------------------------------

    def person(self, authorization: str | None) -> Person:
        """The person an ``Authorization: tma <initData>`` header names; raises ApiRefusal
        (``unauthorized``, ``expired``, ``rate_limited``)."""
        scheme, _, init_data = (authorization or "").partition(" ")
        if scheme.lower() != "tma":
            raise ApiRefusal("unauthorized")
        now = self.clock()
        try:
            user = auth.verify(
                init_data.strip(),
                self._auth_key,
                now=now,
                max_age=self.settings.studio_auth_max_age,
            )
        except auth.AuthFailed as exc:
            log.debug("studio: refused initData: %s", exc)
            refusal = ApiRefusal(exc.code)
            refusal.lang = lang_of(exc.language_code) if exc.language_code else None
            raise refusal from None
        person = Person(user.id, user.first_name, lang_of(user.language_code))
        try:
            limits.check_user(self.settings, person.id)  # off the allowlist: not even to look
        except SeqbotError as exc:
            raise ApiRefusal("unauthorized", exc.text(person.lang)) from None
        wait = self.rate.take(person.id, now)
        if wait > 0:
            raise ApiRefusal("rate_limited", retry_after=wait)
        if person.id not in self._people and self.store.studio_person_seen(person.id, now):
            self._remember(person.id)
        return person

    def makes_thumbs_for(self, requester_id: int | None) -> bool:
        """Whether a job of ``requester_id`` gets its thumbnails at delivery: only for people
        who have opened the studio (a panel costs ~10-20 ms of CPU to decode and shrink);
        everyone else's are made when the studio first shows them."""
        if requester_id is None:
            return False
        if requester_id in self._people:
            return True
        if not self.store.uses_studio(requester_id):
            return False
        self._remember(requester_id)
        return True

    def _remember(self, person_id: int) -> None:
        if len(self._people) < _PEOPLE_REMEMBERED:
            self._people.add(person_id)

    def me(self, person: Person) -> dict:
        """``/app/api/me``: who, the page's texts, the private chat's link."""
        return {
            "user": {"id": person.id, "first_name": person.first_name, "lang": person.lang},
            "texts": page_texts(person.lang),
            "private_chat_url": f"https://t.me/{self.bot.username}",
        }

    # ---- series ---------------------------------------------------------------------------------

    def url(self, person: Person) -> views.ImageUrl:
        """Makes this person's signed image URLs."""
        now = self.clock()

        def make(job_id: int, index: int, kind: str) -> str:
            token = self.tokens.make(person.id, job_id, index, kind, now)
            return f"{self.prefix}/app/img/{token}"

        return make

    def page(self, person: Person, before: int | None, limit: int) -> dict:
        """A page of the person's series, newest first, and where the next one starts."""
        jobs = self.store.series_page(person.id, before, limit + 1)
        more = len(jobs) > limit
        jobs = [self._live(job) for job in jobs[:limit]]
        url = self.url(person)
        now = self.clock()
        return {
            "items": [
                views.summary(
                    job,
                    url,
                    person.lang,
                    estimate=self.estimate(job),
                    now=now,
                    versions=self.versions(job),
                )
                for job in jobs
            ],
            "next": jobs[-1].id if more else None,
        }

    def estimate(self, job: Job) -> Estimate | None:
        """What a running job's status message counts on (None for others)."""
        if self._estimate is None or job.status != Status.RUNNING:
            return None
        return self._estimate(job)

    def job(self, person: Person, job_id: int) -> Job:
        """The person's job, not hidden; ApiRefusal ``not_found`` for any other (another
        person's too: nobody learns which ids exist)."""
        job = self._find(job_id)
        if (
            job is None
            or job.requester_id != person.id
            or job.redo_of is not None  # a redone panel: part of its set
            or self.store.hidden(job_id)
        ):
            raise ApiRefusal("not_found")
        return job

    def versions(self, job: Job) -> dict[int, Job]:
        """Panel index -> its latest redone version (story), for the panels shown."""
        return self.store.latest_versions(job.id)

    def _live(self, job: Job) -> Job:
        """The running job's own copy (its progress), else the row."""
        if job.final:
            return job
        return self._find(job.id) or job

    # ---- images ---------------------------------------------------------------------------------

    async def picture(self, token: str) -> Picture | None:
        """The image a token grants, or None (bad, expired, another person's, gone)."""
        now = self.clock()
        grant = self.tokens.check(token, now)
        if grant is None:
            return None
        if grant.kind == "c":
            data = await self._cast_thumb(grant.person, grant.job, grant.index)
            return Picture(data, "image/webp", max(0, int(grant.expires - now))) if data else None
        job = self.store.get(grant.job)
        if job is None or self.store.hidden(job.id):
            return None
        # A redone panel's image is its set's: whoever redid it, the set's owner sees it.
        owner = self.store.get(job.redo_of) if job.redo_of is not None else job
        if owner is None or owner.requester_id != grant.person:
            return None
        max_age = max(0, int(grant.expires - now))
        if grant.kind == "r":
            data = await self._ref_thumb(job, grant.index)
            return Picture(data, "image/webp", max_age) if data else None
        if grant.index not in thumbs.delivered_indexes(job):
            return None
        if grant.kind == "t":
            data = await self._thumb(job, grant.index)
            return Picture(data, "image/webp", max_age) if data else None
        # A full-size image is megabytes read (or fetched from Telegram) per request: a paced
        # few per person, whoever holds the URL.
        wait = self.full_rate.take(grant.person, now)
        if wait > 0:
            raise ApiRefusal("rate_limited", retry_after=wait)
        data = await self.full_image(job, grant.index)
        if data is None:
            return None
        return Picture(data, _CONTENT_TYPES[extension(data)], max_age)

    async def _thumb(self, job: Job, index: int) -> bytes | None:
        made = self.store.thumb(job.id, index)
        if made is not None:
            return made
        # Not made at delivery (someone new to the studio, a busy database): made now, once,
        # from the kept file or Telegram's copy.
        data = await self.full_image(job, index)
        if data is None:
            return None
        try:
            async with self._making:
                thumb, width, height = await asyncio.to_thread(thumbs.make, data, job.size)
        except Exception as exc:
            log.warning("job %d: no thumbnail of image %d: %s", job.id, index + 1, exc)
            return None
        self.store.save_thumbs(job.id, [(index, thumb, width, height)])
        return thumb

    async def _cast_thumb(self, owner: int, member: int, index: int) -> bytes | None:
        """A saved character's image, small (the store checks it is the owner's)."""
        images = self.store.cast_images(owner, member)
        if not 0 <= index < len(images):
            return None
        return await self._small(images[index].data)

    async def _ref_thumb(self, job: Job, number: int) -> bytes | None:
        if not 0 <= number < len(job.refs):
            return None
        data = await self.originals.load_ref(job.id, job.refs[number].id)
        return await self._small(data) if data is not None else None

    async def _small(self, data: bytes) -> bytes | None:
        """A reference's or character's image as a thumbnail: not stored, so kept a while in
        memory by its bytes' digest (a page shown again, a URL asked for again, costs no
        decoding), and made at most ``_MAKING_AT_ONCE`` at a time."""
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if (made := self._smalls.get(digest)) is not None:
            return made
        try:
            async with self._making:
                made = (await asyncio.to_thread(thumbs.make, data))[0]
        except Exception:
            return None
        self._smalls.put(digest, made)
        return made

    async def full_image(self, job: Job, index: int) -> bytes | None:
        """Image ``index`` of ``job`` full size: the kept original, else Telegram's copy (never
        its URL); None when neither can be had."""
        kept = await self.originals.load(job.id, index)
        if kept is not None:
            return kept
        file_id = job.originals.get(str(index)) or job.photos.get(str(index))
        if not file_id or job.status not in (Status.DONE, Status.FAILED):
            return None
        async with self._fulls:
            try:
                async with asyncio.timeout(self.settings.reference_fetch_timeout):
                    file = await self.bot.get_file(file_id)
                    if file.file_size is not None and file.file_size > TELEGRAM_MAX_FILE:
                        return None
                    data = bytes(await file.download_as_bytearray())
            except (TelegramError, TimeoutError) as exc:
                # Only the kind: the text of a download error may hold the file URL (the token).
                log.warning(
                    "job %d: image %d not fetched: %s", job.id, index + 1, type(exc).__name__
                )
                return None
        try:
            await asyncio.to_thread(images.inspect, data, images.max_pixels(job.size))
        except images.BadImage:
            return None
        return data
