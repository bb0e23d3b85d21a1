"""The local webhook server: Telegram (through the TLS proxy in front of it) POSTs updates here.

Every request is bounded before it costs anything: the secret header is checked as soon as the
headers are in (a request without it is answered 403 and its body never read), headers and body
each have a deadline, an idle connection is closed, and only so many connections are open at once.
"""

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
from tornado.iostream import IOStream

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# An update is a few kilobytes; anything far bigger is refused before its body is read.
MAX_BODY_BYTES = 1024 * 1024
# Telegram's headers are a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
# Telegram opens at most 100 connections (setWebhook's max_connections); more are someone else's.
MAX_CONNECTIONS = 128
# How long a request's headers, its body, and an idle kept-alive connection each may take.
TIMEOUT_SECONDS = 10.0


@tornado.web.stream_request_body
class UpdateHandler(tornado.web.RequestHandler):
    """One update per POST; refused (403) without the right secret header, before the body."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    def initialize(self, bot: Bot, queue: asyncio.Queue[object], secret: str) -> None:
        """Tornado's per-request set-up."""
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


@tornado.web.stream_request_body
class NotFoundHandler(tornado.web.RequestHandler):
    """Any other path: 404 as soon as the headers are in, the body never read."""

    def prepare(self) -> None:
        """Refuse before the body."""
        raise tornado.web.HTTPError(404)


class _BoundedServer(HTTPServer):
    """tornado's server, closing a connection at once when MAX_CONNECTIONS are already open."""

    max_connections = MAX_CONNECTIONS

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:
            log.debug("webhook: %d connections open; closing a new one", len(self._connections))
            stream.close()
            return
        super().handle_stream(stream, address)


class WebhookServer:
    """A tornado server on ``listen:port`` whose only path is ``path``."""

    def __init__(
        self,
        bot: Bot,
        queue: asyncio.Queue[object],
        *,
        path: str,
        secret: str,
        timeout: float = TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        route = f"/{re.escape(path)}/?" if path else "/"
        app = tornado.web.Application(
            [(route, UpdateHandler, {"bot": bot, "queue": queue, "secret": secret})],
            default_handler_class=NotFoundHandler,
            log_function=_no_access_log,
        )
        self._server = _BoundedServer(
            app,
            max_body_size=MAX_BODY_BYTES,
            max_header_size=MAX_HEADER_BYTES,
            # tornado's header timeout is also how long a kept-alive connection may sit idle.
            idle_connection_timeout=timeout,
            body_timeout=timeout,
        )
        self._server.max_connections = max_connections
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
