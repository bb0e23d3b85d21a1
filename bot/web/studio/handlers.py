"""The studio's tornado handlers under ``PUBLIC_URL/app/``: the page, its files, the JSON API and
the signed images. Every answer carries the studio's security headers; every API error is
``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import tornado.web

from bot.web.references import Quiet
from bot.web.studio import static, views
from bot.web.studio.actions import StudioActions, parse
from bot.web.studio.service import PAGE_MAX, STATUS, ApiRefusal, Person, Studio
from bot.web.studio.tokens import IMAGE_PATH_RE

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self' https://telegram.org; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors https://web.telegram.org https://*.telegram.org"
)
MAX_JSON_BYTES = 8 * 1024  # an action's body: a Continue's text is the biggest part
_ID = r"([1-9][0-9]{0,17})"
_DIGITS = re.compile(r"[1-9][0-9]{0,17}")


def routes(base: str, studio: Studio, actions: StudioActions, files: dict) -> list[Any]:
    """The studio's routes under ``base`` (PUBLIC_URL's path, regex-escaped)."""
    api = {"studio": studio}
    return [
        (base + r"/app", tornado.web.RedirectHandler, {"url": base.replace("\\", "") + "/app/"}),
        (base + r"/app/", PageHandler, {"files": files}),
        (base + rf"/app/static/({static.NAME_RE})", StaticHandler, {"files": files}),
        (base + r"/app/api/me", MeHandler, api),
        (base + r"/app/api/series", SeriesListHandler, api),
        (base + rf"/app/api/series/{_ID}", SeriesHandler, {**api, "actions": actions}),
        (base + rf"/app/api/series/{_ID}/action", ActionHandler, {**api, "actions": actions}),
        (base + r"/app/api/cast", CastHandler, {**api, "actions": actions}),
        (base + rf"/app/api/cast/{_ID}", CastHandler, {**api, "actions": actions}),
        (base + r"/app/api/.*", ApiNotFound, api),
        (base + rf"/app/img/({IMAGE_PATH_RE})", ImageHandler, api),
    ]


class StudioHandler(Quiet):
    """The headers every studio answer carries."""

    def set_default_headers(self) -> None:
        """Quiet's (no Server, no-store, nosniff), the CSP, and no Referer to anyone."""
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("Referrer-Policy", "no-referrer")


class PageHandler(StudioHandler):
    """``/app/``: index.html, checked again on every open (``no-cache`` with its ETag)."""

    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(self, files: dict[str, static.StaticFile]) -> None:
        """The files read at start."""
        self.files = files

    def get(self) -> None:
        """The page."""
        serve(self, self.files.get("index.html"), "no-cache")

    head = get


class StaticHandler(PageHandler):
    """``/app/static/<name>``: one of the files in ``bot/web/static/``, nothing else."""

    def get(self, name: str) -> None:  # type: ignore[override]
        """The file, cached a while and then revalidated by its ETag."""
        serve(self, self.files.get(name), "public, max-age=600, must-revalidate")

    head = get  # type: ignore[assignment]


def serve(handler: tornado.web.RequestHandler, file: static.StaticFile | None, cache: str) -> None:
    """``file`` with its type, ETag and ``cache``; 304 when the browser has it; 404 if none."""
    if file is None:
        raise tornado.web.HTTPError(404)
    handler.set_header("Cache-Control", cache)
    handler.set_header("ETag", file.etag)
    if file.etag in handler.request.headers.get("If-None-Match", ""):
        handler.set_status(304)
        return
    handler.set_header("Content-Type", file.content_type)
    if handler.request.method != "HEAD":
        handler.write(file.data)


@tornado.web.stream_request_body
class ApiHandler(StudioHandler):
    """A JSON endpoint: the person is checked (initData, pace) before anything else, the body
    included: it is read only for someone signed in, and only up to ``MAX_JSON_BYTES``."""

    SUPPORTED_METHODS = ("GET", "POST", "DELETE")  # type: ignore[assignment]

    def initialize(self, studio: Studio, actions: StudioActions | None = None) -> None:
        """Tornado's per-request set-up."""
        self.studio = studio
        self.actions = actions
        self.lang: str | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    def prepare(self) -> None:
        """Who asks, from the headers alone; a refusal is answered before any body is read."""
        self.person: Person = self.studio.person(self.request.headers.get("Authorization"))
        self.lang = self.person.lang
        length = self.request.headers.get("Content-Length", "0")
        if not length.isascii() or not length.isdigit() or int(length) > MAX_JSON_BYTES:
            raise ApiRefusal("bad_request")  # answered now; the body is never read

    def data_received(self, chunk: bytes) -> None:
        """A piece of a signed-in person's body; past ``MAX_JSON_BYTES`` (a chunked body) the
        rest is dropped as it comes, and the request is refused."""
        self.size += len(chunk)
        if self.size <= MAX_JSON_BYTES:
            self.chunks.append(chunk)

    def reply(self, body: dict) -> None:
        """``body`` as JSON."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, ensure_ascii=False, separators=(",", ":")))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiRefusal):
            if self._finished:
                return
            self.clear()
            self.set_status(e.status)
            if e.retry_after:
                self.set_header("Retry-After", str(max(1, round(e.retry_after + 0.5))))
            self.reply(e.body(e.lang or self.lang))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: object) -> None:
        """Anything else (tornado's own 404s and 405s, a bug): the same JSON shape."""
        code = {404: "not_found", 400: "bad_request", 405: "not_found"}.get(
            status_code, "unavailable"
        )
        self.set_status(STATUS[code])
        self.reply(ApiRefusal(code).body(self.lang))

    def json_body(self) -> Any:
        """The request's JSON body, bounded."""
        if self.size > MAX_JSON_BYTES:
            raise ApiRefusal("bad_request")
        body = b"".join(self.chunks)
        try:
            return json.loads(body or b"null")
        except (ValueError, RecursionError):  # "[[[[…": deeper than Python's stack
            raise ApiRefusal("bad_request") from None


class ApiNotFound(ApiHandler):
    """Any other API path (after the check, so a probe learns nothing)."""

    def get(self) -> None:
        """404 as JSON."""
        raise ApiRefusal("not_found")

    post = delete = get


class MeHandler(ApiHandler):
    """``GET /app/api/me``."""

    def get(self) -> None:
        """Who, the page's texts, the private chat's link."""
        self.reply(self.studio.me(self.person))


class SeriesListHandler(ApiHandler):
    """``GET /app/api/series?before=<id>&limit=<1..30>``."""

    def get(self) -> None:
        """A page of the person's series, newest first."""
        before = self.get_query_argument("before", None)
        limit_text = self.get_query_argument("limit", str(PAGE_MAX))
        if before is not None and not _DIGITS.fullmatch(before):
            raise ApiRefusal("bad_request")
        if not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 3:
            raise ApiRefusal("bad_request")
        limit = int(limit_text)
        if not 1 <= limit <= PAGE_MAX:
            raise ApiRefusal("bad_request")
        self.reply(self.studio.page(self.person, int(before) if before else None, limit))


class SeriesHandler(ApiHandler):
    """``GET /app/api/series/<id>``."""

    async def get(self, job_text: str) -> None:
        """One of the person's series, opened."""
        assert self.actions is not None
        job = self.studio.job(self.person, int(job_text))
        allowed = await self.actions.allowed(job)
        url = self.studio.url(self.person)
        estimate, now = self.studio.estimate(job), self.studio.clock()
        versions = self.studio.versions(job)
        self.reply(
            views.detail(
                job, url, self.person.lang, allowed, estimate=estimate, now=now, versions=versions
            )
        )


class ActionHandler(ApiHandler):
    """``POST /app/api/series/<id>/action``."""

    async def post(self, job_text: str) -> None:
        """Do what the chat's button does."""
        assert self.actions is not None
        request = parse(self.json_body())
        job = self.studio.job(self.person, int(job_text))
        self.reply(await self.actions.run(self.person, job, request))


class CastHandler(ApiHandler):
    """``GET /app/api/cast``, ``DELETE /app/api/cast/<id>``: the cast's own code, once wired."""

    async def get(self, *args: str) -> None:
        """The person's saved characters."""
        assert self.actions is not None
        cast = self.actions.cast
        if args or cast is None:
            raise ApiRefusal("unavailable" if not args else "not_found")
        self.reply({"items": await cast.list(self.person, self.studio.url(self.person))})

    async def delete(self, *args: str) -> None:
        """Remove one of them."""
        assert self.actions is not None
        cast = self.actions.cast
        if not args:
            raise ApiRefusal("not_found")
        if cast is None:
            raise ApiRefusal("unavailable")
        if not await cast.remove(self.person, int(args[0])):
            raise ApiRefusal("not_found")
        self.reply({"ok": True})


class ImageHandler(StudioHandler):
    """``/app/img/<token>``: an image the token grants; any refusal a bare 404."""

    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(self, studio: Studio) -> None:
        """Tornado's per-request set-up."""
        self.studio = studio

    async def get(self, token: str) -> None:
        """The bytes, kept by the browser until the token expires."""
        try:
            picture = await self.studio.picture(token)
        except ApiRefusal as refusal:  # too many full-size images at once
            self.set_status(refusal.status)
            self.set_header("Retry-After", str(max(1, round(refusal.retry_after + 0.5))))
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"{refusal.status}\n")
            return
        if picture is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", picture.content_type)
        self.set_header("Cache-Control", f"private, max-age={picture.max_age}")
        self.set_header("Content-Length", str(len(picture.data)))
        if self.request.method != "HEAD":
            await self.flush()
            self.write(picture.data)

    head = get

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A failure without the request's path: it holds a token that opens the image."""
        log.error("studio image request failed", exc_info=(typ, value, tb))
