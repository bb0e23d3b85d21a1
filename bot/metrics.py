"""Prometheus metrics: what the bot does, live, for operators (served only with METRICS_PORT).

The metric objects live here, module-level on prometheus-client's default registry: that registry
also carries the library's process and Python collectors (CPU seconds, resident memory, open
files, garbage collection), which are what the performance targets are stated in. The modules
where things happen count them with one line each (``jobs``, ``status``, ``delivery``,
``sending``, ``runcomfy``, ``downloads``, and the Telegram request class in ``app``). The values
are process-wide: several bots in one process (the tests) add up, so tests compare a value
before and after, never an absolute one.

Nothing here ever carries a token, a prompt, a user or chat id, a URL or a request id: every label
value comes from a fixed set (job states, API method names, outcomes). Active jobs by state are
counted when the page is scraped, from the job runners' own tables (``watch``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from telegram.error import TelegramError, TimedOut

from bot.models import FINAL, Job, Status

log = logging.getLogger(__name__)

# ---- jobs -------------------------------------------------------------------------------------

JOBS = Counter("seqbot_jobs", "Jobs that reached each state", ["state"])
IMAGES_DELIVERED = Counter("seqbot_images_delivered", "Images delivered to Telegram")
COST = Counter(
    "seqbot_cost_usd", "RunComfy's reported cost of the jobs that finished, in US dollars"
)

# Bucket edges include the targets of docs/PERFORMANCE.md (0.5 s, 1.5 s), so the share of
# observations within a target reads straight off a bucket.
ACK = Histogram(
    "seqbot_ack_seconds",
    "From the command (the job recorded) to Telegram taking the status reply",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_WAIT = Histogram(
    "seqbot_queue_wait_seconds",
    "From RunComfy accepting the job to the bot seeing it generating",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
GENERATION = Histogram(
    "seqbot_generation_seconds",
    "From the bot seeing the job generating to RunComfy's result being in",
    buckets=(1, 2.5, 5, 10, 15, 20, 30, 45, 60, 120, 300),
)
DELIVERY = Histogram(
    "seqbot_delivery_seconds",
    "From RunComfy's result being in until the first image was sent (until=first_image) "
    "or the job was done (until=done)",
    ["until"],
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60, 120),
)

# ---- requests ---------------------------------------------------------------------------------

TELEGRAM_REQUESTS = Counter(
    "seqbot_telegram_requests",
    "HTTP requests to the Telegram Bot API (each try), by method and outcome",
    ["method", "outcome"],
)
RUNCOMFY_REQUESTS = Counter(
    "seqbot_runcomfy_requests",
    "HTTP requests to the RunComfy API (each try), by endpoint and outcome",
    ["endpoint", "outcome"],
)
DOWNLOADS = Counter(
    "seqbot_downloads",
    "Result image downloads (after their retries), by outcome",
    ["outcome"],
)
RETRIES = Counter(
    "seqbot_retries",
    "Requests tried again after a wait, by API (telegram, runcomfy, download) and "
    "what went wrong the time before",
    ["api", "reason"],
)

# The Bot API methods the bot calls; anything else is counted as "other".
TELEGRAM_METHODS = frozenset(
    {
        "getMe",
        "getUpdates",
        "deleteWebhook",
        "setWebhook",
        "getWebhookInfo",
        "setMyCommands",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "answerCallbackQuery",
        "getChatMember",
        "getChatAdministrators",
    }
)


def telegram_request(url: str, outcome: str) -> None:
    """Count one request to the Bot API ``url`` (…/bot<token>/<method>): only the method is kept."""
    method = url.rpartition("/")[2]
    TELEGRAM_REQUESTS.labels(method if method in TELEGRAM_METHODS else "other", outcome).inc()


_TELEGRAM_REFUSALS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "unauthorized",
    409: "conflict",
}


def telegram_answer(code: int) -> str:
    """A Bot API answer's HTTP status as an outcome label."""
    if 200 <= code <= 299:
        return "ok"
    if code == 429:
        return "429"
    if code >= 500:
        return "5xx"
    return _TELEGRAM_REFUSALS.get(code, "error")


def telegram_failure(exc: TelegramError) -> str:
    """A Bot API request that got no answer (python-telegram-bot's NetworkError), as a label."""
    return "timeout" if isinstance(exc, TimedOut) else "network"


def failure(exc: BaseException) -> str:
    """A request that got no answer (aiohttp's error, or a timeout), as an outcome label."""
    return "timeout" if isinstance(exc, TimeoutError) else "network"


def answer(status_code: int) -> str:
    """An HTTP answer the client could not use, as an outcome label."""
    if status_code == 429:
        return "429"
    if status_code >= 500:
        return "5xx"
    if status_code >= 400:
        return "4xx"
    return "bad_answer"  # 2xx or 3xx, but not what the API promises


def retried(api: str, reason: str) -> None:
    """Count one retry of a request to ``api`` after ``reason`` (an outcome label)."""
    RETRIES.labels(api, reason).inc()


# ---- job events -------------------------------------------------------------------------------


def job_moved(job: Job) -> None:
    """The job has just entered ``job.status``: count it, and time the phase it finished."""
    status = job.status
    JOBS.labels(status.value).inc()
    if status == Status.RUNNING and job.started_at and job.submitted_at:
        QUEUE_WAIT.observe(max(0.0, job.started_at - job.submitted_at))
    elif status == Status.SENDING and job.completed_at and job.started_at:
        GENERATION.observe(max(0.0, job.completed_at - job.started_at))
    elif status in FINAL:
        if status == Status.DONE and job.completed_at and job.finished_at:
            DELIVERY.labels("done").observe(max(0.0, job.finished_at - job.completed_at))
        if job.cost:
            COST.inc(job.cost)


def acknowledged(job: Job, now: float) -> None:
    """The job's status reply was taken by Telegram at ``now``."""
    ACK.observe(max(0.0, now - job.created_at))


def images_sent(job: Job, count: int, now: float) -> None:
    """``count`` more of the job's images were taken by Telegram at ``now``."""
    if not count:
        return
    if job.delivered_images == 0 and job.completed_at:
        DELIVERY.labels("first_image").observe(max(0.0, now - job.completed_at))
    IMAGES_DELIVERED.inc(count)


# ---- active jobs and waiting requests, counted at scrape time ------------------------------------

ACTIVE_STATES = tuple(s for s in Status if s not in FINAL)


class Runner(Protocol):
    """What the collector reads of a JobRunner: its active jobs and waiting requests."""

    @property
    def active(self) -> Mapping[int, Job]:
        """The jobs under way, by id."""

    @property
    def waiting_for_slots(self) -> Mapping[str, int]:
        """Requests waiting for a rate-limit slot, by API."""


_runners: weakref.WeakSet[Any] = weakref.WeakSet()
_runners_lock = threading.Lock()  # scrapes run in the server's thread


def watch(runner: Runner) -> None:
    """Count ``runner``'s active jobs and waiting requests on the page (until ``unwatch``)."""
    with _runners_lock:
        _runners.add(runner)


def unwatch(runner: Runner) -> None:
    """Stop counting ``runner``'s jobs (it has stopped; they resume in another)."""
    with _runners_lock:
        _runners.discard(runner)


class _Live(Collector):
    """Gauges read from the watched runners at scrape time."""

    def describe(self) -> Iterable[Metric]:
        return [self._jobs(), self._waiting()]

    def collect(self) -> Iterable[Metric]:
        with _runners_lock:
            runners = list(_runners)
        counts = dict.fromkeys(ACTIVE_STATES, 0)
        waiting = dict.fromkeys(("telegram", "runcomfy"), 0)
        for runner in runners:
            # A copy made in one step under the GIL: the event loop may change the dict meanwhile.
            for job in list(runner.active.values()):
                if job.status in counts:
                    counts[job.status] += 1
            for api, count in runner.waiting_for_slots.items():
                waiting[api] = waiting.get(api, 0) + count
        jobs, queued = self._jobs(), self._waiting()
        for state, count in counts.items():
            jobs.add_metric([state.value], count)
        for api, count in waiting.items():
            queued.add_metric([api], count)
        return [jobs, queued]

    @staticmethod
    def _jobs() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "seqbot_jobs_active", "Jobs under way now, by state", labels=["state"]
        )

    @staticmethod
    def _waiting() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "seqbot_requests_waiting",
            "Requests waiting for a slot of the API's rate limit now (Telegram: messages and edits)",
            labels=["api"],
        )


REGISTRY.register(_Live())


# ---- the HTTP server ----------------------------------------------------------------------------

# A scrape is one short request; Prometheus sends one at a time per target.
MAX_THREADS = 8
# How long one connection may live, whatever it does (and how long it may sit idle).
TIMEOUT_SECONDS = 10.0
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Handler(WSGIRequestHandler):
    """One request per connection, no access log; the socket times out when idle (``timeout``
    is set per server)."""

    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


class BoundedServer(ThreadingMixIn, WSGIServer):
    """prometheus-client's threading WSGI server, bounded: at most ``max_threads`` connections
    are served at once (more are answered 503 and closed at once), and each is shut after
    ``timeout_seconds`` however slowly it sends."""

    daemon_threads = True
    request_queue_size = 64  # socketserver's 5 would leave a burst of connections unaccepted

    def __init__(
        self, address: tuple[str, int], *, family: int, max_threads: int, timeout: float
    ) -> None:
        self.address_family = family
        self.timeout_seconds = timeout
        self._slots = threading.BoundedSemaphore(max_threads)
        self._open: dict[socket.socket, float] = {}
        self._open_lock = threading.Lock()
        handler = type("_TimedHandler", (_Handler,), {"timeout": timeout})
        super().__init__(address, handler)

    @property
    def serving(self) -> int:
        """Connections being served now."""
        with self._open_lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("metrics: %d connections already served; refusing one", self.serving)
            with contextlib.suppress(OSError):
                request.setblocking(False)
                # What the client already sent is read first: closing a socket with unread data
                # resets the connection, and the client would not see the answer.
                request.recv(65536)
            with contextlib.suppress(OSError):
                request.send(_BUSY)
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open[request] = time.monotonic()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: socket.socket) -> None:
        with self._open_lock:
            if self._open.pop(request, None) is None:
                return
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went quiet or away is no error of ours (socketserver would print a
        traceback to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("metrics: a connection ended early: %s", exc)
        else:
            log.warning("metrics: serving a request failed", exc_info=True)

    def service_actions(self) -> None:
        """Every half second in the serving thread: shut connections past their time (a client
        sending a byte now and then never trips the idle timeout)."""
        cutoff = time.monotonic() - self.timeout_seconds
        with self._open_lock:
            late = [sock for sock, opened in self._open.items() if opened < cutoff]
        for sock in late:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the handler's next read or write fails


@dataclass
class MetricsServer:
    """The bounded HTTP server, running in a daemon thread."""

    httpd: BoundedServer
    thread: threading.Thread

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it listens on."""
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving and release the port (blocks for up to half a second)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve(
    port: int,
    addr: str,
    *,
    max_threads: int = MAX_THREADS,
    timeout: float = TIMEOUT_SECONDS,
) -> MetricsServer | None:
    """Serve the metrics on ``addr``:``port``; None (and an error logged) if it cannot listen.

    The bot runs on without metrics then: the images matter more than the numbers.
    """
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        httpd = BoundedServer(
            (str(sockaddr[0]), port), family=family, max_threads=max_threads, timeout=timeout
        )
    except OSError as exc:
        log.error(
            "metrics: cannot listen on %s port %d (%s); running without them", addr, port, exc
        )
        return None
    httpd.set_app(make_wsgi_app(REGISTRY))
    thread = threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True)
    thread.start()
    server = MetricsServer(httpd, thread)
    host, bound = server.address
    log.info("metrics at http://%s:%d/metrics", f"[{host}]" if ":" in host else host, bound)
    return server
