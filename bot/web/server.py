"""The bot's one web server (tornado): the webhook, the reference images, a health path and the
studio (the Mini App under ``/app/``).

It runs when webhook mode is on or PUBLIC_URL is set, on WEB_LISTEN:WEB_PORT, behind the
operator's TLS proxy. Every request is bounded before it costs anything: headers and body each
have a deadline and a size cap, an idle connection is closed, and only so many are open at once.
Any path it does not serve is a 404 as soon as the headers are in, its body never read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.web
from telegram import Bot
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from bot.models import Job
from bot.web.references import ROUTE, HealthHandler, Quiet, ReferenceHandler, ReferenceLinks
from bot.web.studio.actions import StudioActions
from bot.web.studio.handlers import routes as studio_routes
from bot.web.studio.service import Studio
from bot.web.studio.static import StaticFile
from bot.web.webhook import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    TIMEOUT_SECONDS,
    UpdateGate,
    UpdateHandler,
)

log = logging.getLogger(__name__)

# Telegram opens up to 100 connections; RunComfy fetches up to 10 references per job at once.
MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class Webhook:
    """What the webhook path needs: where updates go, and the secret Telegram sends."""

    bot: Bot
    queue: asyncio.Queue[object]
    path: str
    secret: str


@dataclass(frozen=True)
class References:
    """What the reference path needs: the links, the jobs, the files (see ``ReferenceHandler``)."""

    links: ReferenceLinks
    job: Callable[[int], Job | None]  # the job with this id, as the database has it
    path: Callable[[int, str], Path]  # where a job's reference file is kept


@dataclass(frozen=True)
class StudioParts:
    """What the studio's paths need (``bot.web.studio``): its answers, its actions, its files."""

    studio: Studio
    actions: StudioActions
    files: dict[str, StaticFile]


@tornado.web.stream_request_body
class NotFoundHandler(Quiet):
    """Any other path: 404 as soon as the headers are in, the body never read."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")  # type: ignore[assignment]

    def prepare(self) -> None:
        """Refuse before the body."""
        raise tornado.web.HTTPError(404)


class _BoundedServer(HTTPServer):
    """tornado's server, closing a connection at once when ``max_connections`` are open."""

    max_connections = MAX_CONNECTIONS

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:
            log.debug("web: %d connections open; closing a new one", len(self._connections))
            stream.close()
            return
        super().handle_stream(stream, address)


class WebServer:
    """One tornado server: the webhook (``webhook``), the reference images and the health path
    under PUBLIC_URL's path (``references``, ``prefix``, ``nonce``); each part only if given."""

    def __init__(
        self,
        *,
        webhook: Webhook | None = None,
        references: References | None = None,
        studio: StudioParts | None = None,
        prefix: str = "",
        nonce: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.gate = UpdateGate()
        self.nonce = nonce or secrets.token_urlsafe(16)
        routes: list[Any] = []
        if webhook is not None:
            route = f"/{re.escape(webhook.path)}/?" if webhook.path else "/"
            args = {
                "bot": webhook.bot,
                "queue": webhook.queue,
                "secret": webhook.secret,
                "gate": self.gate,
            }
            routes.append((route, UpdateHandler, args))
        if references is not None:
            base = re.escape(prefix)
            args = {"links": references.links, "job": references.job, "path": references.path}
            routes.append((base + ROUTE, ReferenceHandler, args))
            routes.append((base + "/healthz", HealthHandler, {"nonce": self.nonce}))
        if studio is not None:
            routes += studio_routes(re.escape(prefix), studio.studio, studio.actions, studio.files)
        app = tornado.web.Application(
            routes, default_handler_class=NotFoundHandler, log_function=_no_access_log
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

    def stop_updates(self) -> None:
        """Take no more updates (answered 503: Telegram sends them again); the rest still serves."""
        self.gate.open = False

    async def stop(self) -> None:
        """Stop accepting connections and close the open ones."""
        self.gate.open = False
        if self._listening:
            self._listening = False
            self._server.stop()
            await self._server.close_all_connections()


def nonce_path(database_path: Path) -> Path:
    """``<DATABASE_PATH>.webnonce``: the running bot's health nonce, read by ``doctor``."""
    return database_path.with_name(database_path.name + ".webnonce")


def write_nonce(database_path: Path, nonce: str) -> None:
    """Tell ``doctor`` (another process) what this start's health path answers."""
    path = nonce_path(database_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(nonce)
    tmp.replace(path)


def _no_access_log(handler: Any) -> None:
    """No line per request: every update and every fetch would log one."""
