"""Async client for RunComfy's model API: submit once, poll and fetch with retries, cancel."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from bot.errors import PermanentError, RunComfyError, SubmitUnknownError, TransientError

log = logging.getLogger(__name__)

MODEL_PATH = "/v1/models/bytedance/seedream-4-0/sequential"
QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "in_queue", "in_progress", "completed", "failed", "cancelled"
)  # fmt: skip
# The status endpoint says "completed"; the result endpoint says "succeeded". Accept both anywhere.
_STATUS_ALIASES = {
    "succeeded": COMPLETED,
    "success": COMPLETED,
    "queued": QUEUED,
    "running": RUNNING,
}
_KNOWN = {QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED}

_TROUBLE = "RunComfy is having trouble right now"


@dataclass(frozen=True)
class Submission:
    """What a successful submit gives back."""

    request_id: str


@dataclass(frozen=True)
class JobState:
    """A typed status answer."""

    status: str  # one of QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED
    queue_position: int | None = None


@dataclass(frozen=True)
class JobResult:
    """A typed result answer."""

    status: str
    images: tuple[str, ...] = ()
    error: str | None = None
    cost: float | None = None


def _message_of(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("error_message", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                inner = _message_of(value)
                if inner:
                    return inner
    return None


def _error_from(status_code: int, body: Any, retry_after: float | None) -> RunComfyError:
    """Map an error answer (HTTP status plus RunComfy's error_code) to our errors."""
    code = body.get("error_code") if isinstance(body, dict) else None
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _normalise_status(raw: Any) -> str:
    status = _STATUS_ALIASES.get(str(raw).lower(), str(raw).lower())
    if status not in _KNOWN:
        # An unknown status is a protocol surprise, not a final state: keep polling.
        raise TransientError(_TROUBLE, detail=f"unknown status {raw!r}")
    return status


class RunComfyClient:
    """One long-lived ``httpx.AsyncClient`` for the RunComfy API.

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
    ) -> None:
        self._token = token
        self._base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        # All jobs share one budget of requests per second: a thousand jobs must not flood RunComfy.
        self._limiter = AsyncLimiter(max_rate, 1.0)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=True,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    @property
    def _headers(self) -> dict[str, str]:
        # Only RunComfy's own API gets the token; image downloads from the CDN do not.
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _url(self, path: str) -> str:
        return f"{self._base_url}{path}"

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise TransientError(
                _TROUBLE, detail=f"HTTP {response.status_code} with a body that is not JSON"
            ) from None
        if response.is_success and not (isinstance(body, dict) and "error_code" in body):
            return body
        raise _error_from(response.status_code, body, _retry_after(response))

    async def submit(self, payload: dict[str, Any]) -> Submission:
        """POST the job once. Never retried: a second POST would start (and bill) a second job."""
        try:
            async with self._limiter:
                response = await self.http.post(
                    self._url(MODEL_PATH), json=payload, headers=self._headers
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left: nothing was billed.
            raise PermanentError(
                "Could not reach RunComfy, so nothing was submitted or charged. Please try again later.",
                detail=f"submit not sent: {type(exc).__name__}",
            ) from None
        except httpx.HTTPError as exc:
            raise SubmitUnknownError(
                "RunComfy did not answer in time, so it is unclear whether the job started.",
                detail=f"submit outcome unknown: {type(exc).__name__}",
            ) from None
        try:
            body = self._decode(response)
        except TransientError as exc:
            if response.status_code == 200:
                # A 200 we cannot read may still have started a job.
                raise SubmitUnknownError(exc.template, detail=str(exc), **exc.params) from None
            raise PermanentError(
                "RunComfy is having trouble and did not start the job; nothing was charged. "
                "Please try again in a few minutes.",
                detail=str(exc),
            ) from None
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise SubmitUnknownError(_TROUBLE, detail="submit answer without request_id")
        return Submission(request_id=request_id)

    async def _call(self, method: str, path: str, params: dict[str, str] | None = None) -> Any:
        last: TransientError | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self._delay(attempt, last.retry_after if last else None))
            try:
                async with self._limiter:
                    response = await self.http.request(
                        method, self._url(path), params=params, headers=self._headers
                    )
                return self._decode(response)
            except httpx.HTTPError as exc:
                last = TransientError(_TROUBLE, detail=f"{method} {path}: {type(exc).__name__}")
            except TransientError as exc:
                last = exc
            log.debug("RunComfy %s %s failed (attempt %d): %s", method, path, attempt + 1, last)
        assert last is not None
        raise last

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff * 4))
        return delay

    async def status(self, request_id: str) -> JobState:
        """The job's current state (retried on transient trouble)."""
        body = await self._call("GET", f"/v1/requests/{request_id}/status")
        if not isinstance(body, dict):
            raise TransientError(_TROUBLE, detail="status answer is not an object")
        position = body.get("queue_position")
        return JobState(
            status=_normalise_status(body.get("status")),
            queue_position=position if isinstance(position, int) else None,
        )

    async def result(self, request_id: str) -> JobResult:
        """The job's result, with its cost (retried on transient trouble)."""
        body = await self._call(
            "GET", f"/v1/requests/{request_id}/result", params={"include_cost": "true"}
        )
        if not isinstance(body, dict):
            raise TransientError(_TROUBLE, detail="result answer is not an object")
        output = body.get("output")
        if not isinstance(output, dict):
            output = {}
        images = output.get("images")
        if not isinstance(images, list):
            single = output.get("image")
            images = [single] if isinstance(single, str) else []
        error = body.get("error")
        cost = body.get("cost")
        return JobResult(
            status=_normalise_status(body.get("status")),
            images=tuple(u for u in images if isinstance(u, str) and u),
            error=(_message_of({"error": error}) or str(error))
            if error not in (None, "")
            else None,
            cost=float(cost) if isinstance(cost, int | float) else None,
        )

    async def cancel(self, request_id: str) -> bool:
        """Ask RunComfy to cancel; True if it was cancelled, False if it can no longer be."""
        body = await self._call("POST", f"/v1/requests/{request_id}/cancel")
        outcome = body.get("outcome") if isinstance(body, dict) else None
        return outcome == "cancelled" or (
            outcome is None and isinstance(body, dict) and body.get("status") == CANCELLED
        )

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch an output image (no token: it is a public CDN link), retried on transient trouble."""
        last: Exception | None = None
        # Images are the product and may expire: try a little harder than for a status poll.
        for attempt in range(self.attempts + 2):
            if attempt:
                await asyncio.sleep(self._delay(attempt, None))
            try:
                async with self.http.stream("GET", url) as response:
                    if response.status_code in (404, 403, 410):
                        raise PermanentError(
                            "the image link has expired (HTTP {status})",
                            status=response.status_code,
                        )
                    if response.status_code >= 400:
                        raise TransientError(_TROUBLE, detail=f"image HTTP {response.status_code}")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise PermanentError("the image is too large to send")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except (httpx.HTTPError, TransientError) as exc:
                last = exc
        raise PermanentError(
            "the image could not be downloaded ({reason})", reason=type(last).__name__
        )
