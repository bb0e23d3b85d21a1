"""python-telegram-bot's HTTP layer on one ``aiohttp.ClientSession``.

:class:`AiohttpRequest` does what python-telegram-bot's ``HTTPXRequest`` did (the same
constructor arguments, timeouts and their defaults, form-encoded or multipart bodies, the same
``TimedOut`` and ``NetworkError``) for a third of the CPU: httpx, httpcore, h11 and anyio were a
third of the event loop's time under steady load (issue 20).

Every Bot API URL carries the bot token, and aiohttp puts the URL into many of its errors
(``ClientConnectorError``, ``ConnectionTimeoutError``, ``InvalidURL``, ``ClientOSError`` for a
body write...): no error's text is ever used, only its type and, for an OS error, the system's
words for its errno.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from typing import IO
from urllib.parse import urlencode

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

from bot import aio

# Any answer longer than this is refused unread. The Bot API's own answers are far smaller
# (getUpdates: at most 100 updates); the largest are file downloads, and a bot may download
# 20 MB at most (bot/intake.py refuses bigger files before asking).
MAX_ANSWER_BYTES = 32 * 1024 * 1024

# A body is written in slices of this size, each within the write timeout (httpx wrote 64 KiB
# chunks, each within it): a peer that stops reading is noticed, for a few timer updates per MB.
_WRITE_SLICE = 256 * 1024

_POOL_TIMEOUT_MESSAGE = (  # python-telegram-bot's HTTPXRequest says this
    "Pool timeout: All connections in the connection pool are occupied. "
    "Request was *not* sent to Telegram. Consider adjusting the connection "
    "pool size or the pool timeout."
)


class AnswerTooBig(TelegramError):
    """An answer longer than the client reads (with its HTTP status): refused, its body unread
    past the limit."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(f"the answer is too big (over {limit:,} bytes)")
        self.status = status


def failure_text(exc: BaseException) -> str:
    """``aiohttp.ClientConnectorError: Connection refused``: the error's type and, for an OS
    error, the system's words for its errno; never ``str(exc)``, which may hold the URL."""
    cls = type(exc)
    package = cls.__module__.partition(".")[0]
    name = cls.__qualname__ if package == "builtins" else f"{package}.{cls.__qualname__}"
    cause = getattr(exc, "os_error", exc)  # aiohttp's connector errors keep the OS error there
    detail = ""
    if isinstance(cause, socket.gaierror) and isinstance(cause.errno, int):
        detail = _gai_words(cause.errno)
    elif isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno > 0:
        detail = os.strerror(cause.errno)
    return f"{name}: {detail}" if detail else name


def _gai_words(errno: int) -> str:
    """The resolver's words for a getaddrinfo error number (its own table, never a host name)."""
    names = [a for a in dir(socket) if a.startswith("EAI_") and getattr(socket, a) == errno]
    return f"name resolution failed ({names[0]})" if names else "name resolution failed"


# How httpx wrote a multipart field's name and filename (the HTML5 rules): '"' and '\' escaped,
# control characters other than ESC percent-encoded. Raw UTF-8 otherwise, as Telegram expects.
_FORM_ESCAPES = {'"': "%22", "\\": "\\\\"} | {chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}
_FORM_ESCAPE_RE = re.compile("|".join(re.escape(c) for c in _FORM_ESCAPES))


def _form_param(name: str, value: str) -> bytes:
    value = _FORM_ESCAPE_RE.sub(lambda m: _FORM_ESCAPES[m.group(0)], value)
    return f'{name}="{value}"'.encode()


def _content(value: bytes | IO[bytes]) -> bytes:
    """A file's bytes: python-telegram-bot may hand over an open file instead of its bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if hasattr(value, "seek"):
        with contextlib.suppress(OSError):
            value.seek(0)  # as httpx did: the whole file, wherever its position was
    return value.read()


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes | IO[bytes], str]], boundary: str
) -> list[bytes]:
    """The parts of a ``multipart/form-data`` body as httpx wrote it: the fields, then the files
    (name -> (filename, content, mime type)); returned in pieces, so a file is not copied."""
    sep = b"--" + boundary.encode("ascii") + b"\r\n"
    pieces: list[bytes] = []
    for name, value in fields.items():
        head = b"Content-Disposition: form-data; " + _form_param("name", name) + b"\r\n\r\n"
        pieces += [sep, head, value.encode(), b"\r\n"]
    for name, (filename, content, mime) in files.items():
        head = b"Content-Disposition: form-data; " + _form_param("name", name)
        if filename:
            head += b"; " + _form_param("filename", filename)
        head += b"\r\nContent-Type: " + (mime or "application/octet-stream").encode() + b"\r\n\r\n"
        pieces += [sep, head, _content(content), b"\r\n"]
    pieces.append(b"--" + boundary.encode("ascii") + b"--\r\n")
    return pieces


class TimedBody(aiohttp.payload.Payload):
    """A request body in memory, written in slices, each within ``write_timeout``.

    aiohttp has no write timeout of its own; httpx gave every socket write one (python-telegram-
    bot's ``write_timeout``, ``media_write_timeout`` for uploads).
    """

    def __init__(self, pieces: list[bytes], content_type: str, write_timeout: float | None) -> None:
        super().__init__(pieces, content_type=content_type)
        self._pieces = pieces
        self._size = sum(len(p) for p in pieces)
        self._write_timeout = write_timeout
        self._autoclose = True

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The body as text (part of aiohttp's Payload interface; not used for sending)."""
        return b"".join(self._pieces).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        """Every slice written; a TimeoutError when one is not taken in time."""
        loop = asyncio.get_running_loop()
        timeout = self._write_timeout
        async with asyncio.timeout(None) as deadline:
            for piece in self._pieces:
                view = memoryview(piece)
                for start in range(0, len(view), _WRITE_SLICE):
                    if timeout is not None:
                        deadline.reschedule(loop.time() + timeout)
                    await writer.write(view[start : start + _WRITE_SLICE])

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        """As :meth:`write`: aiohttp asks for exactly :attr:`size` bytes."""
        await self.write(writer)


def _body(request_data: RequestData | None, write_timeout: float | None) -> TimedBody | None:
    """What python-telegram-bot's parameters become: form-encoded fields, or multipart with
    the files (None: no body, as httpx sent none for a request without parameters)."""
    if request_data is None:
        return None
    fields = request_data.json_parameters
    files = request_data.multipart_data
    if files:
        boundary = os.urandom(16).hex()
        pieces = multipart(fields, files, boundary)
        return TimedBody(pieces, f"multipart/form-data; boundary={boundary}", write_timeout)
    if not fields:
        return None
    form = urlencode(fields).encode("ascii")
    return TimedBody([form], "application/x-www-form-urlencoded", write_timeout)


class AiohttpRequest(BaseRequest):
    """python-telegram-bot's ``BaseRequest`` on one aiohttp session: HTTP/1.1, an HTTP(S)_PROXY
    from the environment honoured (as httpx did), no cookies kept, redirects not followed,
    answers read up to a limit.

    The session is made inside the event loop (aiohttp needs one): in :meth:`initialize`, or on
    the first request; :meth:`shutdown` closes it, and may be called any number of times.
    """

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None
        # The pool's limit, kept here: aiohttp's connector has one timeout for waiting for a
        # connection and for making it, python-telegram-bot has two (pool and connect).
        self._slots: asyncio.Semaphore | None = None
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    @property
    def read_timeout(self) -> float | None:
        """The read timeout used when a call names none."""
        return self._read_timeout

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=0,
            ssl=aio.tls_context(),
            keepalive_timeout=aio.KEEPALIVE_SECONDS,
        )
        self._slots = asyncio.Semaphore(self._pool_size)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx kept Telegram's cookies; nobody read them
            # The environment's proxy is looked up by _proxy, once per origin: trust_env=True
            # would also look for a .netrc, in a worker thread, on every request.
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),  # each request sets its own
            headers={"User-Agent": self.USER_AGENT},
        )
        return self._session

    async def initialize(self) -> None:
        """Open the session (again, after a shutdown)."""
        if self._session is None or self._session.closed:
            self._open()

    async def shutdown(self) -> None:
        """Close the session; harmless when there is none or it is closed already."""
        session = self._session
        if session is not None and not session.closed:
            await session.close()

    def _proxy(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The HTTP(S)_PROXY from the environment for ``url`` (NO_PROXY honoured), as
        python-telegram-bot's httpx client used it: where Telegram is reachable only through a
        proxy, operators set it. (RunComfy and the downloads never use one.)"""
        origin = url[: url.find("/", url.find("//") + 2)]
        found = self._proxies.get(origin)
        if found is None:
            if len(self._proxies) > 16:  # the Bot API and its file host: one or two origins
                self._proxies.clear()
            try:
                found = get_env_proxy_for_url(URL(origin))
            except (LookupError, ValueError):  # none; or a URL aiohttp refuses, as it will
                found = (None, None)
            self._proxies[origin] = found
        return found

    def _timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        # A handful of combinations (getUpdates adds its long-poll time): made once each.
        timeout = self._timeouts.get((connect, read))
        if timeout is None:
            if len(self._timeouts) > 64:
                self._timeouts.clear()
            # sock_read: each read from the socket, started once the body is sent (httpx's read).
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
            self._timeouts[(connect, read)] = timeout
        return timeout

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One request; TimedOut when a timeout ran out, NetworkError for any other failure."""
        session = self._session
        if session is None:
            session = self._open()  # first use, inside the loop
        elif session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")  # as HTTPXRequest
        slots = self._slots
        assert slots is not None  # made with the session

        has_files = bool(request_data and request_data.contains_files)
        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write_timeout = self._media_write_timeout if has_files else self._write_timeout

        if slots.locked():
            try:
                async with asyncio.timeout(pool_timeout):
                    await slots.acquire()
            except TimeoutError:
                raise TimedOut(_POOL_TIMEOUT_MESSAGE) from None
        else:
            await slots.acquire()
        try:
            body = _body(request_data, write_timeout)
            proxy, proxy_auth = self._proxy(url)
            async with session.request(
                method,
                url,
                data=body,
                proxy=proxy,
                proxy_auth=proxy_auth,
                timeout=self._timeout(connect_timeout, read_timeout),
                allow_redirects=False,  # as httpx: a redirect is an answer (AnsweredError)
            ) as response:
                return response.status, await self._read(response)
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors, and so is a slow write
            raise TimedOut from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise NetworkError(failure_text(exc)) from None
        finally:
            slots.release()

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, decompressed; AnswerTooBig past ``max_answer_bytes``."""
        body = await aio.read_capped(response, self._max_answer_bytes)
        if body is None:
            raise AnswerTooBig(response.status, self._max_answer_bytes)
        return body
