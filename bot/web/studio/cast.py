"""The studio's saved characters (``/cast``): the list with thumbnails, Remove, and "use a panel
as a character"; each the cast's own checks and store calls (``CastDesk``, ``CastStore``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from telegram.error import TelegramError

from bot import cast, refimages
from bot.errors import InputError
from bot.models import CastImage, Job
from bot.texts import Plural, tr
from bot.web.studio.actions import ActionRequest, Started, StudioActions
from bot.web.studio.service import ApiRefusal, Person, Studio
from bot.web.studio.views import ImageUrl

if TYPE_CHECKING:
    from bot.cast_handlers import CastDesk

log = logging.getLogger(__name__)


class StudioCast:
    """What the studio's Cast tab and its "use as character" action call."""

    def __init__(self, studio: Studio, desk: CastDesk) -> None:
        self.studio = studio
        self.desk = desk

    async def list(self, person: Person, url: ImageUrl) -> list[dict]:
        """``[{"id", "name", "thumbs": [url...]}]``, by name, as /cast lists them."""
        return [
            {
                "id": member.id,
                "name": member.name,
                "thumbs": [url(member.id, i, "c") for i in range(member.images)],
            }
            for member in self.studio.store.cast_list(person.id)
        ]

    async def remove(self, person: Person, character_id: int) -> bool:
        """Remove one of the person's characters, as /cast's Remove does."""
        removed = self.studio.store.cast_remove(person.id, character_id)
        if removed is not None:
            log.info("studio: character %d removed by its owner", removed.id)
        return removed is not None

    async def from_panel(self, person: Person, job: Job, request: ActionRequest) -> Started:
        """Save panel ``request.panel`` (its latest version) as the character ``request.name``."""
        if request.panel is None or request.name is None:
            raise ApiRefusal("bad_request")
        name = cast.check_name(request.name)
        key = cast.key(name)
        existing = self.desk.may_save(person.id, key, 1)
        if existing is not None:
            raise InputError(
                "You already have {name}: remove it first, or choose another name.",
                name=existing.name,
            )
        version = self.studio.versions(job).get(request.panel)
        source, index = (version, 0) if version is not None else (job, request.panel)
        data = await self.studio.full_image(source, index)
        if data is None:
            raise InputError("The original of that image is no longer kept.")
        try:
            image = await asyncio.to_thread(refimages.clean, data, cast.IMAGE_MAX_SIDE)
        except refimages.UnusableImage:
            raise InputError("The original of that image is no longer kept.") from None
        kept = CastImage(
            image.data,
            image.width,
            image.height,
            job.chat_id,
            job.actions_message_id or job.message_id,
        )
        member, old = self.studio.store.cast_save(
            person.id, name, key, [kept], cap=self.studio.settings.cast_max_per_person
        )
        if old is not None:  # saved meanwhile under that name: the draft goes, nothing changes
            self.studio.store.cast_discard(person.id, member.id)
            raise InputError(
                "You already have {name}: remove it first, or choose another name.", name=name
            )
        log.info("studio: character %d saved from job %d", member.id, job.id)
        text = tr(
            person.lang,
            "Saved {name} ({images}). Use it in /seq: cast={name}, e.g.\n"
            "/seq 4 cast={name} {name} on a beach at dawn",
            name=member.name,
            images=Plural(member.images, "image"),
        )
        try:
            await self.studio.bot.send_message(chat_id=person.id, text=text)
        except TelegramError as exc:  # saved all the same: the studio's answer says so
            log.info("studio: no message to %d: %s", person.id, type(exc).__name__)
        return text, None


def wire_cast(actions: StudioActions, desk: CastDesk) -> None:
    """The Cast tab and "use as character" from the cast's own code."""
    book = StudioCast(actions.studio, desk)
    actions.cast = book
    actions.wire("cast", book.from_panel)
