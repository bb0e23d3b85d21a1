"""Load benchmark: the real ``python -m bot`` process with many jobs in flight at once.

Run from the project folder, one command per mode (docs/PERFORMANCE.md has the numbers)::

    .venv/bin/python bench/run.py --mode steady       # Poisson stream, 3/s for 80 s, ~2.5 min
    .venv/bin/python bench/run.py --mode longqueue    # 10,000 jobs in one long queue, ~25 min
    .venv/bin/python bench/run.py --jobs 10,100,1000  # burst (the default mode), ~7 min

``steady`` and ``longqueue`` use the fake's ``model`` and ``queue`` profiles and give each job its own
chat; the notes below describe the burst mode.

For each job count it starts, all on 127.0.0.1:

- the fake RunComfy server in its own process (``tests/fakes/runcomfy_api.py``, realistic profile:
  0-10 s queued, 5-30 s generating, ~1 MB JPEGs served from a small pre-rendered pool), with its
  ``/_bench/jobs`` control endpoint telling when each job completed;
- the fake Telegram Bot API in this (driver) process, keeping only sizes and hashes of uploads;
- the real bot, ``python -m bot``, configured by environment variables, with a fresh database.

Then ``min(jobs, 500)`` private chats send ``/seq 4 <prompt>`` (``--jobs`` commands in all) at the
same moment, and the run lasts until every status message shows a final state (or ``--timeout``).
It prints a markdown table per run: command -> status reply latency, RunComfy "completed" -> first
image latency, the bot's peak RSS and CPU, requests per job to both APIs and every error seen. Raw
numbers go to ``bench/results/<timestamp>.json`` and the bot's log next to it.

Children run in their own sessions and are terminated at the end, on errors and on Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.fakes.telegram_api import Call, FakeTelegram  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# Shaped like a BotFather token (digits, colon, 20+ chars), but obviously fake and not 35 long.
TG_TOKEN = "7012345678:bench-fake-token-not-real-000"
RC_TOKEN = "rc-bench-token"
FIRST_CHAT = 100_001
MAX_CHATS = 500
IMAGES_PER_JOB = 4
PROMPT = "a lighthouse on a cliff at dusk, bench tag j{n}"
TAG_RE = re.compile(r"bench tag j(\d+)")
FINAL_MARKS = ("✅", "❌", "🚫", "⌛")  # first character of a final status text (bot/render.py)
IMAGE_METHODS = ("sendMediaGroup", "sendPhoto", "sendDocument")
LOG_PROBLEM_RE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1

# The team's targets (docs/PERFORMANCE.md).
TARGET_STATUS_P99_MS = 500.0
TARGET_RSS_MB = 250.0
TARGET_CPU_MS_PER_JOB = 50.0
TARGET_OVERHEAD_P50_S = 0.5
TARGET_OVERHEAD_P95_S = 1.5


# ---- child processes ------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the driver dies (Linux), so nothing is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A child process in its own session (Ctrl+C reaches only the driver, which stops it)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, list(argv), env, log
        self.proc: asyncio.subprocess.Process | None = None
        # utime + stime of the whole process, start to exit, all threads and any children it
        # waited for: the kernel's own account, read when the driver reaps it (see stop()).
        self.lifetime_cpu: float | None = None
        self.lifetime_system_cpu: float | None = None  # of which in the kernel (stime)
        # Under a wrapper (py-spy): the real process, which is measured and signalled.
        self.target_pid: int | None = None

    async def start(self, *, stdout_pipe: bool = False) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.log.parent,
                stdout=asyncio.subprocess.PIPE if stdout_pipe else out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.target_pid or self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def read_line(self, timeout: float) -> str:  # noqa: ASYNC109
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        return raw.decode(errors="replace").strip()

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            # RUSAGE_CHILDREN grows by a child's whole usage when it is reaped; nothing else of
            # the driver's is reaped meanwhile (children are stopped one at a time).
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)  # a wrapper ends when its child does
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                print(f"[bench] {self.name} ignored SIGTERM; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.lifetime_system_cpu = after.ru_stime - before.ru_stime
            self.lifetime_cpu = after.ru_utime - before.ru_utime + self.lifetime_system_cpu
        return self.proc.returncode


def _machine_load(started: tuple[int, int], *, extra_cpu: float) -> dict[str, float]:
    """How busy every CPU was over the run, and how much of that was neither the bot nor the
    fakes (other people's work on the same cores: the noise in any CPU figure)."""
    busy0, total0 = started
    busy1, total1 = machine_ticks()
    cores = os.cpu_count() or 1
    wall = (total1 - total0) / CLK_TCK / cores
    busy = (busy1 - busy0) / CLK_TCK
    return {
        "busy_fraction": busy / max(wall * cores, 1e-9),
        "loadavg_1m_at_end": float(Path("/proc/loadavg").read_text().split()[0]),
        "busy_cpu_seconds": busy,
        "fakes_cpu_seconds": extra_cpu,
        "wall_seconds": wall,
    }


@dataclass
class ProcStats:
    cpu_seconds: float  # utime + stime
    peak_rss_mb: float  # VmHWM
    rss_mb: float  # VmRSS


def proc_stats(pid: int) -> ProcStats:
    """CPU and memory of a live process from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; utime is field 14
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )

    def mb(key: str) -> float:
        return int(status[key].split()[0]) / 1024  # kB

    return ProcStats(cpu, mb("VmHWM"), mb("VmRSS"))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ---- one job as the bench sees it -----------------------------------------------------------


@dataclass
class JobRecord:
    n: int
    chat_id: int
    message_id: int
    pushed_at: float  # wall clock of the command update
    count: int = IMAGES_PER_JOB  # images asked for
    warm: bool = False  # a warm-up job: run, but left out of the steady numbers
    refs: int = 0  # photo references sent with the command (an album)
    status_message_id: int | None = None
    status_at: float | None = None  # the status reply arrived at Telegram
    first_image_at: float | None = None  # the first photo/album call completed
    images: int = 0
    final_text: str | None = None  # the status message's final state
    request_id: str | None = None
    submitted_at: float | None = None  # RunComfy's view
    completed_at: float | None = None
    rc_requests: dict[str, int] = field(default_factory=dict)

    @property
    def status_latency_ms(self) -> float | None:
        return None if self.status_at is None else (self.status_at - self.pushed_at) * 1000

    @property
    def overhead_s(self) -> float | None:
        if self.first_image_at is None or self.completed_at is None:
            return None
        return self.first_image_at - self.completed_at

    def status_budget(self, poll_interval: float) -> float | None:
        """The target's allowance of status requests: job duration / poll interval + 3."""
        if self.submitted_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.submitted_at) / poll_interval + 3


class Observer:
    """Follows the fake Telegram's calls and fills in each job's timeline."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.jobs: dict[tuple[int, int], JobRecord] = {}  # (chat, command message id)
        self.by_status: dict[tuple[int, int], JobRecord] = {}  # (chat, status message id)
        self._items: dict[tuple[int, int], JobRecord] = {}  # (chat, any album item's id)
        self._seen = 0

    def add(self, job: JobRecord, items: Sequence[int] = ()) -> None:
        """A job by its command; ``items``: the message ids of its album (any one may be
        the message the bot replies to)."""
        self.jobs[(job.chat_id, job.message_id)] = job
        for mid in items:
            self._items[(job.chat_id, mid)] = job

    def update(self) -> None:
        calls = self.fake.calls
        for call in calls[self._seen :]:
            if call.status == 200:
                self._observe(call)
        self._seen = len(calls)

    def _observe(self, call: Call) -> None:
        p = call.params
        chat = _int(p.get("chat_id"))
        if chat is None:
            return
        if call.method == "editMessageText":
            job = self.by_status.get((chat, _int(p.get("message_id")) or 0))
            text = str(p.get("text", ""))
            if job is not None and text.startswith(FINAL_MARKS):
                job.final_text = text.split("\n", 1)[0]
            return
        reply = p.get("reply_parameters")
        mid = _int(reply.get("message_id")) if isinstance(reply, dict) else None
        job = self.jobs.get((chat, mid)) or self._items.get((chat, mid)) if mid else None
        if job is None:
            return
        result = call.response.get("result")
        if call.method == "sendMessage" and job.status_at is None and isinstance(result, dict):
            job.status_at, job.status_message_id = call.wall, result["message_id"]
            self.by_status[(chat, result["message_id"])] = job
        elif call.method in IMAGE_METHODS:
            if job.first_image_at is None:
                job.first_image_at = call.wall
            job.images += len(result) if isinstance(result, list) else 1

    def progress(self) -> dict[str, int]:
        jobs = self.jobs.values()
        return {
            "status_replied": sum(j.status_at is not None for j in jobs),
            "first_image": sum(j.first_image_at is not None for j in jobs),
            "all_images": sum(j.images >= j.count for j in jobs),
            "final": sum(j.final_text is not None for j in jobs),
        }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def pcts(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{q}": percentile(values, q) for q in (50, 95, 99)} | {
        "max": max(values) if values else None,
        "n": len(values),
    }


# ---- one run --------------------------------------------------------------------------------


@dataclass
class RunConfig:
    jobs: int
    chats: int
    poll_interval: float
    profile: str
    db_path: Path
    run_index: int
    timeout: float
    seed: int
    image_pool: int
    log_level: str
    out_dir: Path
    stamp: str
    mode: str = "burst"  # burst | steady | longqueue
    label: str = ""  # names the run in the table and log file (default: "<jobs> jobs")
    counts: tuple[int, ...] = (IMAGES_PER_JOB,)  # steady: images per command, in turn
    rate: float = 3.0  # steady: commands per second (Poisson)
    duration: float = 80.0  # steady: seconds of measured stream
    warmup_seconds: float = 20.0  # steady: seconds of stream before the measured part
    capacity: int = 100  # longqueue: jobs the fake model generates at once
    hold: float = 0.0  # longqueue: seconds before the fake queue moves at all
    bot_env: dict[str, str] = field(default_factory=dict)  # extra environment for the bot
    py_spy: str = ""  # a py-spy executable: run the bot under it, start-up to exit
    refs_fraction: float = 0.0  # steady: this share of commands come with 2–3 photo references
    loop_lag: str = ""  # "ticker" or "debug": a 5 ms ticker on the bot's loop (bench/looplag.py)
    cprofile: bool = False  # run the bot under cProfile (its main thread: the event loop)

    @property
    def name(self) -> str:
        return self.label or f"{self.jobs}jobs"


async def run_once(cfg: RunConfig) -> dict[str, Any]:
    """Start the fakes and the bot, push the commands, wait, measure, stop everything."""
    tmp = Path(tempfile.mkdtemp(prefix=f"seqbot-bench-{cfg.name}-"))
    run_started = time.time()
    ticks_started = machine_ticks()
    bot_log = cfg.out_dir / f"{cfg.stamp}-{cfg.name}-bot.log"
    rc_log = tmp / "runcomfy.log"
    fake_tg = FakeTelegram(token=TG_TOKEN, keep_file_bytes=False)
    rc = Child(
        "fake RunComfy",
        [
            sys.executable,
            *("-m", "tests.fakes.runcomfy_api", "--token", RC_TOKEN, "--port", "0"),
            *("--profile", cfg.profile, "--seed", str(cfg.seed)),
            *("--capacity", str(cfg.capacity), "--hold", f"{cfg.hold:g}"),
            *("--image-pool", str(cfg.image_pool), "--bench-endpoints"),
        ],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        rc_log,
    )
    bot: Child | None = None
    try:
        await fake_tg.start()
        await rc.start(stdout_pipe=True)
        ready = await rc.read_line(30)
        if not ready.startswith("READY "):
            raise RuntimeError(f"fake RunComfy did not start: {ready!r}; see {rc_log}")
        rc_url = ready.split(" ", 1)[1]

        env = {k: v for k, v in os.environ.items() if not k.startswith(_BOT_VARS)}
        env |= {
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": TG_TOKEN,
            "RUNCOMFY_API_TOKEN": RC_TOKEN,
            "TELEGRAM_API_BASE_URL": fake_tg.base_url,
            "RUNCOMFY_API_BASE_URL": rc_url,
            # One database for all runs of a bench: like a bot that has been running a while,
            # it knows how long past jobs took, which its poll schedule relies on.
            "DATABASE_PATH": str(cfg.db_path),
            "POLL_INTERVAL_SECONDS": f"{cfg.poll_interval:g}",
            "HTTP_TIMEOUT_SECONDS": "30",
            "LOG_LEVEL": cfg.log_level,
            "MAX_ACTIVE_JOBS_PER_USER": "100000",
            "MAX_ACTIVE_JOBS_PER_CHAT": "100000",
            "DAILY_IMAGE_LIMIT_PER_USER": "0",
            **cfg.bot_env,
        }
        if cfg.refs_fraction > 0:
            # The bot's own web server serves the references (signed URLs) to the fake RunComfy.
            port = _free_port()
            env |= {"PUBLIC_URL": f"http://127.0.0.1:{port}/seqbot", "WEB_PORT": str(port)}
        bot_log.write_bytes(b"")
        argv = [sys.executable, "-m", "bot"]
        if cfg.cprofile:
            prof = cfg.out_dir / f"{cfg.stamp}-{cfg.name}.prof"
            argv[1:1] = ["-m", "cProfile", "-o", str(prof)]
        lag_file = cfg.out_dir / f"{cfg.stamp}-{cfg.name}-loop-lag.json"
        if cfg.loop_lag:
            argv = [sys.executable, str(ROOT / "bench" / "looplag.py"), str(lag_file), "-m", "bot"]
            if cfg.loop_lag == "debug":
                env["PYTHONASYNCIODEBUG"] = "1"  # names the callbacks that held the loop
        if cfg.py_spy:
            argv = _py_spy_argv(cfg, argv)
        bot = Child("bot", argv, env, bot_log)
        started = time.monotonic()
        await bot.start()
        if cfg.py_spy:
            bot.target_pid = await _spied_pid(bot.proc.pid if bot.proc else 0)
        await fake_tg.wait_for(lambda: fake_tg.calls_to("getUpdates"), timeout=60)
        startup_s = time.monotonic() - started
        at_ready = proc_stats(bot.pid)
        rc_cpu_ready = proc_stats(rc.pid).cpu_seconds
        driver_cpu_ready = self_cpu()

        observer = Observer(fake_tg)
        marks: dict[str, dict[str, float]] = {}
        t0 = time.monotonic()
        pusher: asyncio.Task[None] | None = None
        if cfg.mode == "steady":
            pusher = asyncio.create_task(_push_steady(cfg, fake_tg, observer, bot, marks))
        else:
            for n in range(cfg.jobs):
                _push(cfg, fake_tg, observer, n, cfg.counts[n % len(cfg.counts)], warm=False)
        samples, timed_out = await _wait(cfg, observer, bot, t0, pusher, rc_url, marks)
        elapsed = time.monotonic() - t0
        if pusher is not None and not pusher.done():
            pusher.cancel()
        elif pusher is not None:
            pusher.result()  # its error, if any

        bot_alive = bot.running
        end = proc_stats(bot.pid) if bot_alive else None
        rc_cpu = proc_stats(rc.pid).cpu_seconds - rc_cpu_ready
        driver_cpu = self_cpu() - driver_cpu_ready
        async with httpx.AsyncClient(timeout=30) as http:
            rc_report = (await http.get(f"{rc_url}/_bench/jobs")).json()
    finally:
        stopping = time.monotonic()
        bot_code = await bot.stop() if bot is not None else None
        shutdown_s = time.monotonic() - stopping
        await rc.stop(grace=5)
        await fake_tg.stop()

    db = _db_statuses(cfg.db_path, since=run_started)
    return _summarise(
        cfg,
        observer=observer,
        fake_tg=fake_tg,
        rc_report=rc_report,
        bot_log=bot_log,
        db=db,
        extra={
            "startup_seconds": startup_s,
            "elapsed_seconds": elapsed,
            "timed_out": timed_out,
            "bot_alive_at_end": bot_alive,
            "bot_exit_code": bot_code,
            "bot_lifetime_cpu_seconds": bot.lifetime_cpu if bot is not None else None,
            "bot_lifetime_system_cpu_seconds": bot.lifetime_system_cpu if bot is not None else None,
            "bot_shutdown_seconds": shutdown_s,
            "machine": _machine_load(ticks_started, extra_cpu=rc_cpu + driver_cpu),
            "bot_at_ready": asdict(at_ready),
            "bot_at_end": asdict(end) if end else None,
            "fake_runcomfy_cpu_seconds": rc_cpu,
            "driver_cpu_seconds": driver_cpu,
            "samples": samples,
            "marks": marks,
            "bot_log": str(bot_log.relative_to(ROOT)),
            "loop_lag": json.loads(lag_file.read_text()) if lag_file.exists() else None,
        },
    )


_BOT_VARS = (
    "TELEGRAM_",
    "RUNCOMFY_",
    "DATABASE_PATH",
    "POLL_INTERVAL",
    "JOB_DEADLINE",
    "HTTP_TIMEOUT",
    "LOG_LEVEL",
    "ALLOWED_",
    "ADMIN_USER",
    "MAX_ACTIVE",
    "DAILY_IMAGE",
)


class RefPhotos:
    """Photo-like 1280 x 960 JPEGs as Telegram serves them (``bench/refs_cpu.py``), each one
    sent made unique by a JPEG comment: the bot has never seen it, so it fetches and cleans it."""

    def __init__(self, kinds: int = 6) -> None:
        from bench.refs_cpu import telegram_photo

        self._photos = [telegram_photo(i, turned=i % 2 == 0) for i in range(kinds)]
        self._sent = 0

    def take(self, k: int) -> list[bytes]:
        out = []
        for _ in range(k):
            self._sent += 1
            note = f"bench reference {self._sent}".encode()
            segment = b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note
            photo = self._photos[self._sent % len(self._photos)]
            out.append(photo[:2] + segment + photo[2:])  # after the JPEG's SOI marker
        return out


def _push(
    cfg: RunConfig,
    fake_tg: FakeTelegram,
    observer: Observer,
    n: int,
    count: int,
    *,
    warm: bool,
    refs: list[bytes] | None = None,
) -> None:
    """One ``/seq`` command (with ``refs``: the caption of an album of those photos). Fresh chat
    ids per run: the database is shared, and (chat, message) makes one job; steady and
    long-queue runs give every job its own chat (messages per job)."""
    per_job_chat = cfg.mode != "burst"
    chat_id = FIRST_CHAT + cfg.run_index * 100_000 + (n if per_job_chat else n % cfg_chats(cfg))
    pushed_at = time.time()
    text = f"/seq {count} {PROMPT.format(n=n)}"
    if refs:
        items = [
            u["message"]["message_id"] for u in fake_tg.send_album(refs, text, chat_id=chat_id)
        ]
    else:
        items = [fake_tg.send_text(text, chat_id=chat_id)["message"]["message_id"]]
    job = JobRecord(n, chat_id, items[0], pushed_at, count=count, warm=warm, refs=len(refs or ()))
    observer.add(job, items)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _py_spy_argv(cfg: RunConfig, argv: list[str]) -> list[str]:
    """``argv`` run under ``py-spy record``: the bot's whole life (start-up to exit), every thread
    (the event loop and the ``to_thread`` workers), native frames too, idle samples left out;
    written as a collapsed-stack file next to the bot's log (``bench/pyspy_top.py`` sums it up).
    py-spy starts the bot itself: attaching to a running one (``--pid``) fails in some containers
    ("Failed to find python version from target process")."""
    out = cfg.out_dir / f"{cfg.stamp}-{cfg.name}-py-spy.txt"
    return [
        cfg.py_spy,
        *("record", "--rate", "100", "--threads", "--native", "--format", "raw"),
        *("--output", str(out), "--"),
        *argv,
    ]


def _children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def _spied_pid(spy_pid: int) -> int:
    """The bot's pid under py-spy (py-spy's one child process)."""
    for _ in range(600):
        if children := _children_of(spy_pid):
            return children[0]
        await asyncio.sleep(0.05)
    raise RuntimeError("py-spy did not start the bot")


def cfg_chats(cfg: RunConfig) -> int:
    """Chats the commands come from: one per job, except a burst's (at most ``--chats``)."""
    return max(1, cfg.jobs if cfg.mode != "burst" else min(cfg.jobs, cfg.chats))


def _milestone(marks: dict[str, dict[str, float]], name: str, bot: Child) -> None:
    if bot.running:
        marks[name] = {"wall": time.time(), "mono": time.monotonic()}
        marks[name] |= {"cpu_s": proc_stats(bot.pid).cpu_seconds}


async def _push_steady(
    cfg: RunConfig,
    fake_tg: FakeTelegram,
    observer: Observer,
    bot: Child,
    marks: dict[str, dict[str, float]],
) -> None:
    """Poisson arrivals at ``cfg.rate`` a second: warm-up, then the measured stream (marked at
    its start, middle and end with the bot's CPU time)."""
    rng = random.Random(cfg.seed)
    # Its own generator: the arrival times are those of a run without references.
    with_refs = random.Random(cfg.seed + 1)
    photos = RefPhotos() if cfg.refs_fraction > 0 else None
    start = time.monotonic()
    phases = [
        ("warm_end", cfg.warmup_seconds),
        ("mid", cfg.warmup_seconds + cfg.duration / 2),
        ("end", cfg.warmup_seconds + cfg.duration),
    ]
    at, n = 0.0, 0
    while True:
        at += rng.expovariate(cfg.rate)
        while phases and at >= phases[0][1]:
            name, when = phases.pop(0)
            await asyncio.sleep(max(0.0, start + when - time.monotonic()))
            _milestone(marks, name, bot)
        if not phases:
            break
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        warm = at < cfg.warmup_seconds
        refs = None
        if photos is not None and with_refs.random() < cfg.refs_fraction:
            refs = photos.take(with_refs.choice((2, 3)))
        _push(cfg, fake_tg, observer, n, cfg.counts[n % len(cfg.counts)], warm=warm, refs=refs)
        n += 1
        cfg.jobs = n


async def _wait(
    cfg: RunConfig,
    observer: Observer,
    bot: Child,
    t0: float,
    pusher: asyncio.Task[None] | None,
    rc_url: str,
    marks: dict[str, dict[str, float]],
) -> tuple[list[dict[str, Any]], bool]:
    """Until every job's status message is final, the bot dies, or the timeout; with samples."""
    samples: list[dict[str, Any]] = []
    http = httpx.AsyncClient(timeout=30)
    try:
        return await _wait_loop(cfg, observer, bot, t0, pusher, rc_url, marks, samples, http)
    finally:
        await http.aclose()


async def _wait_loop(
    cfg: RunConfig,
    observer: Observer,
    bot: Child,
    t0: float,
    pusher: asyncio.Task[None] | None,
    rc_url: str,
    marks: dict[str, dict[str, float]],
    samples: list[dict[str, Any]],
    http: httpx.AsyncClient,
) -> tuple[list[dict[str, Any]], bool]:
    next_sample = 0.0
    while True:
        await asyncio.sleep(0.2)
        observer.update()
        now = time.monotonic() - t0
        progress = observer.progress()
        pushing = pusher is not None and not pusher.done()
        done = not pushing and progress["final"] >= len(observer.jobs)
        if now >= next_sample or done or not bot.running:
            stats = proc_stats(bot.pid) if bot.running else None
            sample = {"t": round(now, 1), "pushed": len(observer.jobs), **progress}
            if stats:
                sample |= {"cpu_s": round(stats.cpu_seconds, 2), "rss_mb": round(stats.rss_mb, 1)}
            if cfg.mode == "longqueue":
                summary = (await http.get(f"{rc_url}/_bench/summary")).json()
                states = summary["job_states"]
                sample |= {"rc": states, "rc_max_rps": summary["api_requests_max_per_second"]}
                if "all_submitted" not in marks and sum(states.values()) >= cfg.jobs:
                    _milestone(marks, "all_submitted", bot)
                opens = summary["queue_opens_at"]
                if "queue_opens" not in marks and opens is not None and time.time() >= opens:
                    _milestone(marks, "queue_opens", bot)
            samples.append(sample)
            print(f"[bench] {cfg.name}: {sample}", file=sys.stderr, flush=True)
            next_sample = now + 5
        if done:
            return samples, False
        if not bot.running:
            print("[bench] the bot exited during the run", file=sys.stderr)
            return samples, True
        if now >= cfg.timeout:
            print(f"[bench] timed out after {cfg.timeout:g} s", file=sys.stderr)
            return samples, True


def _db_statuses(path: Path, *, since: float) -> dict[str, int]:
    """States of this run's jobs as the bot recorded them (read after the bot stopped)."""
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT status, COUNT(*) FROM jobs WHERE created_at >= ? GROUP BY status", [since]
        ).fetchall()
    finally:
        con.close()
    return {str(status): int(count) for status, count in rows}


def _summarise(
    cfg: RunConfig,
    *,
    observer: Observer,
    fake_tg: FakeTelegram,
    rc_report: dict[str, Any],
    bot_log: Path,
    db: dict[str, int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    jobs = list(observer.jobs.values())
    by_n = {j.n: j for j in jobs}
    for rc_job in rc_report["jobs"]:
        m = TAG_RE.search(rc_job.get("text") or "")
        job = by_n.get(int(m.group(1))) if m else None
        if job is not None:
            job.request_id = rc_job["request_id"]
            job.submitted_at, job.completed_at = rc_job["submitted_at"], rc_job["completed_at"]
            job.rc_requests = rc_job["requests"]

    n = cfg.jobs
    measured = [j for j in jobs if not j.warm]  # burst and long queue: every job
    # A command with an album is answered once the album is complete (ALBUM_WAIT_SECONDS without
    # another item): its own row, not mixed into the commands' latency.
    status_ms = [v for j in measured if not j.refs and (v := j.status_latency_ms) is not None]
    album_ms = [v for j in measured if j.refs and (v := j.status_latency_ms) is not None]
    overhead = [v for j in measured if (v := j.overhead_s) is not None]
    # Every status and result request (a generating job is polled at /result, and the poll that
    # finds it done lists the images), against the polls allowed plus the one result fetch.
    budgets = [
        (j.rc_requests.get("status", 0) + j.rc_requests.get("result", 0), b + 1)
        for j in measured
        if (b := j.status_budget(cfg.poll_interval)) is not None and j.first_image_at is not None
    ]
    # Telegram messages per job: every call that names the job's chat (one chat per job in the
    # steady and long-queue modes; in a burst with fewer chats than jobs, chats share jobs).
    job_chats = {j.chat_id for j in measured}
    per_chat: Counter[int] = Counter()
    per_method: Counter[str] = Counter()
    chat_times: list[float] = []
    for c in fake_tg.calls:
        chat = _int(c.params.get("chat_id"))
        if chat is None:
            continue
        chat_times.append(c.at)
        if chat in job_chats:
            per_chat[chat] += 1
            per_method[c.method] += 1
    msgs_jobs = max(len(measured), 1)
    telegram_per_job = {
        "mean": sum(per_chat.values()) / msgs_jobs,
        "by_method": {k: v / msgs_jobs for k, v in per_method.most_common()},
        "max_per_chat": max(per_chat.values(), default=0),
        "max_chat_requests_in_1s": _max_in_window(sorted(chat_times), 1.0),
    }

    rc_calls: Counter[str] = Counter()
    rc_bad: Counter[str] = Counter()
    for endpoint, by_status in rc_report["calls"].items():
        for status, count in by_status.items():
            rc_calls[endpoint] += count
            if status == "0" or int(status) >= 400:
                rc_bad[f"{endpoint} {status}"] += count
    tg_calls = Counter(c.method for c in fake_tg.calls)
    # What python-telegram-bot's AIORateLimiter throttles (30 a second overall): calls with a chat.
    tg_chat_calls = sum("chat_id" in c.params for c in fake_tg.calls)
    tg_bad = Counter(f"{c.method} {c.status}" for c in fake_tg.calls if c.status != 200)

    log_text = bot_log.read_text(errors="replace")
    problem_lines = [line for line in log_text.splitlines() if LOG_PROBLEM_RE.search(line)]
    warning_lines = [line for line in log_text.splitlines() if " WARNING " in line]

    end = extra["bot_at_end"]
    ready = extra["bot_at_ready"]
    not_done = {k: v for k, v in db.items() if k != "done"}
    missing_images = sum(j.images < j.count for j in jobs)
    errors = {
        "jobs_not_done": not_done,
        "jobs_missing_images": missing_images,
        "telegram_fake_errors": fake_tg.errors[:20],
        "telegram_fake_error_count": len(fake_tg.errors),
        "telegram_http_errors": dict(tg_bad),
        "runcomfy_fake_errors": rc_report["errors"][:20],
        "runcomfy_fake_error_count": len(rc_report["errors"]),
        "runcomfy_http_errors": dict(rc_bad),
        "bot_log_error_lines": len(problem_lines),
        "bot_log_error_samples": problem_lines[:10],
        "bot_log_warning_lines": len(warning_lines),
        "bot_log_warning_samples": warning_lines[:10],
        "timed_out": extra["timed_out"],
    }
    error_count = (
        sum(not_done.values())
        + missing_images
        + len(fake_tg.errors)
        + sum(tg_bad.values())
        + len(rc_report["errors"])
        + sum(rc_bad.values())
        + len(problem_lines)
        + int(extra["timed_out"])
    )
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "jobs": n,
        "chats": cfg_chats(cfg),
        "images_per_job": IMAGES_PER_JOB,
        "delivered_jobs": n - missing_images,
        "status_latency_ms": pcts(status_ms),
        "album_status_latency_ms": pcts(album_ms),
        "delivery_overhead_s": pcts(overhead),
        "status_budget": {
            "jobs": len(budgets),
            "within": sum(actual <= budget for actual, budget in budgets),
            "mean_ratio": (sum(a / b for a, b in budgets) / len(budgets)) if budgets else None,
            "mean_actual": (sum(a for a, _ in budgets) / len(budgets)) if budgets else None,
            "mean_budget": (sum(b for _, b in budgets) / len(budgets)) if budgets else None,
        },
        "bot": {
            "peak_rss_mb": end["peak_rss_mb"] if end else None,
            "cpu_seconds_total": end["cpu_seconds"] if end else None,
            "cpu_seconds_startup": ready["cpu_seconds"],
            "cpu_seconds_run": end["cpu_seconds"] - ready["cpu_seconds"] if end else None,
            # The kernel's account of the whole process, exec to exit (shutdown included).
            "cpu_seconds_lifetime": extra["bot_lifetime_cpu_seconds"],
            "cpu_seconds_lifetime_system": extra["bot_lifetime_system_cpu_seconds"],
            "cpu_ms_per_job_lifetime": None
            if extra["bot_lifetime_cpu_seconds"] is None
            else extra["bot_lifetime_cpu_seconds"] / max(n, 1) * 1000,
        },
        "runcomfy_requests": dict(rc_calls),
        "runcomfy_api_max_per_second": rc_report.get("api_requests_max_per_second"),
        "telegram_per_job": telegram_per_job,
        "measured_jobs": len(measured),
        "steady": _steady(cfg, measured, extra["marks"]) if cfg.mode == "steady" else None,
        "longqueue": _longqueue(cfg, extra) if cfg.mode == "longqueue" else None,
        "telegram_requests": dict(tg_calls),
        "telegram_chat_requests_per_second": tg_chat_calls / max(extra["elapsed_seconds"], 1e-9),
        "db_statuses": db,
        "errors": errors,
        "error_count": error_count,
        **{k: v for k, v in extra.items() if k not in ("bot_at_end", "bot_at_ready")},
        "per_job": [
            {
                "n": j.n,
                "chat_id": j.chat_id,
                "status_latency_ms": j.status_latency_ms,
                "overhead_s": j.overhead_s,
                "images": j.images,
                "count": j.count,
                "warm": j.warm,
                "final": j.final_text,
                "request_id": j.request_id,
                "job_seconds": (j.completed_at - j.submitted_at)
                if j.completed_at and j.submitted_at
                else None,
                "rc_requests": j.rc_requests,
            }
            for j in sorted(jobs, key=lambda j: j.n)
        ],
    }


def _max_in_window(times: Sequence[float], width: float) -> int:
    """The most of the sorted ``times`` in any window of ``width`` seconds."""
    peak, lo = 0, 0
    for hi, at in enumerate(times):
        while at - times[lo] >= width:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


def _steady(
    cfg: RunConfig, measured: Sequence[JobRecord], marks: dict[str, dict[str, float]]
) -> dict[str, Any] | None:
    """CPU per job over the measured stream, and per half (is it flat?)."""
    if not all(k in marks for k in ("warm_end", "mid", "end")):
        return None
    w, m, e = marks["warm_end"], marks["mid"], marks["end"]

    def pushed(a: dict[str, float], b: dict[str, float]) -> int:
        return sum(a["wall"] <= j.pushed_at < b["wall"] for j in measured)

    def per_job(a: dict[str, float], b: dict[str, float]) -> float | None:
        jobs = pushed(a, b)
        return (b["cpu_s"] - a["cpu_s"]) / jobs * 1000 if jobs else None

    images = sum(j.count for j in measured)
    return {
        "rate": cfg.rate,
        "duration": cfg.duration,
        "warmup_seconds": cfg.warmup_seconds,
        "counts": list(cfg.counts),
        "images_per_job": images / len(measured) if measured else None,
        "jobs_with_refs": sum(j.refs > 0 for j in measured),
        "refs": sum(j.refs for j in measured),
        "cpu_ms_per_job": per_job(w, e),
        "cpu_ms_per_job_first_half": per_job(w, m),
        "cpu_ms_per_job_second_half": per_job(m, e),
        "jobs_first_half": pushed(w, m),
        "jobs_second_half": pushed(m, e),
        "cpu_seconds_window": e["cpu_s"] - w["cpu_s"],
    }


def _longqueue(cfg: RunConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """CPU per job-minute while every job waits in the fake's queue."""
    marks = extra["marks"]
    out: dict[str, Any] = {"capacity": cfg.capacity, "hold": cfg.hold}
    a, b = marks.get("all_submitted"), marks.get("queue_opens")
    if a and b and b["mono"] > a["mono"]:
        minutes = (b["mono"] - a["mono"]) / 60
        out |= {
            "waiting_minutes": minutes,
            "cpu_seconds_waiting": b["cpu_s"] - a["cpu_s"],
            "cpu_ms_per_job_minute": (b["cpu_s"] - a["cpu_s"]) * 1000 / (cfg.jobs * minutes),
        }
    positions = [s.get("rc", {}).get("in_queue", 0) for s in extra["samples"]]
    out["max_jobs_in_queue"] = max(positions, default=0)
    out["peak_rss_mb_samples"] = max((s.get("rss_mb", 0) for s in extra["samples"]), default=0)
    return out


# ---- the table ------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".0f", unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def _three(p: dict[str, Any], spec: str, unit: str, scale: float = 1.0) -> str:
    vals = [p.get(k) for k in ("p50", "p95", "p99")]
    return " / ".join(_fmt(None if v is None else v * scale, spec) for v in vals) + unit


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _extra_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    t = r["telegram_per_job"]
    rows = [
        (
            "Telegram requests naming the job's chat, per job",
            f"{t['mean']:.2f} ("
            + ", ".join(f"{k} {v:.2f}" for k, v in t["by_method"].items())
            + f"); jobs a second at 30 a second: {30 / t['mean']:.1f}"
            if t["mean"]
            else "–",
            "",
        ),
        (
            "Telegram requests with a chat_id, most in any 1 s",
            str(t["max_chat_requests_in_1s"]),
            "≤ 60: 30 at once, then 30 a second (python-telegram-bot's bucket)",
        ),
        (
            "RunComfy API requests, most in any 1 s",
            str(r["runcomfy_api_max_per_second"]),
            "≤ RUNCOMFY_MAX_REQUESTS_PER_SECOND (100)",
        ),
    ]
    st = r.get("steady")
    if st:
        rows += [
            (
                "steady stream",
                f"{st['rate']:g}/s Poisson for {st['duration']:g} s after a "
                f"{st['warmup_seconds']:g} s warm-up; {st['images_per_job']:.2f} images per job"
                + (
                    f"; {st['jobs_with_refs']} of the measured jobs with {st['refs']} photo "
                    "references in all"
                    if st.get("jobs_with_refs")
                    else ""
                ),
                "",
            ),
            (
                "bot CPU per job over the measured stream (first half / second half)",
                f"{_fmt(st['cpu_ms_per_job'], '.1f', ' ms')} ("
                f"{_fmt(st['cpu_ms_per_job_first_half'], '.1f')} / "
                f"{_fmt(st['cpu_ms_per_job_second_half'], '.1f', ' ms')})"
                + _mark(
                    None
                    if st["cpu_ms_per_job"] is None
                    else st["cpu_ms_per_job"] <= TARGET_CPU_MS_PER_JOB
                ),
                f"≤ {TARGET_CPU_MS_PER_JOB:.0f} ms, flat",
            ),
        ]
    lq = r.get("longqueue")
    if lq:
        rows += [
            (
                "fake model: jobs at once / hold before the queue moves",
                f"{lq['capacity']} / {lq['hold']:.0f} s; most jobs queued at once "
                f"{lq['max_jobs_in_queue']}",
                "",
            ),
            (
                "bot CPU per job-minute of waiting",
                f"{_fmt(lq.get('cpu_ms_per_job_minute'), '.2f', ' ms')} "
                f"({_fmt(lq.get('cpu_seconds_waiting'), '.1f', ' s')} over "
                f"{_fmt(lq.get('waiting_minutes'), '.1f', ' min')})",
                "small",
            ),
        ]
    if lag := r.get("loop_lag"):
        rows.append(
            (
                "event loop lateness, 5 ms ticker"
                + (" (asyncio debug mode on)" if r["config"]["loop_lag"] == "debug" else ""),
                f"p50 {lag['p50_ms']:.1f} / p99 {lag['p99_ms']:.1f} / max {lag['max_ms']:.0f} ms "
                f"over {lag['ticks']} ticks; {lag['over_50_ms']} over 50 ms; "
                f"{len(lag['slow_callbacks'])} callbacks over 30 ms",
                "never over 50 ms",
            )
        )
    return rows


def table(r: dict[str, Any]) -> str:
    n, poll = r["jobs"], r["config"]["poll_interval"]
    s, o, b, bot = r["status_latency_ms"], r["delivery_overhead_s"], r["status_budget"], r["bot"]
    cpu_total, cpu_run = bot["cpu_seconds_total"], bot["cpu_seconds_run"]
    per_job = None if cpu_total is None else cpu_total / n * 1000
    per_job_run = None if cpu_run is None else cpu_run / n * 1000
    rc, tg = r["runcomfy_requests"], r["telegram_requests"]
    others = None
    if bot["cpu_seconds_lifetime"] is not None:
        m = r["machine"]
        others = m["busy_cpu_seconds"] - m["fakes_cpu_seconds"] - bot["cpu_seconds_lifetime"]
    rc_line = ", ".join(
        f"{k} {rc[k] / n:.2f}" for k in ("submit", "status", "result", "image", "cancel") if k in rc
    )
    tg_line = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(tg.items(), key=lambda kv: -kv[1]))
    within = None if not b["jobs"] else b["within"] / b["jobs"]

    def ok(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    # Burst: within 10 % of Telegram's floor ((N - 30) / 30 s) plus 0.5 s; else 500 ms.
    status_target = TARGET_STATUS_P99_MS
    if r["config"]["mode"] == "burst":
        status_target = 1.1 * max(0.0, (n - 30) / 30) * 1000 + 500
    status_ok = ok(s["p99"], status_target)
    overhead_ok = None
    if o["p50"] is not None:
        overhead_ok = o["p50"] <= TARGET_OVERHEAD_P50_S and o["p95"] <= TARGET_OVERHEAD_P95_S
    e = r["errors"]
    if r["error_count"] == 0:
        error_text = "none ✅"
    else:
        parts = [f"{r['error_count']} ❌"]
        if e["timed_out"]:
            parts.append("run timed out")
        if e["jobs_not_done"]:
            parts.append(f"jobs not done {e['jobs_not_done']}")
        if e["jobs_missing_images"]:
            parts.append(f"{e['jobs_missing_images']} jobs missing images")
        for key in ("telegram_fake_error_count", "runcomfy_fake_error_count"):
            if e[key]:
                parts.append(f"{key.removesuffix('_count').replace('_', ' ')}: {e[key]}")
        for key in ("telegram_http_errors", "runcomfy_http_errors"):
            if e[key]:
                parts.append(f"{key.replace('_', ' ')} {e[key]}")
        if e["bot_log_error_lines"]:
            parts.append(f"{e['bot_log_error_lines']} ERROR/Traceback log lines")
        error_text = "; ".join(parts)
    rows = [
        (
            "jobs / measured / chats / images per job",
            f"{n} / {r['measured_jobs']} / {r['chats']} / "
            + "/".join(str(c) for c in r["config"]["counts"]),
            "",
        ),
        (
            "jobs with every image delivered",
            f"{r['delivered_jobs']} / {n}" + _mark(r["delivered_jobs"] == n),
            "all",
        ),
        (
            "wall time, commands → last job final",
            f"{r['elapsed_seconds']:.1f} s" + (" (timed out)" if r["timed_out"] else ""),
            "",
        ),
        (
            "command → status reply, p50 / p95 / p99",
            _three(s, ".0f", " ms") + _mark(status_ok),
            f"p99 ≤ {status_target:.0f} ms",
        ),
        *(
            [
                (
                    "… album with the command (after ALBUM_WAIT_SECONDS, 1 s), p50 / p95 / p99",
                    _three(album, ".0f", " ms"),
                    "",
                )
            ]
            if (album := r.get("album_status_latency_ms")) and album.get("p50") is not None
            else []
        ),
        (
            "RunComfy completed → first image, p50 / p95 / p99",
            _three(o, ".2f", " s") + _mark(overhead_ok),
            f"p50 ≤ {TARGET_OVERHEAD_P50_S} s, p95 ≤ {TARGET_OVERHEAD_P95_S} s",
        ),
        (f"… in poll intervals ({poll:g} s)", _three(o, ".2f", " ×", 1 / poll), ""),
        (
            "bot peak RSS (VmHWM)",
            _fmt(bot["peak_rss_mb"], ".0f", " MB") + _mark(ok(bot["peak_rss_mb"], TARGET_RSS_MB)),
            f"≤ {TARGET_RSS_MB:.0f} MB",
        ),
        (
            "bot CPU, total (start-up + run)",
            f"{_fmt(cpu_total, '.1f', ' s')} ({bot['cpu_seconds_startup']:.1f} s + "
            f"{_fmt(cpu_run, '.1f', ' s')})",
            "",
        ),
        (
            "bot CPU per job, whole process (exec to exit, every job pushed)",
            f"{_fmt(bot['cpu_ms_per_job_lifetime'], '.1f', ' ms')} "
            f"({_fmt(bot['cpu_seconds_lifetime'], '.1f', ' s')} ÷ {n}; in the kernel "
            f"{_fmt(bot.get('cpu_seconds_lifetime_system'), '.1f', ' s')})"
            + _mark(ok(bot["cpu_ms_per_job_lifetime"], TARGET_CPU_MS_PER_JOB)),
            f"≤ {TARGET_CPU_MS_PER_JOB:.0f} ms",
        ),
        (
            "bot CPU per job, total (run only)",
            f"{_fmt(per_job, '.1f', ' ms')} ({_fmt(per_job_run, '.1f', ' ms')})"
            + _mark(ok(per_job, TARGET_CPU_MS_PER_JOB)),
            f"≤ {TARGET_CPU_MS_PER_JOB:.0f} ms",
        ),
        ("RunComfy requests per job", rc_line, ""),
        (
            "status + result requests vs budget (duration ÷ poll + 3, + 1 result fetch)",
            f"{_fmt(None if within is None else within * 100, '.1f', '%')} of jobs within; "
            f"mean actual {_fmt(b['mean_actual'], '.1f')} vs budget "
            f"{_fmt(b['mean_budget'], '.1f')} (ratio {_fmt(b['mean_ratio'], '.2f')})"
            + _mark(None if within is None else within == 1.0),
            "every job within",
        ),
        ("Telegram requests per job", tg_line + f"; total {sum(tg.values()) / n:.2f}", ""),
        (
            "Telegram requests with a chat_id per second, over the run",
            f"{r['telegram_chat_requests_per_second']:.1f}",
            "",
        ),
        ("errors", error_text, "none"),
        (
            "bot log WARNING lines",
            str(e["bot_log_warning_lines"]),
            "",
        ),
        (
            "machine over the run: all cores busy / CPU of other processes (noise)",
            f"{r['machine']['busy_fraction'] * 100:.0f} % / {_fmt(others, '.1f', ' s')} "
            f"over {r['machine']['wall_seconds']:.0f} s",
            "",
        ),
        (
            "CPU of the fakes (RunComfy process / driver with fake Telegram)",
            f"{r['fake_runcomfy_cpu_seconds']:.1f} s / {r['driver_cpu_seconds']:.1f} s",
            "",
        ),
    ]
    rows += _extra_rows(r)
    title = {"burst": f"{n} jobs", "steady": "steady", "longqueue": f"long queue, {n} jobs"}
    lines = [
        f"### {title.get(r['config']['mode'], n)}"
        + (f" ({r['config']['label']})" if r["config"]["label"] not in ("", "steady") else ""),
        "",
        "| metric | measured | target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b_} | {c} |" for a, b_, c in rows]
    return "\n".join(lines)


# ---- main -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--mode",
        default="burst",
        help="comma-separated: burst (N commands at once), steady (a Poisson stream), "
        "longqueue (N jobs held in one long RunComfy queue)",
    )
    parser.add_argument(
        "--jobs", default="10,100,1000", help="burst: comma-separated job counts, one run each"
    )
    steady = parser.add_argument_group("steady mode")
    steady.add_argument("--rate", type=float, default=3.0, help="commands a second (Poisson)")
    steady.add_argument("--duration", type=float, default=80.0, help="seconds measured")
    steady.add_argument("--warmup-seconds", type=float, default=20.0, help="seconds before that")
    steady.add_argument("--counts", default="2,4,6,4", help="images per command, in turn")
    steady.add_argument(
        "--refs-fraction",
        type=float,
        default=0.0,
        help="this share of commands come as an album of 2–3 photo references (1280 px, "
        "as Telegram serves them) with the command as its caption; the bot serves them at "
        "PUBLIC_URL on loopback and the fake RunComfy fetches each at submit",
    )
    queue = parser.add_argument_group("longqueue mode")
    queue.add_argument("--queue-jobs", type=int, default=10_000, help="jobs in the queue")
    queue.add_argument("--capacity", type=int, default=100, help="jobs the model runs at once")
    queue.add_argument(
        "--hold",
        type=float,
        default=None,
        help="seconds before the queue moves (default: queue-jobs ÷ 30 + 120: all are in first)",
    )
    parser.add_argument(
        "--py-spy",
        default="",
        metavar="PATH",
        help="run the bot under this py-spy executable (pip install py-spy into another venv): "
        "bench/results/<stamp>-<run>-py-spy.txt, all threads, native frames; slows the bot",
    )
    parser.add_argument(
        "--loop-lag",
        choices=("ticker", "debug"),
        default="",
        help="a 5 ms ticker on the bot's event loop: bench/results/<stamp>-<run>-loop-lag.json; "
        "debug: with asyncio's debug mode naming callbacks over 30 ms (it slows the bot)",
    )
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="run the bot under cProfile: bench/results/<stamp>-<run>.prof (slows it down)",
    )
    parser.add_argument(
        "--bot-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the bot (repeatable)",
    )
    parser.add_argument("--chats", type=int, default=MAX_CHATS, help="at most this many chats")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="POLL_INTERVAL_SECONDS")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per run after the commands (default: max(120, 0.3 × jobs))",
    )
    parser.add_argument("--seed", type=int, default=1, help="the fake RunComfy's timing seed")
    parser.add_argument(
        "--profile",
        choices=("realistic", "uniform", "model"),
        default=None,
        help="burst: the fake's timing, by image count and mode ±15%% (realistic, the default), "
        "uniform 5–30 s, or model (steady's: queued 0–4 s, 2 s + 1.8 s per image, lognormal 15%%)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="jobs run (and reported) first, so the bot has a history; 0: start cold",
    )
    parser.add_argument("--image-pool", type=int, default=8, help="pre-rendered JPEGs per size")
    parser.add_argument("--log-level", default="INFO", help="the bot's LOG_LEVEL")
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    return parser.parse_args(argv)


async def _run_plan(
    plan: list[dict[str, Any]],
    args: argparse.Namespace,
    db_path: Path,
    stamp: str,
    bot_env: dict[str, str],
    runs: list[dict[str, Any]],
) -> None:
    """Run each step of the plan in turn, appending its result to ``runs``."""
    for run_index, step in enumerate(plan):
        jobs = step["jobs"]
        timeout = step.get("timeout", max(120.0, 0.3 * jobs))
        cfg = RunConfig(
            run_index=run_index,
            jobs=jobs,
            chats=args.chats,
            poll_interval=args.poll_interval,
            profile=step["profile"],
            db_path=db_path,
            timeout=args.timeout if args.timeout is not None else timeout,
            seed=args.seed,
            image_pool=args.image_pool,
            log_level=args.log_level,
            out_dir=RESULTS,
            stamp=stamp,
            mode=step.get("mode", "burst"),
            label=step.get("label", ""),
            counts=step.get("counts", (IMAGES_PER_JOB,)),
            rate=args.rate,
            duration=args.duration,
            warmup_seconds=args.warmup_seconds,
            capacity=args.capacity,
            hold=step.get("hold", 0.0),
            bot_env=bot_env,
            py_spy=args.py_spy,
            cprofile=args.cprofile,
            refs_fraction=args.refs_fraction if step.get("mode") == "steady" else 0.0,
            loop_lag=args.loop_lag,
        )
        result = await run_once(cfg)
        runs.append(result)
        print(table(result) + "\n", flush=True)


async def amain(args: argparse.Namespace) -> int:
    counts = [int(x) for x in args.jobs.split(",") if x.strip()]
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    for m in modes:
        if m not in ("burst", "steady", "longqueue"):
            raise SystemExit(f"unknown mode {m!r}")
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM stops the bench like Ctrl+C does: the children are stopped on the way out.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"[bench] machine: {info}", file=sys.stderr)
    runs = []
    db_path = Path(tempfile.mkdtemp(prefix="seqbot-bench-db-")) / "seqbot.sqlite3"
    bot_env = dict(kv.split("=", 1) for kv in args.bot_env)
    step_counts = tuple(int(x) for x in args.counts.split(","))
    plan: list[dict[str, Any]] = []
    first = modes[0]
    if args.warmup and first != "steady":  # steady warms up within its own stream
        warm_profile = "model" if first == "longqueue" else (args.profile or "realistic")
        plan.append({"jobs": args.warmup, "profile": warm_profile, "label": "warm-up"})
    for m in modes:
        if m == "burst":
            plan += [{"jobs": j, "profile": args.profile or "realistic"} for j in counts]
        elif m == "steady":
            plan.append(
                {
                    "mode": "steady",
                    "jobs": 0,
                    "profile": "model",
                    "counts": step_counts,
                    "label": "steady",
                    "timeout": args.warmup_seconds + args.duration + 120,
                }
            )
        else:
            n = args.queue_jobs
            hold = args.hold if args.hold is not None else n / 30 + 120
            plan.append(
                {
                    "mode": "longqueue",
                    "jobs": n,
                    "profile": "queue",
                    "label": f"longqueue-{n}",
                    "hold": hold,
                    "timeout": hold + 0.25 * n + 300,
                }
            )
    try:
        await _run_plan(plan, args, db_path, stamp, bot_env, runs)
    finally:
        # The bot keeps every image it sent (originals/): 10,000 jobs leave ~40 GB behind.
        shutil.rmtree(db_path.parent, ignore_errors=True)
    if not args.no_json:
        path = RESULTS / f"{stamp}.json"
        path.write_text(json.dumps({"machine": info, "runs": runs}, indent=1) + "\n")
        print(f"[bench] raw numbers: {path.relative_to(ROOT)}", file=sys.stderr)
    return 0 if all(r["error_count"] == 0 for r in runs) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("[bench] interrupted; child processes stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
