"""In-process fake of RunComfy's model API for bytedance/seedream-4-0/sequential.

Usage in tests::

    async with FakeRunComfy(token="rc-test-token") as fake:
        fake.script_next(JobScript(queued_polls=3, images=2))
        fake.fail_next("status", "503")
        fake.fail_next("submit", "504", late=True)  # the job is made, then a gateway's 504
        fake.timeout_delay = 2.0; fake.fail_next("submit", "timeout")  # a slow answer
        fake.hold("submit"); ...; fake.release("submit")  # answered only when released
        await fake.wait_for(lambda: fake.in_flight("submit"))  # a request it is answering now
        client = httpx.AsyncClient(base_url=fake.base_url)  # the bot under test
        ...
        await fake.wait_for(lambda: fake.count("result") >= 1)
        await fake.down(); await fake.up()  # outage: connections refused, same port after
        fake.script_next(JobScript(urls={1: "http://127.0.0.2:8/"}, redirects={0: "{base}/x"}))
        fake.script_next(JobScript(bad_images={0: "drip", 1: "bomb"}))  # fake.drip_interval
        assert fake.errors == []  # 422 refusals and unknown-key warnings land here
        # edit-sequential (reference images): every URL in "images" is fetched over HTTP, at
        # submit (default) or when the job leaves the queue (JobScript(fetch_refs="start"));
        fake.ref_fetches  # what it fetched: RefFetch(url, status, body, ...), in order
        # /result of an unfinished job answers its state (no output) and counts as a poll, as a
        # status request does (FakeJob.polls); FakeJob.result_fetches: answers with a final state
        FakeRunComfy(forbidden=("<bot token>",))  # any request body holding one: an error

Standalone (benchmarks): ``python -m tests.fakes.runcomfy_api --token T --port 0 [--profile
realistic] [--image-pool 8] [--bench-endpoints]`` prints ``READY http://127.0.0.1:PORT`` and serves
until SIGTERM/SIGINT. ``--image-pool N`` serves good images from N pre-rendered JPEGs per size
(rendering thousands of 1 MB noise JPEGs would cost more CPU than the bot under test);
``--bench-endpoints`` adds ``GET /_bench/jobs`` (no auth, not recorded in ``calls``): every job's
prompt, submit and completion times (wall clock) and requests per endpoint, plus the fake's errors;
and ``GET /_bench/summary`` (counts only). ``--profile model`` / ``--profile queue --capacity N
--hold S``: see ``FakeRunComfy.set_profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import hashlib
import heapq
import inspect
import io
import json
import math
import random
import re
import signal
import socket
import struct
import sys
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jsonschema
from aiohttp import web
from PIL import Image, ImageDraw

SCHEMA_PATH = Path(__file__).parents[1] / "data" / "runcomfy-input.schema.json"
SUBMIT_PATH = "/v1/models/bytedance/seedream-4-0/sequential"
EDIT_SCHEMA_PATH = Path(__file__).parents[1] / "data" / "runcomfy-edit-input.schema.json"
EDIT_SUBMIT_PATH = "/v1/models/bytedance/seedream-4-0/edit-sequential"
MAX_REFS_AND_IMAGES = 15  # ByteDance's rule for edit-sequential
REF_MAX_BYTES = 50 * 1024 * 1024  # RunComfy's recommendation for hosted file inputs
ENDPOINTS = ("submit", "status", "result", "cancel", "image")
_FAULT_JSON: dict[str, tuple[int, int, str]] = {
    "500": (500, 500001, "Internal server error"),
    "429": (429, 429001, "Rate limited"),
    "error_code_200": (200, 500001, "Internal error, please retry"),
    "401": (401, 400004, "Invalid or expired API token"),
    "402": (402, 400002, "No remaining balance"),
    "404": (404, 404001, "Request not found"),
    "422": (422, 422001, "Invalid input"),
}
FAULTS = (*_FAULT_JSON, "502", "503", "504", "broken_json", "timeout", "disconnect")
# Client-side transport faults: "reset" (a TCP reset after the request was read), "truncated"
# (a 200 whose body stops short of its Content-Length), "huge" (a valid 200 JSON answer of
# HUGE_BYTES, gzipped: a few KB announced and sent), "redirect" (a 307 to the same path on http://localhost:PORT, another origin).
FAULTS += ("reset", "truncated", "huge", "redirect")
HUGE_BYTES = 2_000_000
FINAL_STATES = ("completed", "failed", "cancelled")
PRICE_PER_IMAGE = 0.03
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen"
NUMBER_WORDS += " fourteen fifteen"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON_OK = web.RequestKey("json_ok", bool)
_JSON: web.RequestKey[Any] = web.RequestKey("json")
_COUNTED = web.RequestKey("counted", bool)  # False: a faulted (timeout) poll, not counted


class _Truncated(web.StreamResponse):
    """A 200 JSON answer that promises 1000 bytes, sends 10 and closes the connection."""

    def __init__(self) -> None:
        super().__init__(status=200, headers={"Content-Type": "application/json"})
        self.content_length = 1000

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        await self.write(b'{"request_')
        if request.transport is not None:
            request.transport.close()
        return writer


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error_code": code, "error_message": message}, status=status)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class JobScript:
    """How one job behaves. Image indexes (``bad_images`` keys, URL names) start at 0."""

    queued_polls: int = 1
    running_polls: int = 1
    queued_seconds: float | None = None  # either *_seconds set: time-based instead of poll-based
    running_seconds: float | None = None
    outcome: str = "succeeded"  # or "failed"
    error: Any = field(
        default_factory=lambda: {"message": "The model could not generate images for this prompt."}
    )
    images: int | None = None  # None: the requested count
    single_image_form: bool = False
    size: tuple[int, int] | None = (64, 36)  # None: the requested ratio, 1024 px long side
    jpeg_bytes: int | None = None
    # "404"|"not_image"|"truncated"|"huge"|"drip" (one byte per drip_interval)|"bomb" (a tiny PNG
    # that claims 30000x30000 pixels)|"giant" (a real, whole PNG of GIANT_SIDE² pixels, under a
    # megabyte: under Pillow's bomb limit, but far more than any size asked for)|"gif"
    bad_images: dict[int, str] = field(default_factory=dict)
    # Crafted results: the result lists urls[i] (any JSON value) instead of image i's own URL;
    # image i answers 302 to redirects[i] (with a cookie set). "{base}" and "{rid}" in either
    # string become the fake's base URL and the request id.
    urls: dict[int, Any] = field(default_factory=dict)
    redirects: dict[int, str] = field(default_factory=dict)
    cost: Any = ...  # ...: the price of the images asked for; anything else is sent as it is
    # edit-sequential: when the reference URLs are fetched: "submit" (a failed fetch: 422),
    # "start" (when the job leaves the queue, seen at a poll; a failed fetch fails the job)
    fetch_refs: str = "submit"

    @property
    def time_based(self) -> bool:
        return self.queued_seconds is not None or self.running_seconds is not None


@dataclass
class FakeJob:
    request_id: str
    payload: dict[str, Any]
    script: JobScript
    requested: int
    image_urls: list[str]
    submitted_at: float  # time.time()
    submitted_mono: float
    polls: int = 0  # status requests, and result requests that found the job unfinished
    finished_at: float | None = None
    cancelled: bool = False
    result_fetches: int = 0  # result requests answered with a final state (the images listed)
    queue: _FifoQueue | None = None  # the "queue" profile: a place in one shared FIFO queue
    queue_index: int = 0
    refs_fetched: bool = False  # edit-sequential: its reference URLs were fetched (or tried)

    def _progress(self) -> tuple[str, int | None, float | None]:
        """(state, queue_position, seconds after submit when final) as the client sees it now."""
        s = self.script
        final = "completed" if s.outcome == "succeeded" else "failed"
        if s.time_based:
            queued, running = s.queued_seconds or 0.0, s.running_seconds or 0.0
            elapsed = time.monotonic() - self.submitted_mono
            if elapsed < queued:
                if self.queue is not None:
                    return "in_queue", self.queue.position(self.queue_index), None
                return "in_queue", max(1, math.ceil((queued - elapsed) / 2.0)), None
            if elapsed < queued + running:
                return "in_progress", None, None
            return final, None, queued + running
        seen = max(self.polls, 1)  # what the last poll answered (or the first one will)
        if seen <= s.queued_polls:
            return "in_queue", s.queued_polls - seen + 1, None
        if seen <= s.queued_polls + s.running_polls:
            return "in_progress", None, None
        return final, None, None

    @property
    def state(self) -> str:
        return "cancelled" if self.cancelled else self._progress()[0]

    @property
    def queue_position(self) -> int | None:
        return None if self.cancelled else self._progress()[1]

    def touch(self) -> None:
        if self.finished_at is None and self.state in FINAL_STATES:
            offset = self._progress()[2]
            self.finished_at = time.time() if offset is None else self.submitted_at + offset


@dataclass
class Call:
    endpoint: str  # submit|status|result|cancel|image|other
    method: str
    path: str
    query: dict[str, str]
    request_id: str | None
    body: Any
    status: int = 0  # 0: connection closed without an answer
    fault: str | None = None
    at: float = 0.0
    host: str = ""  # the Host header: which origin the client thought it was asking
    authorized: bool = False  # it carried an Authorization header (any)


@dataclass
class RefFetch:
    """One fetch of a reference image URL, as RunComfy's servers would make it."""

    url: str
    status: int  # 0: no answer (refused, timed out)
    body: bytes = b""
    content_type: str = ""
    set_cookie: bool = False
    image: tuple[str, int, int] | None = None  # (format, width, height) when it is an image
    at: float = 0.0  # time.monotonic()

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.image is not None


@dataclass
class _FaultRule:
    fault: str
    retry_after: float | None
    message: str | None = None  # instead of the fault's own error_message
    remaining: int = 0  # fail_next
    late: bool = False  # handled first (a submit makes its job), then this answer instead
    ratio: float = 0.0  # fail_ratio
    rng: random.Random = field(default_factory=random.Random)


class _FifoQueue:
    """One model queue shared by all jobs: ``capacity`` jobs generate at once, in submit order,
    none before ``opens_at`` (monotonic). Each job's start is fixed when it is submitted (its
    generating time is known then), so a queue position is one bisect, even with 10,000 queued."""

    def __init__(self, capacity: int, opens_at: float) -> None:
        self.opens_at = opens_at
        self._free = [opens_at] * capacity  # a heap: when each worker is next free
        self._starts: list[float] = []  # non-decreasing: FIFO onto the earliest free worker

    def enqueue(self, now: float, generating: float) -> tuple[int, float]:
        """(queue index, start time) of a job submitted at ``now``."""
        start = max(now, heapq.heappop(self._free))
        heapq.heappush(self._free, start + generating)
        self._starts.append(start)
        return len(self._starts) - 1, start

    def position(self, index: int) -> int:
        """1 for the next job to start."""
        return max(1, index - bisect.bisect_right(self._starts, time.monotonic()) + 1)


def _text_states_count(text: str, n: int) -> bool:
    if re.search(rf"\b{n}\b", text):
        return True
    words = NUMBER_WORDS.split()
    return n < len(words) and bool(re.search(rf"\b{words[n]}\b", text, re.I))


def _size_for(image_size: str, long_side: int = 1024) -> tuple[int, int]:
    w, h = (int(x) for x in image_size.split(" ")[0].split(":"))
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    pixels = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


GIANT_SIDE = 9000


@functools.cache
def giant_png(side: int = GIANT_SIDE) -> bytes:
    """A whole, valid greyscale PNG of ``side`` x ``side`` black pixels: 81 M pixels (81 MB
    decoded, 243 MB as RGB) in a few hundred kilobytes. Compressed row by row, never held
    decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    packer, row = zlib.compressobj(9), b"\0" * (1 + side)
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _pad_jpeg(data: bytes, target: int) -> bytes:
    """Insert COM segments after SOI so the file is ``target`` bytes (still a valid JPEG)."""
    missing, segments = target - len(data), []
    while missing >= 4:
        n = min(missing - 4, 65533)
        segments.append(b"\xff\xfe" + struct.pack(">H", n + 2) + b"\0" * n)
        missing -= n + 4
    return data[:2] + b"".join(segments) + data[2:]


_noise_cache: dict[tuple[int, int, int], Image.Image] = {}


def _noise_strip(size: tuple[int, int], target: int) -> Image.Image:
    """Noise rows (full width) that make a JPEG of ``size`` land just under ``target`` bytes."""
    key = (*size, target)
    if key not in _noise_cache:
        w, h = size
        noise = Image.frombytes("RGB", size, random.Random(f"{w}x{h}").randbytes(w * h * 3))
        buf = io.BytesIO()
        noise.save(buf, "JPEG", quality=95, subsampling=0)
        rows = min(h, int(h * target * 0.85 / max(1, buf.tell())))
        _noise_cache[key] = noise.crop((0, 0, w, max(1, rows)))
    return _noise_cache[key]


def render_jpeg(seed: str, index: int, size: tuple[int, int], jpeg_bytes: int | None) -> bytes:
    """Deterministic JPEG: a hash-derived colour, stripes and the index as text."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    colour, ink = tuple(digest[:3]), tuple(255 - c for c in digest[:3])
    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    w, h = size
    step = max(2, h // (2 + digest[3] % 6))
    for y in range(step, h, step * 2):
        draw.rectangle((0, y, w, y + max(1, step // 3)), fill=ink)
    draw.text((2, 2), str(index), fill=ink)
    if jpeg_bytes is None:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()
    strip = _noise_strip(size, jpeg_bytes)
    for _ in range(4):  # noise rows land under the target; COM padding makes up the rest
        frame = img.copy()
        frame.paste(strip, (0, h - strip.height))
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=95, subsampling=0)
        if buf.tell() <= jpeg_bytes or strip.height <= 1:
            break
        strip = strip.crop((0, 0, w, max(1, int(strip.height * 0.9 * jpeg_bytes / buf.tell()))))
    return _pad_jpeg(buf.getvalue(), jpeg_bytes)


class FakeRunComfy:
    """Fake RunComfy server on 127.0.0.1 (aiohttp, on the caller's event loop)."""

    def __init__(
        self,
        token: str = "rc-test-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        image_pool: int = 0,
        bench_endpoints: bool = False,
        forbidden: tuple[str, ...] = (),
    ):
        self.token, self.host, self.port = token, host, port
        # Strings no request body may hold (the bot token, Telegram's file URLs): an error each.
        self.forbidden = forbidden
        self.ref_fetches: list[RefFetch] = []
        # > 0: good images come from this many pre-rendered JPEGs per (size, bytes); 0: one each.
        self.image_pool = image_pool
        self.bench_endpoints = bench_endpoints
        self.default_script = JobScript()
        self.timeout_delay = 3.0
        self.drip_interval = 0.5  # seconds between the bytes of a "drip" image
        self.calls: list[Call] = []
        self.jobs: dict[str, FakeJob] = {}
        self.errors: list[str] = []
        self.schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        validator_cls = jsonschema.validators.validator_for(
            self.schema, default=jsonschema.Draft202012Validator
        )
        self._validator = validator_cls(self.schema)
        self.edit_schema: dict[str, Any] = json.loads(EDIT_SCHEMA_PATH.read_text(encoding="utf-8"))
        self._edit_validator = validator_cls(self.edit_schema)
        self._scripts: deque[JobScript] = deque()
        # Scripts for the first submit whose body matches: jobs resumed together reach the fake
        # in either order, so "the next submit" would not say which job gets which script.
        self._scripts_when: list[tuple[Callable[[dict[str, Any]], bool], JobScript]] = []
        self._next_faults: dict[str, deque[_FaultRule]] = {e: deque() for e in ENDPOINTS}
        self._ratio_faults: dict[str, list[_FaultRule]] = {e: [] for e in ENDPOINTS}
        self._timing_rng: random.Random | None = None
        self._uniform_timing = False
        self._profile = "default"
        self._queue: _FifoQueue | None = None
        self._images: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._pool: dict[tuple[int, int, int | None, int], bytes] = {}
        self._pool_locks: dict[tuple[int, int, int | None, int], asyncio.Lock] = {}
        self._down = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._call_event: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._answering: dict[str, int] = {}  # endpoint -> requests received, not yet answered
        self._held: dict[str, asyncio.Event] = {}  # endpoint -> set when its requests may go on

    # ----------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeRunComfy:
        self._call_event, self._stopping = asyncio.Event(), asyncio.Event()
        app = web.Application(middlewares=[self._middleware])
        if self.bench_endpoints:
            app.router.add_get("/_bench/jobs", self._bench_jobs, name="_bench")
            app.router.add_get("/_bench/summary", self._bench_summary_endpoint, name="_bench_s")
        app.router.add_post(SUBMIT_PATH, self._submit, name="submit")
        app.router.add_post(EDIT_SUBMIT_PATH, self._submit, name="submit_edit")
        for name in ("status", "result"):
            app.router.add_get(f"/v1/requests/{{rid}}/{name}", getattr(self, f"_{name}"), name=name)
        app.router.add_post("/v1/requests/{rid}/cancel", self._cancel, name="cancel")
        app.router.add_get(r"/images/{rid}/{index:\d+}.jpeg", self._image, name="image")
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        self.port = self._site.port

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # ends "timeout" sleeps; let those answers be recorded
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=1.0)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    async def __aenter__(self) -> FakeRunComfy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def down(self, *, refuse: bool = True) -> None:
        """Outage. refuse=True: stop listening (connection refused, images too) and close kept-alive
        connections; refuse=False: keep listening, API requests are disconnected, images served."""
        self._down = True
        if refuse and self._site is not None and self._runner is not None:
            await self._site.stop()
            self._site = None
            assert self._runner.server is not None
            for conn in self._runner.server.connections:
                conn.force_close()
            await asyncio.sleep(0.01)  # let the transports really close

    async def up(self) -> None:
        """End the outage; listens again on the same port."""
        self._down = False
        if self._site is None and self._runner is not None:
            await self._listen()

    # ----------------------------------------------------------------- scripting
    def script_next(self, script: JobScript) -> None:
        self._scripts.append(script)

    def script_when(self, match: Callable[[dict[str, Any]], bool], script: JobScript) -> None:
        """Use ``script`` for the first submit whose body ``match`` accepts (before script_next)."""
        self._scripts_when.append((match, script))

    def _generating(self, rng: random.Random, payload: dict[str, Any]) -> float:
        if self._uniform_timing:
            return rng.uniform(5, 30)
        count = int(payload.get("sequential_image_generation_options", 3))
        if self._profile in ("model", "queue"):
            # A model's time: 2 s + 1.8 s per image, lognormal spread of about 15 %.
            return (2.0 + 1.8 * count) * rng.lognormvariate(0.0, 0.15)
        per_image = 2.2 if payload.get("optimize_prompt_options") == "standard" else 1.7
        typical = 4.0 + per_image * count
        return min(30.0, max(5.0, typical * rng.uniform(0.85, 1.15)))

    def set_profile(
        self, name: str, *, seed: int = 0, capacity: int = 100, hold: float = 0.0
    ) -> None:
        """``realistic``: queued 0–10 s; generating 5–30 s, longer for more images and for the
        standard mode, ±15 % (as a real model: similar jobs take similar times). ``uniform``: the
        same ranges, but generating time drawn uniformly whatever the job. ``model``: queued 0–4 s,
        generating 2 s + 1.8 s per image with a lognormal spread of ~15 %. ``queue``: the model's
        generating times, but one FIFO queue: ``capacity`` jobs generate at once and none starts
        until ``hold`` seconds after this call (queue positions are real places in that queue).
        All but ``default``: ~1 MB JPEGs."""
        if name in ("realistic", "uniform", "model", "queue"):
            self.default_script = JobScript(size=None, jpeg_bytes=1_000_000)
            self._timing_rng = random.Random(seed)
            self._uniform_timing = name == "uniform"
            self._queue = _FifoQueue(capacity, time.monotonic() + hold) if name == "queue" else None
        elif name == "default":
            self.default_script, self._timing_rng, self._queue = JobScript(), None, None
        else:
            raise ValueError(f"unknown profile {name!r}")
        self._profile = name

    def hold(self, endpoint: str) -> None:
        """Requests to ``endpoint`` wait, received but unanswered, until ``release`` (or stop);
        then they are handled as usual (a submit makes its job only then)."""
        self._check_fault(endpoint, "timeout")
        self._held.setdefault(endpoint, asyncio.Event()).clear()

    def release(self, endpoint: str) -> None:
        """Let the held requests to ``endpoint`` (and later ones) go on."""
        self._held.pop(endpoint, asyncio.Event()).set()

    def _check_fault(self, endpoint: str, fault: str) -> None:
        if endpoint not in ENDPOINTS or fault not in FAULTS:
            raise ValueError(f"unknown endpoint/fault {endpoint!r}/{fault!r}")

    def fail_next(
        self,
        endpoint: str,
        fault: str,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
        late: bool = False,
    ) -> None:
        """The next ``times`` requests to ``endpoint`` get ``fault``. ``late``: each is handled
        first (a submit makes its job, billed) and its answer then replaced by the fault, as when
        a gateway loses RunComfy's answer."""
        self._check_fault(endpoint, fault)
        rule = _FaultRule(fault, retry_after, message, remaining=times, late=late)
        self._next_faults[endpoint].append(rule)

    def fail_ratio(
        self,
        endpoint: str,
        fault: str,
        ratio: float,
        seed: int = 0,
        *,
        retry_after: float | None = None,
    ) -> None:
        self._check_fault(endpoint, fault)
        rule = _FaultRule(fault, retry_after, ratio=ratio, rng=random.Random(seed))
        self._ratio_faults[endpoint].append(rule)

    def _take_fault(self, endpoint: str) -> _FaultRule | None:
        queue = self._next_faults[endpoint]
        if queue:
            rule = queue[0]
            rule.remaining -= 1
            if rule.remaining <= 0:
                queue.popleft()
            return rule
        for ratio_rule in self._ratio_faults[endpoint]:
            if ratio_rule.rng.random() < ratio_rule.ratio:
                return ratio_rule
        return None

    # ----------------------------------------------------------------- inspection
    def in_flight(self, endpoint: str) -> int:
        """Requests to ``endpoint`` received and not yet answered."""
        return self._answering.get(endpoint, 0)

    def count(self, endpoint: str, request_id: str | None = None) -> int:
        return sum(
            1
            for c in self.calls
            if c.endpoint == endpoint and (request_id is None or c.request_id == request_id)
        )

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Re-evaluate ``predicate`` every 20 ms and after each call; return its truthy value."""
        event = self._call_event or asyncio.Event()
        deadline = time.monotonic() + timeout
        while True:
            event.clear()
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                lines = "\n".join(
                    f"  {c.method} {c.path} -> {c.status} fault={c.fault}" for c in self.calls[-20:]
                )
                raise AssertionError(f"wait_for timed out after {timeout}s; last calls:\n{lines}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(0.02, remaining))

    # ----------------------------------------------------------------- plumbing
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = request.match_info.route.name or "other"
        if endpoint.startswith("_bench"):  # benchmark control: neither recorded nor faulted
            return await handler(request)
        if endpoint == "submit_edit":  # one endpoint for faults and counts: Call.path tells
            endpoint = "submit"
        rid = request.match_info.get("rid")
        raw = await request.read() if request.can_read_body else b""
        seen = raw.decode("utf-8", "replace") + request.path_qs
        for n, secret in enumerate(self.forbidden):
            if secret and secret in seen:
                self.errors.append(f"{request.method} {request.path} carried forbidden string {n}")
        body: Any = None
        request[_JSON_OK] = False
        if raw:
            try:
                body, request[_JSON_OK] = json.loads(raw), True
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
        request[_JSON] = body
        call = Call(endpoint, request.method, request.path, dict(request.query), rid, body)
        call.at = time.monotonic()
        call.host = request.host
        call.authorized = "Authorization" in request.headers
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        self._answering[endpoint] = self._answering.get(endpoint, 0) + 1
        if self._call_event is not None:
            self._call_event.set()  # wake wait_for: a request arrived
        try:
            response = await self._dispatch(request, handler, endpoint, call)
            unanswered = call.fault in ("disconnect", "reset")
            call.status = 0 if unanswered else response.status
            return response
        except web.HTTPException as exc:
            call.status = exc.status
            raise
        finally:
            self._inflight.discard(task)
            self._answering[endpoint] -= 1
            self.calls.append(call)
            if self._call_event is not None:
                self._call_event.set()

    async def _dispatch(
        self, request: web.Request, handler: Handler, endpoint: str, call: Call
    ) -> web.StreamResponse:
        if self._down and endpoint != "image":
            call.fault = "disconnect"
            return self._disconnect(request)
        request[_COUNTED] = True
        held = self._held.get(endpoint)
        if held is not None:
            assert self._stopping is not None
            waits = [asyncio.ensure_future(e.wait()) for e in (held, self._stopping)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        taken = self._take_fault(endpoint) if endpoint in ENDPOINTS else None
        late: _FaultRule | None = None
        if taken is not None:
            call.fault = taken.fault
            if call.fault == "timeout":
                assert self._stopping is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.timeout_delay)
                request[_COUNTED] = False
            elif taken.late:
                late = taken
            else:
                return self._fault_response(request, taken)
        if endpoint != "image" and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, 400004, "Invalid or expired API token")
        response = await handler(request)
        return response if late is None else self._fault_response(request, late)

    @staticmethod
    def _disconnect(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        if request.transport is not None:
            sock = request.transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends a RST, not a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
        return web.Response(status=500)

    def _fault_response(self, request: web.Request, rule: _FaultRule) -> web.StreamResponse:
        fault, retry_after = rule.fault, rule.retry_after
        if fault == "disconnect":
            return self._disconnect(request)
        if fault == "reset":
            return self._reset(request)
        if fault == "truncated":
            return _Truncated()
        if fault == "huge":
            pad = "x" * HUGE_BYTES
            body = {"request_id": "huge-answer", "status": "in_queue", "pad": pad}
            response = web.json_response(body)
            response.enable_compression(web.ContentCoding.gzip)  # a few KB on the wire
            return response
        if fault == "redirect":
            location = f"http://localhost:{self.port}{request.path_qs}"
            return web.Response(status=307, headers={"Location": location})
        if fault in _FAULT_JSON:
            status, code, message = _FAULT_JSON[fault]
            response = _error(status, code, rule.message or message)
            if fault == "429":
                wait = 1 if retry_after is None else retry_after
                response.headers["Retry-After"] = f"{wait:g}"
            return response
        if fault == "502":
            html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(status=502, text=html, content_type="text/html")
        if fault == "503":
            return web.Response(status=503, text="Service Unavailable")
        if fault == "504":
            html = "<html><body><h1>504 Gateway Time-out</h1></body></html>"
            return web.Response(status=504, text=html, content_type="text/html")
        return web.Response(text='{"request_id": "ab', content_type="application/json")

    def _urls(self, rid: str) -> dict[str, str]:
        base = f"{self.base_url}/v1/requests/{rid}"
        return {"status_url": f"{base}/status", "result_url": f"{base}/result"}

    def _job(self, request: web.Request) -> FakeJob:
        job = self.jobs.get(request.match_info["rid"])
        if job is None:
            body = json.dumps({"error_code": 404001, "error_message": "Request not found"})
            raise web.HTTPNotFound(text=body, content_type="application/json")
        job.touch()
        return job

    # ----------------------------------------------------------------- handlers
    def _reject(self, message: str) -> web.Response:
        self.errors.append(f"submit rejected (422): {message}")
        return _error(422, 422001, message)

    async def _submit(self, request: web.Request) -> web.Response:
        if not request[_JSON_OK]:
            return self._reject("Request body is not valid JSON")
        payload = request[_JSON]
        edit = request.path == EDIT_SUBMIT_PATH
        schema = self.edit_schema if edit else self.schema
        validator = self._edit_validator if edit else self._validator
        error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        if error is not None:
            return self._reject(error.message)
        unknown = sorted(set(payload) - set(schema.get("properties", {})))
        if unknown:
            self.errors.append(f"warning: submit has unknown top-level keys {unknown} (ignored)")
        count = payload.get("sequential_image_generation_options", 3)
        if not _text_states_count(payload["text"], count):
            return self._reject(f"The text must state the number of images ({count})")
        refs = payload.get("images", []) if edit else []
        if len(refs) + count > MAX_REFS_AND_IMAGES:
            return self._reject(
                f"{len(refs)} reference images and {count} images: at most "
                f"{MAX_REFS_AND_IMAGES} in all"
            )
        matched = next((w for w in self._scripts_when if w[0](payload)), None)
        if matched is not None:
            self._scripts_when.remove(matched)
            script = matched[1]
        else:
            script = self._scripts.popleft() if self._scripts else self.default_script
        if edit and script.fetch_refs == "submit":
            fetched = await self._fetch_refs(refs)
            bad = [i for i, f in enumerate(fetched) if not f.ok]
            if bad:
                return self._reject(
                    f"Could not fetch reference image {bad[0] + 1} (HTTP {fetched[bad[0]].status})"
                )
        now = time.monotonic()
        queue_index = 0
        if script is self.default_script and self._timing_rng is not None:
            rng = self._timing_rng
            generating = self._generating(rng, payload)
            if self._queue is not None:
                queue_index, start = self._queue.enqueue(now, generating)
                queued = start - now
            else:
                queued = rng.uniform(0, 4 if self._profile == "model" else 10)
            script = replace(script, queued_seconds=queued, running_seconds=generating)
        rid = str(uuid.uuid4())
        n_images = count if script.images is None else script.images
        urls = [f"{self.base_url}/images/{rid}/{i}.jpeg" for i in range(n_images)]
        self.jobs[rid] = FakeJob(rid, payload, script, count, urls, time.time(), now)
        self.jobs[rid].refs_fetched = not edit or script.fetch_refs == "submit"
        if script.queued_seconds is not None and self._queue is not None:
            self.jobs[rid].queue, self.jobs[rid].queue_index = self._queue, queue_index
        urls_out = self._urls(rid)
        cancel_url = f"{self.base_url}/v1/requests/{rid}/cancel"
        return web.json_response({"request_id": rid, **urls_out, "cancel_url": cancel_url})

    async def _fetch_refs(self, urls: list[str]) -> list[RefFetch]:
        """Fetch every reference URL at once, as a stranger would: no cookies kept, no
        redirects followed, nothing but loopback (tests never reach the internet)."""
        timeout = aiohttp.ClientTimeout(total=10.0)
        jar = aiohttp.DummyCookieJar()
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as session:
            fetched = await asyncio.gather(*(self._fetch_ref(session, url) for url in urls))
        self.ref_fetches.extend(fetched)
        return list(fetched)

    async def _fetch_ref(self, session: aiohttp.ClientSession, url: str) -> RefFetch:
        host = urlsplit(url).hostname or ""
        if not host.startswith("127."):
            self.errors.append(f"reference URL is not on loopback: {url[:80]}")
            return RefFetch(url, 0, at=time.monotonic())
        try:
            async with session.get(url, allow_redirects=False) as response:
                body = await response.content.read(REF_MAX_BYTES + 1)
                fetch = RefFetch(
                    url,
                    response.status,
                    body,
                    response.headers.get("Content-Type", ""),
                    "Set-Cookie" in response.headers,
                    at=time.monotonic(),
                )
        except (aiohttp.ClientError, TimeoutError):
            return RefFetch(url, 0, at=time.monotonic())
        if fetch.status == 200 and len(body) <= REF_MAX_BYTES:
            try:
                with Image.open(io.BytesIO(body)) as img:
                    fetch.image = (str(img.format), img.width, img.height)
            except (OSError, ValueError, Image.DecompressionBombError):
                fetch.image = None
        return fetch

    async def _left_queue(self, job: FakeJob) -> None:
        """A job whose references are fetched when it leaves the queue: fetched now (the first
        poll that sees it out of the queue); one that cannot be fetched fails the job."""
        if job.refs_fetched or job.state in ("in_queue", "cancelled"):
            return
        job.refs_fetched = True
        fetched = await self._fetch_refs(job.payload.get("images", []))
        bad = [i for i, f in enumerate(fetched) if not f.ok]
        if bad:
            self.errors.append(f"job {job.request_id}: reference image {bad[0] + 1} not fetched")
            message = (
                f"Could not fetch reference image {bad[0] + 1} (HTTP {fetched[bad[0]].status})"
            )
            job.script = replace(job.script, outcome="failed", error={"message": message})
            job.finished_at = None
            job.touch()

    async def _status(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if request[_COUNTED]:
            job.polls += 1
            job.touch()
        await self._left_queue(job)
        body: dict[str, Any] = {"request_id": job.request_id, "status": job.state}
        if job.state == "in_queue":
            body["queue_position"] = job.queue_position
        return web.json_response({**body, **self._urls(job.request_id)})

    async def _result(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if request[_COUNTED] and job.state not in FINAL_STATES:
            # RunComfy answers an unfinished job's result with its current state: asking it
            # is a poll like a status request (a poll-based script moves on with either).
            job.polls += 1
            job.touch()
        await self._left_queue(job)
        state = job.state
        if request[_COUNTED] and state in FINAL_STATES:
            job.result_fetches += 1
        body: dict[str, Any] = {"request_id": job.request_id, "status": state}
        if state == "completed":
            body["status"] = "succeeded"
            listed = [
                self._fill(job.script.urls.get(i, url), job.request_id)
                for i, url in enumerate(job.image_urls)
            ]
            if job.script.single_image_form and len(listed) == 1:
                body["output"] = {"image": listed[0]}
            else:
                body["output"] = {"images": listed}
        elif state == "failed":
            body["error"] = job.script.error
        if state in ("completed", "failed"):
            assert job.finished_at is not None
            body["created_at"] = _iso(job.submitted_at)
            body["finished_at"] = _iso(job.finished_at)
        if request.query.get("include_cost", "").lower() == "true":
            cost = job.script.cost
            body["cost"] = round(PRICE_PER_IMAGE * job.requested, 4) if cost is ... else cost
        return web.json_response(body)

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        outcome = "not_cancellable"
        if job.state == "in_queue":
            job.cancelled, job.finished_at, outcome = True, time.time(), "cancelled"
        body = {"request_id": job.request_id, "status": job.state, "outcome": outcome}
        return web.json_response(body, status=202)

    async def _image(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["rid"])
        index = int(request.match_info["index"])
        if job is None or index >= len(job.image_urls):
            return web.Response(status=404, text="Not Found")
        carried = [h for h in ("Authorization", "Cookie") if h in request.headers]
        if carried:  # images are public CDN links: nothing secret may travel with them
            self.errors.append(f"image request carried {', '.join(carried)}")
        if index in job.script.redirects:
            location = self._fill(job.script.redirects[index], job.request_id)
            response = web.Response(status=302, headers={"Location": location})
            response.set_cookie("fake-session", "must-not-travel")
            return response
        kind = job.script.bad_images.get(index, "ok")
        if kind == "bomb":
            return web.Response(body=_bomb_png(30000, 30000), content_type="image/png")
        if kind == "giant":
            return web.Response(body=await asyncio.to_thread(giant_png), content_type="image/png")
        if kind == "gif":
            buf = io.BytesIO()
            Image.new("RGB", (64, 36), (10, 200, 10)).save(buf, "GIF")
            return web.Response(body=buf.getvalue(), content_type="image/gif")
        if kind == "404":
            return web.Response(status=404, text="Not Found")
        if kind == "not_image":
            html = "<html><body>AccessDenied</body></html>"
            return web.Response(text=html, content_type="text/html")
        size = job.script.size or _size_for(job.payload.get("image_size", "2560:1440 (16:9)"))
        if kind == "ok" and self.image_pool > 0:
            data = await self._pooled_image(job.request_id, index, size, job.script.jpeg_bytes)
            return web.Response(body=data, content_type="image/jpeg")
        key = (job.request_id, index, kind)
        data = self._images.get(key)
        if data is not None:
            self._images.move_to_end(key)
        else:
            if kind == "huge":  # one flat colour: valid, tiny, but 10200x100
                buf = io.BytesIO()
                Image.new("RGB", (10200, 100), (200, 30, 30)).save(buf, "JPEG")
                data = buf.getvalue()
            else:
                data = await asyncio.to_thread(
                    render_jpeg, job.request_id, index, size, job.script.jpeg_bytes
                )
            if kind == "truncated":
                data = data[: len(data) // 2]
            self._images[key] = data
            while len(self._images) > 64:
                self._images.popitem(last=False)
        if kind == "drip":
            return await self._drip(request, data)
        return web.Response(body=data, content_type="image/jpeg")

    async def _drip(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """A server that never stops sending and never finishes: one byte per drip_interval."""
        response = web.StreamResponse(
            headers={"Content-Type": "image/jpeg", "Content-Length": str(len(data))}
        )
        await response.prepare(request)
        assert self._stopping is not None
        try:
            for i in range(len(data)):
                await response.write(data[i : i + 1])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.drip_interval)
                if self._stopping.is_set():
                    break
        except ConnectionError:  # the client gave up
            pass
        return response

    def _fill(self, value: Any, rid: str) -> Any:
        if not isinstance(value, str):
            return value
        return value.replace("{base}", self.base_url).replace("{rid}", rid)

    async def _other(self, request: web.Request) -> web.Response:
        return _error(404, 404001, "Not found")

    async def _pooled_image(
        self, rid: str, index: int, size: tuple[int, int], jpeg_bytes: int | None
    ) -> bytes:
        """One of ``image_pool`` JPEGs for this size, chosen by (request, index); each rendered once."""
        digest = hashlib.sha256(f"{rid}:{index}".encode()).digest()
        slot = int.from_bytes(digest[:4], "big") % self.image_pool
        key = (*size, jpeg_bytes, slot)
        if key not in self._pool:
            async with self._pool_locks.setdefault(key, asyncio.Lock()):
                if key not in self._pool:
                    self._pool[key] = await asyncio.to_thread(
                        render_jpeg, f"pool-{slot}", slot, size, jpeg_bytes
                    )
        return self._pool[key]

    def completed_at(self, job: FakeJob) -> float | None:
        """Wall-clock moment the job became final: known up front for time-based scripts."""
        if job.cancelled:
            return None
        if job.script.time_based:
            s = job.script
            return job.submitted_at + (s.queued_seconds or 0.0) + (s.running_seconds or 0.0)
        return job.finished_at

    async def _bench_jobs(self, request: web.Request) -> web.Response:
        counts: dict[str, dict[str, int]] = {}
        answers: dict[str, dict[str, int]] = {}
        for call in self.calls:
            if call.request_id is not None:
                per_job = counts.setdefault(call.request_id, {})
                per_job[call.endpoint] = per_job.get(call.endpoint, 0) + 1
            by_status = answers.setdefault(call.endpoint, {})
            by_status[str(call.status)] = by_status.get(str(call.status), 0) + 1
        jobs = []
        for rid, job in self.jobs.items():
            s = job.script
            jobs.append(
                {
                    "request_id": rid,
                    "text": job.payload.get("text"),
                    "state": job.state,
                    "submitted_at": job.submitted_at,
                    "completed_at": self.completed_at(job),
                    "queued_seconds": s.queued_seconds,
                    "running_seconds": s.running_seconds,
                    "requests": counts.get(rid, {}),
                }
            )
        body = {
            "now": time.time(),
            "jobs": jobs,
            "calls": answers,
            "errors": self.errors,
            **self._bench_summary(),
        }
        return web.json_response(body)

    def _bench_summary(self) -> dict[str, Any]:
        """Counts only (cheap enough to ask every few seconds with 10,000 jobs), plus the most
        API requests (submit/status/result/cancel, not images) seen in any 1-second window."""
        api = sorted(c.at for c in self.calls if c.endpoint in ENDPOINTS and c.endpoint != "image")
        peak, lo = 0, 0
        for hi, at in enumerate(api):
            while at - api[lo] >= 1.0:
                lo += 1
            peak = max(peak, hi - lo + 1)
        states: dict[str, int] = {}
        for job in self.jobs.values():
            states[job.state] = states.get(job.state, 0) + 1
        opens = None
        if self._queue is not None:
            opens = time.time() + self._queue.opens_at - time.monotonic()
        return {
            "job_states": states,
            "api_requests": len(api),
            "api_requests_max_per_second": peak,
            "queue_opens_at": opens,
        }

    async def _bench_summary_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response({"now": time.time(), **self._bench_summary()})


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeRunComfy(
        token=args.token,
        host=args.host,
        port=args.port,
        image_pool=args.image_pool,
        bench_endpoints=args.bench_endpoints,
    )
    fake.set_profile(args.profile, seed=args.seed, capacity=args.capacity, hold=args.hold)
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {fake.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()
        print(f"STOPPED calls={len(fake.calls)} jobs={len(fake.jobs)}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake RunComfy model API server")
    parser.add_argument("--token", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--profile",
        choices=("default", "realistic", "uniform", "model", "queue"),
        default="default",
    )
    parser.add_argument("--capacity", type=int, default=100, help="queue profile: jobs at once")
    parser.add_argument(
        "--hold", type=float, default=0.0, help="queue profile: seconds before any job starts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-pool",
        type=int,
        default=0,
        metavar="N",
        help="serve good images from N pre-rendered JPEGs per size (0: render each image)",
    )
    parser.add_argument(
        "--bench-endpoints",
        action="store_true",
        help="add GET /_bench/jobs (per-job times and request counts; no auth)",
    )
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
