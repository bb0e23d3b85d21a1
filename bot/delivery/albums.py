"""One delivery unit to Telegram: a photo, a document or an album, with Telegram's retries.

Used for a job's first delivery, for /show and for Originals alike; what Telegram gave back (the
file_ids) is returned for the caller to keep.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, InputMediaDocument, InputMediaPhoto
from telegram.error import NetworkError, TimedOut

from bot import render, sheets
from bot.models import DeliveryUnit, Job, UnitKind
from bot.sending import reply, with_retries

# The package's one logger name: the lines read as they did before the package was split.
log = logging.getLogger(__package__)

_MAX_READ_TIMEOUT = 300.0
_FAILED_ITEM_RE = re.compile(r"failed to send message #([0-9]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Sent:
    """What Telegram gave back for one send: the file_ids by image index (to send them again),
    and the keys a reply to one of them is matched by (``Job.image_keys``)."""

    file_ids: dict[str, str] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)


class AlbumSender:
    """Sends one photo, document or album of a job's images and says which file_ids came back."""

    def __init__(
        self,
        bot: Bot,
        *,
        retry_delay: float,
        max_retry_delay: float,
        read_timeout: float,
        on_trouble: Callable[[Job, float], None],
    ) -> None:
        self.bot = bot
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.read_timeout = read_timeout  # the HTTP client's; a send after a timeout waits longer
        # Told (job, until) when a send with a deadline meets network trouble.
        self.on_trouble = on_trouble

    async def send(
        self,
        job: Job,
        unit: DeliveryUnit,
        files: dict[int, bytes] | dict[int, bytes | str],
        *,
        reply_to: int | None,
        first: bool = False,
        until: float | None = None,
        to: Place | None = None,
        captions: dict[int, str] | None = None,
    ) -> Sent:
        """Send one photo, document or album of ``files`` (bytes, or Telegram file_ids).

        ``first``: the job's first unit, captioned with its parameters (``render.unit_captions``).
        ``until``: wait out network trouble until then (see ``with_retries``).
        ``to``: another chat (and topic) than the job's, e.g. the person's private chat for the
        studio; ``reply_to`` None: not a reply.
        ``captions``: by image index, instead of ``render.unit_captions`` (/show of a job with
        redone panels).

        Returns the file_ids of what was sent (documents, or the largest size of photos), by
        image index: Originals and /show reuse them; and each image's message id and unique id.
        """
        # Shrinks when an album fails part-way: the items before the failed one were delivered.
        items = list(unit.items)
        photo = unit.kind == UnitKind.PHOTO
        common = where(job, reply_to, to)

        # By image index: after a part-failed album the rest is resent without the first's caption.
        if captions is None:
            captions = render.unit_captions(job, unit.items, first=first)
        # A timeout leaves it unknown whether Telegram took the images: before sending again, give
        # its answer twice as long (up to _MAX_READ_TIMEOUT), so a slow Telegram is waited for
        # rather than sent the same album every minute of a long delivery.
        waits: dict[str, Any] = {}

        def troubled(exc: NetworkError) -> None:
            if isinstance(exc, TimedOut):
                longer = min(2 * waits.get("read_timeout", self.read_timeout), _MAX_READ_TIMEOUT)
                waits["read_timeout"] = max(longer, self.read_timeout)
            if until is not None:
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
        sent = Sent()
        for i, m in zip(items, messages, strict=False):
            file = _file(m, photo)
            if isinstance(getattr(m, "message_id", None), int):
                sent.keys[f"m:{m.message_id}"] = i
            if file is not None:
                sent.file_ids[str(i)] = file.file_id
                sent.keys[f"u:{file.file_unique_id}"] = i
        return sent


# A chat and topic to send to (chat id, message_thread_id).
Place = tuple[int, int | None]


def where(job: Job, reply_to: int | None, to: Place | None = None) -> dict[str, Any]:
    """The chat, topic and reply parameters of a send for ``job``: its own chat, or ``to``."""
    chat_id, thread_id = to if to is not None else (job.chat_id, job.thread_id)
    params: dict[str, Any] = {"chat_id": chat_id, "message_thread_id": thread_id}
    if reply_to is not None:
        params["reply_parameters"] = reply(reply_to)
    return params


def _file(message: Any, photo: bool) -> Any:
    """The photo (its largest size) or document ``message`` carries, if any."""
    if photo:
        return message.photo[-1] if message.photo else None
    return message.document
