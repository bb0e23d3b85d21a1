"""Async client for RunComfy's model API: submit once, poll and fetch with retries, cancel."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from bot import aio, metrics
from bot.errors import PermanentError, RunComfyError, SubmitUnknownError, TransientError
from bot.slots import RankedBucket

log = logging.getLogger(__name__)

MODEL_PATH = "/v1/models/bytedance/seedream-4-0/sequential"
# The same model with reference images (the body has ``images``): same queue, same answers.
EDIT_MODEL_PATH = "/v1/models/bytedance/seedream-4-0/edit-sequential"


class RemoteStatus(StrEnum):
    """Where RunComfy says a request is."""

    QUEUED = "in_queue"
    RUNNING = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The status endpoint says "completed"; the result endpoint says "succeeded". Accept both anywhere.
_STATUS_ALIASES = {
    "succeeded": RemoteStatus.COMPLETED,
    "success": RemoteStatus.COMPLETED,
    "queued": RemoteStatus.QUEUED,
    "running": RemoteStatus.RUNNING,
}

_TROUBLE = "RunComfy is having trouble right now"
# A gateway's "bad gateway" and "gateway timeout": RunComfy may have taken (and billed) the job
# before its answer was lost on the way back, so a submit they answer has an unknown outcome.
_GATEWAY_LOST = frozenset({502, 504})
_RATE_HEADROOM = 0.9  # of RUNCOMFY_MAX_REQUESTS_PER_SECOND, see RunComfyClient.__init__
_CODE_RE = re.compile(r"[0-9]{1,9}")  # str.isdigit() also takes "²", which int() refuses
# Request ids go into URL paths and messages: letters, digits, dots, dashes and underscores only.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# What RunComfy sends back is not trusted: bounds on what the bot keeps of it.
MAX_URL_CHARS = 4096
MAX_ERROR_CHARS = 1000
# An answer body larger than this is not read (a result with 15 URLs of 4096 chars is ~62 KB).
MAX_ANSWER_BYTES = 1_000_000
# Failures that prove a request never left: no connection was made (refused, DNS, TLS handshake,
# connect timeout, or no free connection of the pool in time: aiohttp's "connect" timeout covers
# both), or the URL could not even be built. Every other failure may come after it was sent.
_NOT_SENT: tuple[type[Exception], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
)
_NO_ANSWER: tuple[type[Exception], ...] = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer as read: ``body`` is None when it was too large to read."""

    status_code: int
    body: bytes | None
    retry_after: float | None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class Submission:
    """What a successful submit gives back."""

    request_id: str


@dataclass(frozen=True)
class JobState:
    """A typed status answer."""

    status: RemoteStatus
    queue_position: int | None = None


@dataclass(frozen=True)
class JobResult:
    """A typed result answer."""

    status: RemoteStatus
    images: tuple[str, ...] = ()
    error: str | None = None
    cost: float | None = None


def _capped(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters: RunComfy's words end up in logs and chat messages."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _message_of(body: Any, depth: int = 0) -> str | None:
    if isinstance(body, dict) and depth < 4:
        for key in ("error_message", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return _capped(value)
            if isinstance(value, dict):
                inner = _message_of(value, depth + 1)
                if inner:
                    return inner
    return None


def _cost(value: Any) -> float | None:
    """A cost in USD, or None unless it is a finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        cost = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


def _image_urls(output: dict[str, Any], request_id: str) -> tuple[str, ...]:
    """The output URLs that are strings of a sane length; the rest are dropped and logged."""
    images = output.get("images")
    if not isinstance(images, list):
        single = output.get("image")
        images = [single] if single is not None else []
    urls = tuple(u for u in images if isinstance(u, str) and 0 < len(u) <= MAX_URL_CHARS)
    if len(urls) < len(images):
        log.warning(
            "request %s: dropped %d malformed image URL(s) of %d",
            request_id,
            len(images) - len(urls),
            len(images),
        )
    return urls


def _error_from(status_code: int, body: Any, retry_after: float | None) -> RunComfyError:
    """Map an error answer (HTTP status plus RunComfy's error_code) to our errors."""
    code = body.get("error_code") if isinstance(body, dict) else None
    code = int(code) if isinstance(code, int | str) and _CODE_RE.fullmatch(str(code)) else None
    detail = f"HTTP {status_code}, error_code {code}: {_message_of(body) or ''}".strip()
    if code == 400004 or (status_code in (401, 403) and code != 403001):
        return PermanentError(
            "The bot's RunComfy access is not working. The bot's operator has been told.",
            detail=detail,
            operator_problem=True,
        )
    if code == 400002 or status_code == 402:
        return PermanentError(
            "The bot's RunComfy account has run out of balance. The bot's operator has been told.",
            detail=detail,
            operator_problem=True,
        )
    if code == 400001:
        return PermanentError(
            "RunComfy does not know this model any more.", detail=detail, operator_problem=True
        )
    if code in (403001, 404001) or status_code == 404:
        return PermanentError(
            "RunComfy no longer knows this job (it may have expired).", detail=detail
        )
    if status_code == 429 or status_code >= 500 or (code is not None and status_code == 200):
        return TransientError(_TROUBLE, detail=detail, retry_after=retry_after)
    if status_code in (400, 422):
        reason = _message_of(body)
        if reason:
            return PermanentError(
                "RunComfy refused the request: {reason}.", detail=detail, reason=reason
            )
        return PermanentError("RunComfy refused the request.", detail=detail)
    return PermanentError(
        "RunComfy answered with an unexpected error (HTTP {status}).",
        detail=detail,
        status=status_code,
    )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value[:40])) if value is not None else None
    except ValueError:
        return None


def _normalise_status(raw: Any) -> RemoteStatus:
    word = str(raw).lower()[:40]
    try:
        return _STATUS_ALIASES.get(word) or RemoteStatus(word)
    except ValueError:
        # An unknown status is a protocol surprise, not a final state: keep polling.
        raise TransientError(_TROUBLE, detail=f"unknown status {word!r}") from None


class RunComfyClient:
    """One long-lived ``aiohttp.ClientSession`` for the RunComfy API.

    GETs (and cancel, which is harmless to repeat) are retried on transient trouble with capped,
    jittered exponential backoff that honours ``Retry-After``. The submit POST never is: it bills.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_rate: float = 100.0,
        connections: int = 64,
    ) -> None:
        self._token = token
        self._base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        # All jobs share one budget of requests per second: a thousand jobs must not flood RunComfy.
        # A leaky bucket lets its whole capacity through at once and then leaks at its rate, so
        # in one second up to capacity + rate go out: a small bucket (1/20 of the budget) leaking
        # the rest keeps every second within the budget. The budget is 90 % of ``max_rate``:
        # requests released together can still bunch up behind the connection pool on their way.
        # Slots go by rank: a job far back in the queue asks after everything that concerns jobs
        # at its front or running (one second per place), so with thousands queued, the jobs
        # about to finish are still seen finishing at once.
        budget = max_rate * _RATE_HEADROOM
        burst = max(1.0, budget / 20)
        self._slots = RankedBucket(burst, max(budget - burst, budget / 2))
        # As httpx's Timeout(timeout, connect=min(timeout, 10)) was: aiohttp's "connect" is the
        # wait for a pooled connection plus making one (httpx's pool timeout), "sock_connect"
        # the TCP/TLS connect alone, "sock_read" each read. No total: a slow answer that keeps
        # coming is not cut, as before (answers are capped at MAX_ANSWER_BYTES anyway).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=min(timeout, 10.0), sock_read=timeout
        )
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot of the shared budget."""
        return self._slots.waiting

    async def aclose(self) -> None:
        """Close the HTTP session (harmless twice, or before any request)."""
        self._closed = True
        await self._slots.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp wants a running event loop for it."""
        if self._session is None:
            if self._closed:
                raise RuntimeError("the RunComfy client is closed")
            connector = aiohttp.TCPConnector(
                limit=self._connections,
                limit_per_host=0,
                keepalive_timeout=aio.KEEPALIVE_SECONDS,
                ssl=aio.tls_context(),  # honours SSL_CERT_FILE / SSL_CERT_DIR
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # Only RunComfy's own API gets the token; images come through bot.downloads,
                # without it. This session talks to nothing else.
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                trust_env=False,  # no proxy (nor .netrc) from the environment
                cookie_jar=aiohttp.DummyCookieJar(),  # the API needs none; keep nothing of it
                raise_for_status=False,
            )
            # aiohttp re-sends a GET at once when its connection drops (ServerDisconnectedError,
            # ClientOSError): outside the shared rate budget, the backoff and the counts of
            # _call. Every retry here is _call's own, as with httpx. (No public switch for it.)
            self._session._retry_connection = False
        return self._session

    def _url(self, path: str) -> str:
        return f"{self._base_url}{path}"

    async def _send(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> _Answer:
        """One request, its answer read within MAX_ANSWER_BYTES. Raises aiohttp's errors (and
        ``TimeoutError``) as they come: the callers decide what each means."""
        headers = {"Content-Type": "application/json"} if data is not None else None
        # Redirects are never followed: the API does not redirect, and a followed redirect is a
        # way to send the token (or, after a 303, a GET) somewhere else. aiohttp drops the
        # Authorization header on a cross-origin redirect, but not on a same-origin one to
        # another path, and a submit must not be re-sent anywhere.
        async with self._http().request(
            method,
            self._url(path),
            data=data,
            params=params,
            headers=headers,
            allow_redirects=False,
        ) as response:
            body = await aio.read_capped(response, MAX_ANSWER_BYTES)
            if body is None:
                response.close()  # the rest is not read: the connection is not reused
            return _Answer(response.status, body, _retry_after(response.headers.get("Retry-After")))

    @staticmethod
    def _decode(answer: _Answer) -> Any:
        status = answer.status_code
        if answer.body is None:
            raise TransientError(
                _TROUBLE, detail=f"HTTP {status} with a body over {MAX_ANSWER_BYTES} bytes"
            )
        if 300 <= status < 400:
            raise TransientError(_TROUBLE, detail=f"HTTP {status}: a redirect, not followed")
        try:
            body = json.loads(answer.body)
        except ValueError:  # UnicodeDecodeError too
            raise TransientError(
                _TROUBLE, detail=f"HTTP {status} with a body that is not JSON"
            ) from None
        if answer.is_success and not (isinstance(body, dict) and "error_code" in body):
            return body
        raise _error_from(status, body, answer.retry_after)

    async def submit(
        self,
        payload: dict[str, Any],
        *,
        sending: Callable[[], Awaitable[bool]] | None = None,
        edit: bool = False,
    ) -> Submission | None:
        """POST the job once. Never retried: a second POST would start (and bill) a second job.

        ``sending`` is awaited once the rate-limit slot is taken, right before the POST: there the
        caller records that the job is being sent, so a stop while the job waits for its slot
        leaves a job RunComfy never saw. If it returns False nothing is sent and this returns None.
        ``edit``: the job has reference images (``payload["images"]``): edit-sequential.
        """
        path = EDIT_MODEL_PATH if edit else MODEL_PATH
        # The bytes httpx sent; a payload that cannot be sent fails here, before anything else.
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        await self._slots.acquire()
        if sending is not None and not await sending():
            return None
        # aiohttp never re-sends a POST by itself (it retries only idempotent methods once, on
        # a kept-alive connection the server had closed).
        try:
            response = await self._send("POST", path, data=data.encode())
        except _NOT_SENT as exc:
            metrics.RUNCOMFY_REQUESTS.labels("submit", metrics.failure(exc)).inc()
            # The request never left: nothing was billed.
            raise PermanentError(
                "Could not reach RunComfy, so nothing was submitted or charged. Please try again later.",
                detail=f"submit not sent: {type(exc).__name__}",
            ) from None
        except _NO_ANSWER as exc:
            metrics.RUNCOMFY_REQUESTS.labels("submit", metrics.failure(exc)).inc()
            raise SubmitUnknownError(
                "RunComfy did not answer in time, so it is unclear whether the job started.",
                detail=f"submit outcome unknown: {type(exc).__name__}",
            ) from None
        if response.status_code in _GATEWAY_LOST:
            metrics.RUNCOMFY_REQUESTS.labels("submit", metrics.answer(response.status_code)).inc()
            raise SubmitUnknownError(
                "RunComfy's answer was lost on its way back, so it is unclear whether the job "
                "started.",
                detail=f"submit outcome unknown: HTTP {response.status_code} from a gateway",
            )
        try:
            body = self._answer("submit", response)
        except TransientError as exc:
            # A 200 we cannot read may still have started a job; so may a POST that was
            # redirected (a 303 says it was handled and the answer is elsewhere).
            if response.status_code == 200 or 300 <= response.status_code < 400:
                raise SubmitUnknownError(exc.template, detail=str(exc), **exc.params) from None
            raise PermanentError(
                "RunComfy is having trouble and did not start the job; nothing was charged. "
                "Please try again in a few minutes.",
                detail=str(exc),
            ) from None
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(request_id, str) or not _REQUEST_ID_RE.fullmatch(request_id):
            # Accepted, perhaps, but with no id the bot can safely put in a URL path or a message.
            raise SubmitUnknownError(_TROUBLE, detail="submit answer without a usable request_id")
        return Submission(request_id=request_id)

    def _answer(self, endpoint: str, response: _Answer) -> Any:
        """``_decode``, counting the answer on the metrics page by its outcome."""
        try:
            body = self._decode(response)
        except RunComfyError:
            metrics.RUNCOMFY_REQUESTS.labels(endpoint, metrics.answer(response.status_code)).inc()
            raise
        metrics.RUNCOMFY_REQUESTS.labels(endpoint, "ok").inc()
        return body

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        later: float = 0.0,
    ) -> Any:
        last: TransientError | None = None
        reason = ""  # what went wrong the last time, as counted
        for attempt in range(self.attempts):
            if attempt:
                metrics.retried("runcomfy", reason)
                await asyncio.sleep(self._delay(attempt, last.retry_after if last else None))
            try:
                await self._slots.acquire(later)
                response = await self._send(method, path, params=params)
            except _NO_ANSWER as exc:
                reason = metrics.failure(exc)
                metrics.RUNCOMFY_REQUESTS.labels(endpoint, reason).inc()
                last = TransientError(_TROUBLE, detail=f"{method} {path}: {type(exc).__name__}")
            else:
                try:
                    return self._answer(endpoint, response)
                except TransientError as exc:
                    reason, last = metrics.answer(response.status_code), exc
            log.debug("RunComfy %s %s failed (attempt %d): %s", method, path, attempt + 1, last)
        assert last is not None
        raise last

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff * 4))
        return delay

    async def status(self, request_id: str, place: int | None = None) -> JobState:
        """The job's current state (retried on transient trouble); ``place``: its last known
        queue position, which ranks the request behind those of jobs nearer the front."""
        body = await self._call(
            "status", "GET", f"/v1/requests/{request_id}/status", later=float(place or 0)
        )
        if not isinstance(body, dict):
            raise TransientError(_TROUBLE, detail="status answer is not an object")
        position = body.get("queue_position")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < 10**7:
            position = None
        return JobState(status=_normalise_status(body.get("status")), queue_position=position)

    async def result(self, request_id: str) -> JobResult:
        """The job's result, with its cost (retried on transient trouble)."""
        body = await self._call(
            "result", "GET", f"/v1/requests/{request_id}/result", params={"include_cost": "true"}
        )
        if not isinstance(body, dict):
            raise TransientError(_TROUBLE, detail="result answer is not an object")
        output = body.get("output")
        error = body.get("error")
        return JobResult(
            status=_normalise_status(body.get("status")),
            images=_image_urls(output if isinstance(output, dict) else {}, request_id),
            error=(_message_of({"error": error}) or _capped(str(error)))
            if error not in (None, "")
            else None,
            cost=_cost(body.get("cost")),
        )

    async def cancel(self, request_id: str) -> bool:
        """Ask RunComfy to cancel; True if it was cancelled, False if it can no longer be."""
        body = await self._call("cancel", "POST", f"/v1/requests/{request_id}/cancel")
        outcome = body.get("outcome") if isinstance(body, dict) else None
        return outcome == "cancelled" or (
            outcome is None
            and isinstance(body, dict)
            and body.get("status") == RemoteStatus.CANCELLED
        )
