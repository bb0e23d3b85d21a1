"""The local webhook server: Telegram (through the TLS proxy in front of it) POSTs updates here."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from typing import Any

import tornado.web
from telegram import Bot, Update
from tornado.httpserver import HTTPServer

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# An update is a few kilobytes; anything far bigger is refused before its body is read.
MAX_BODY_BYTES = 1024 * 1024


class UpdateHandler(tornado.web.RequestHandler):
    """One update per POST; refused (403) without the right secret header."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    def initialize(self, bot: Bot, queue: asyncio.Queue[object], secret: str) -> None:
        """Tornado's per-request set-up."""
        self.bot = bot
        self.queue = queue
        self.secret = secret.encode()

    async def post(self) -> None:
        """Check the secret, then queue the update for the Application."""
        given = self.request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        # Constant time: how long a refusal takes must not tell how much of a guess was right.
        if not hmac.compare_digest(given, self.secret):
            log.debug("refused a webhook request without the right secret")
            raise tornado.web.HTTPError(403)
        try:
            update = Update.de_json(json.loads(self.request.body), self.bot)
        except Exception as exc:
            # Answered 200 all the same: an error would make Telegram send it again and again.
            log.warning("skipping a webhook update that cannot be read: %s", exc)
            return
        if update is not None:
            await self.queue.put(update)


class WebhookServer:
    """A tornado server on ``listen:port`` whose only path is ``path``."""

    def __init__(self, bot: Bot, queue: asyncio.Queue[object], *, path: str, secret: str) -> None:
        route = f"/{re.escape(path)}/?" if path else "/"
        app = tornado.web.Application(
            [(route, UpdateHandler, {"bot": bot, "queue": queue, "secret": secret})],
            log_function=_no_access_log,
        )
        self._server = HTTPServer(app, max_body_size=MAX_BODY_BYTES)
        self._listening = False

    def listen(self, port: int, address: str) -> None:
        """Start accepting connections."""
        self._server.listen(port, address=address)
        self._listening = True

    async def stop(self) -> None:
        """Stop accepting connections and close the open ones."""
        if self._listening:
            self._listening = False
            self._server.stop()
            await self._server.close_all_connections()


def _no_access_log(handler: Any) -> None:
    """No line per request: every update would log one."""
