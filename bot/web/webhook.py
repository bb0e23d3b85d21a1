"""The webhook: Telegram (through the TLS proxy in front of it) POSTs updates to the web server.

The secret header is checked as soon as the headers are in: a request without it is answered
403 and its body never read. The server (``server.py``) bounds headers, bodies, idle time and
connections for every route.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

import tornado.web
from telegram import Bot, Update

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# An update is a few kilobytes; anything far bigger is refused before its body is read.
MAX_BODY_BYTES = 1024 * 1024
# Telegram's headers are a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
# How long a request's headers, its body, and an idle kept-alive connection each may take.
TIMEOUT_SECONDS = 10.0


class UpdateGate:
    """Whether updates are taken: closed when the bot stops, before the rest of the server."""

    def __init__(self) -> None:
        self.open = True


@tornado.web.stream_request_body
class UpdateHandler(tornado.web.RequestHandler):
    """One update per POST; refused (403) without the right secret header, before the body."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    def initialize(
        self, bot: Bot, queue: asyncio.Queue[object], secret: str, gate: UpdateGate
    ) -> None:
        """Tornado's per-request set-up."""
        self.gate = gate
        self.bot = bot
        self.queue = queue
        self.secret = secret.encode()
        self.chunks: list[bytes] = []

    def prepare(self) -> None:
        """Headers in, body not yet read: refuse a request without the right secret now."""
        given = self.request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        # Constant time: how long a refusal takes must not tell how much of a guess was right.
        if not hmac.compare_digest(given, self.secret):
            log.debug("refused a webhook request without the right secret")
            # Answered at once; tornado closes the connection instead of reading the body.
            raise tornado.web.HTTPError(403)
        if not self.gate.open:
            # Stopping: an update taken now would never be handled. Telegram sends it again.
            raise tornado.web.HTTPError(503)

    def data_received(self, chunk: bytes) -> None:
        """A piece of an authenticated body (tornado stops at MAX_BODY_BYTES)."""
        self.chunks.append(chunk)

    async def post(self) -> None:
        """Queue the update for the Application."""
        try:
            update = Update.de_json(json.loads(b"".join(self.chunks)), self.bot)
        except Exception as exc:
            # Answered 200 all the same: an error would make Telegram send it again and again.
            log.warning("skipping a webhook update that cannot be read: %s", exc)
            return
        if update is not None:
            await self.queue.put(update)
