"""Load benchmark: the real ``python -m bot`` process with many jobs in flight at once.

Run from the project folder (takes about 2 minutes per 1,000 jobs, plus start-up)::

    .venv/bin/python bench/run.py --jobs 10,100,1000

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
import re
import signal
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
        return self.proc.pid

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
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                print(f"[bench] {self.name} ignored SIGTERM; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


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
        self._seen = 0

    def add(self, job: JobRecord) -> None:
        self.jobs[(job.chat_id, job.message_id)] = job

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
        job = self.jobs.get((chat, mid)) if mid is not None else None
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
            "all_images": sum(j.images >= IMAGES_PER_JOB for j in jobs),
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


async def run_once(cfg: RunConfig) -> dict[str, Any]:
    """Start the fakes and the bot, push the commands, wait, measure, stop everything."""
    tmp = Path(tempfile.mkdtemp(prefix=f"seqbot-bench-{cfg.jobs}-"))
    run_started = time.time()
    bot_log = cfg.out_dir / f"{cfg.stamp}-{cfg.jobs}jobs-bot.log"
    rc_log = tmp / "runcomfy.log"
    fake_tg = FakeTelegram(token=TG_TOKEN, keep_file_bytes=False)
    rc = Child(
        "fake RunComfy",
        [
            sys.executable,
            *("-m", "tests.fakes.runcomfy_api", "--token", RC_TOKEN, "--port", "0"),
            *("--profile", cfg.profile, "--seed", str(cfg.seed)),
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
        }
        bot_log.write_bytes(b"")
        bot = Child("bot", [sys.executable, "-m", "bot"], env, bot_log)
        started = time.monotonic()
        await bot.start()
        await fake_tg.wait_for(lambda: fake_tg.calls_to("getUpdates"), timeout=60)
        startup_s = time.monotonic() - started
        at_ready = proc_stats(bot.pid)
        rc_cpu_ready = proc_stats(rc.pid).cpu_seconds
        driver_cpu_ready = self_cpu()

        observer = Observer(fake_tg)
        chats = min(cfg.jobs, cfg.chats)
        for n in range(cfg.jobs):
            # Fresh chat ids per run: the database is shared, and (chat, message) makes one job.
            chat_id = FIRST_CHAT + cfg.run_index * 10_000 + n % chats
            pushed_at = time.time()
            update = fake_tg.send_text(
                f"/seq {IMAGES_PER_JOB} {PROMPT.format(n=n)}", chat_id=chat_id
            )
            mid = update["message"]["message_id"]
            observer.add(JobRecord(n, chat_id, mid, pushed_at))
        t0 = time.monotonic()
        samples, timed_out = await _wait(cfg, observer, bot, t0)
        elapsed = time.monotonic() - t0

        bot_alive = bot.running
        end = proc_stats(bot.pid) if bot_alive else None
        rc_cpu = proc_stats(rc.pid).cpu_seconds - rc_cpu_ready
        driver_cpu = self_cpu() - driver_cpu_ready
        async with httpx.AsyncClient(timeout=30) as http:
            rc_report = (await http.get(f"{rc_url}/_bench/jobs")).json()
    finally:
        bot_code = await bot.stop() if bot is not None else None
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
            "bot_at_ready": asdict(at_ready),
            "bot_at_end": asdict(end) if end else None,
            "fake_runcomfy_cpu_seconds": rc_cpu,
            "driver_cpu_seconds": driver_cpu,
            "samples": samples,
            "bot_log": str(bot_log.relative_to(ROOT)),
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


async def _wait(
    cfg: RunConfig, observer: Observer, bot: Child, t0: float
) -> tuple[list[dict[str, Any]], bool]:
    """Until every job's status message is final, the bot dies, or the timeout; with samples."""
    samples: list[dict[str, Any]] = []
    next_sample = 0.0
    while True:
        await asyncio.sleep(0.2)
        observer.update()
        now = time.monotonic() - t0
        progress = observer.progress()
        done = progress["final"] >= cfg.jobs
        if now >= next_sample or done or not bot.running:
            stats = proc_stats(bot.pid) if bot.running else None
            sample = {"t": round(now, 1), **progress}
            if stats:
                sample |= {"cpu_s": round(stats.cpu_seconds, 2), "rss_mb": round(stats.rss_mb, 1)}
            samples.append(sample)
            print(f"[bench] {cfg.jobs} jobs: {sample}", file=sys.stderr, flush=True)
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
    status_ms = [v for j in jobs if (v := j.status_latency_ms) is not None]
    overhead = [v for j in jobs if (v := j.overhead_s) is not None]
    budgets = [
        (j.rc_requests.get("status", 0), b)
        for j in jobs
        if (b := j.status_budget(cfg.poll_interval)) is not None and j.first_image_at is not None
    ]

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
    missing_images = sum(j.images < IMAGES_PER_JOB for j in jobs)
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
        "chats": min(n, cfg.chats),
        "images_per_job": IMAGES_PER_JOB,
        "delivered_jobs": n - missing_images,
        "status_latency_ms": pcts(status_ms),
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
        },
        "runcomfy_requests": dict(rc_calls),
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


# ---- the table ------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".0f", unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def _three(p: dict[str, Any], spec: str, unit: str, scale: float = 1.0) -> str:
    vals = [p.get(k) for k in ("p50", "p95", "p99")]
    return " / ".join(_fmt(None if v is None else v * scale, spec) for v in vals) + unit


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def table(r: dict[str, Any]) -> str:
    n, poll = r["jobs"], r["config"]["poll_interval"]
    s, o, b, bot = r["status_latency_ms"], r["delivery_overhead_s"], r["status_budget"], r["bot"]
    cpu_total, cpu_run = bot["cpu_seconds_total"], bot["cpu_seconds_run"]
    per_job = None if cpu_total is None else cpu_total / n * 1000
    per_job_run = None if cpu_run is None else cpu_run / n * 1000
    rc, tg = r["runcomfy_requests"], r["telegram_requests"]
    rc_line = ", ".join(
        f"{k} {rc[k] / n:.2f}" for k in ("submit", "status", "result", "image", "cancel") if k in rc
    )
    tg_line = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(tg.items(), key=lambda kv: -kv[1]))
    within = None if not b["jobs"] else b["within"] / b["jobs"]

    def ok(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    status_ok = ok(s["p99"], TARGET_STATUS_P99_MS)
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
        ("jobs in flight / chats / images per job", f"{n} / {r['chats']} / {IMAGES_PER_JOB}", ""),
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
            f"p99 ≤ {TARGET_STATUS_P99_MS:.0f} ms",
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
            "bot CPU per job, total (run only)",
            f"{_fmt(per_job, '.1f', ' ms')} ({_fmt(per_job_run, '.1f', ' ms')})"
            + _mark(ok(per_job, TARGET_CPU_MS_PER_JOB)),
            f"≤ {TARGET_CPU_MS_PER_JOB:.0f} ms",
        ),
        ("RunComfy requests per job", rc_line, ""),
        (
            "status requests vs budget (duration ÷ poll + 3)",
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
            "CPU of the fakes (RunComfy process / driver with fake Telegram)",
            f"{r['fake_runcomfy_cpu_seconds']:.1f} s / {r['driver_cpu_seconds']:.1f} s",
            "",
        ),
    ]
    lines = [f"### {n} jobs", "", "| metric | measured | target |", "|---|---|---|"]
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
        "--jobs", default="10,100,1000", help="comma-separated job counts, one run each"
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
        choices=("realistic", "uniform"),
        default="realistic",
        help="generating time: by image count and mode ±15%% (realistic), or uniform 5–30 s",
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


async def amain(args: argparse.Namespace) -> int:
    counts = [int(x) for x in args.jobs.split(",") if x.strip()]
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
    for run_index, jobs in enumerate(([args.warmup] if args.warmup else []) + counts):
        cfg = RunConfig(
            run_index=run_index,
            jobs=jobs,
            chats=args.chats,
            poll_interval=args.poll_interval,
            profile=args.profile,
            db_path=db_path,
            timeout=args.timeout if args.timeout is not None else max(120.0, 0.3 * jobs),
            seed=args.seed,
            image_pool=args.image_pool,
            log_level=args.log_level,
            out_dir=RESULTS,
            stamp=stamp,
        )
        result = await run_once(cfg)
        runs.append(result)
        print(table(result) + "\n", flush=True)
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
