"""The real ``python -m bot`` process: SIGKILL at awkward moments, SIGTERM, and its logs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Job, Status, Store
from tests.conftest import RC_TOKEN, TG_TOKEN
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    followups,
    status_messages,
)

ROOT = Path(__file__).resolve().parents[1]


READY = "seqbot is receiving updates"


class BotProcess:
    """``python -m bot`` in a child process, its output collected in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self._skip = 0  # output of earlier processes in the same file

    async def spawn(self) -> BotProcess:
        """Start the process without waiting for anything."""
        base = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_URL"))}
        self._skip = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                env={**base, **self.env, "PYTHONPATH": str(ROOT)},
                cwd=self.log.parent,
                stdout=out,
                stderr=out,
            )
        return self

    async def start(self, telegram: FakeTelegram) -> BotProcess:
        """Start the process and wait until it has really started: it said so, and polled."""
        polls = telegram.polls_received
        await self.spawn()
        await telegram.wait_for(lambda: READY in self.output() or self.exited(), timeout=30)
        assert READY in self.output(), f"the bot did not start:\n{self.output()}"
        # A long poll has reached the fake (it ends only a second later, or with an update).
        await telegram.wait_for(lambda: telegram.polls_received > polls, timeout=30)
        return self

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), 15.0)

    def output(self) -> str:
        """What this process printed (not the processes before it in the same file)."""
        with self.log.open("rb") as f:
            f.seek(self._skip)
            return f.read().decode(errors="replace")


async def _run_until_final(
    telegram: FakeTelegram, env: dict[str, str], log: Path, stop: signal.Signals = signal.SIGTERM
) -> Job:
    """Start the bot again, let it finish the job, stop it; it stops cleanly."""
    again = await BotProcess(env, log).start(telegram)
    try:
        job: Job = await telegram.wait_for(
            lambda: (j := read_job(env)) and j.final and j, timeout=30
        )
    finally:
        again.terminate(stop)
        assert await again.wait() == 0
    assert "Traceback" not in again.output()
    return job


@pytest.fixture
async def process_env(
    tmp_path: Path, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> AsyncIterator[dict[str, str]]:
    env = {
        "TELEGRAM_BOT_TOKEN": TG_TOKEN,
        "RUNCOMFY_API_TOKEN": RC_TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "RUNCOMFY_API_BASE_URL": runcomfy.base_url,
        "DATABASE_PATH": str(tmp_path / "seqbot.sqlite3"),
        "POLL_INTERVAL_SECONDS": "0.02",  # as in-process: scripted jobs last tenths of a second
        "HTTP_TIMEOUT_SECONDS": "5",
        "LOG_LEVEL": "DEBUG",
    }
    yield env


def read_job(env: dict[str, str], job_id: int = 1) -> Job | None:
    store = Store(Path(env["DATABASE_PATH"]))
    try:
        return store.get(job_id)
    finally:
        store.close()


async def finish_after_restart(
    telegram: FakeTelegram, env: dict[str, str], tmp_path: Path, killed: BotProcess
) -> Job:
    """Start the bot again and wait for job 1 to end; then stop it cleanly."""
    assert await killed.wait() == -signal.SIGKILL
    job = await _run_until_final(telegram, env, tmp_path / "bot.log")
    return job


def images_in_chat(telegram: FakeTelegram) -> list[str]:
    return [m["sha256"] for m in telegram.delivered_media]


@pytest.mark.parametrize("moment", ["queued", "running"])
async def test_sigkill_while_queued_or_running_then_restart_delivers_once(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    process_env: dict[str, str],
    tmp_path: Path,
    moment: str,
) -> None:
    runcomfy.script_next(JobScript(queued_polls=20, running_polls=20))
    bot = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 4 a fox")
    (fake_job,) = await runcomfy.wait_for(lambda: list(runcomfy.jobs.values()))
    polls = 5 if moment == "queued" else 25
    await runcomfy.wait_for(lambda: fake_job.polls >= polls, timeout=30)
    bot.kill()

    job = await finish_after_restart(telegram, process_env, tmp_path, bot)

    assert job.status == Status.DONE
    assert runcomfy.count("submit") == 1
    assert fake_job.result_fetches == 1
    images = images_in_chat(telegram)
    assert len(images) == 4 and len(set(images)) == 4
    assert len(status_messages(telegram)) == 1  # one status message, kept and edited
    assert len(followups(telegram)) == 1
    assert telegram.errors == []


async def test_sigkill_between_the_two_albums_of_fifteen_sends_only_the_second(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, process_env: dict[str, str], tmp_path: Path
) -> None:
    # The second album meets a long flood wait: the process is killed while it waits.
    telegram.rate_limit_next("sendMediaGroup", retry_after=30, times=1, skip=1)
    bot = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 15 a flip-book of a bouncing ball")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup")) == 2, timeout=30)
    assert len(images_in_chat(telegram)) == 8
    bot.kill()

    job = await finish_after_restart(telegram, process_env, tmp_path, bot)

    assert job.status == Status.DONE
    images = images_in_chat(telegram)
    assert len(images) == 15 and len(set(images)) == 15
    assert [len(c.params["media"]) for c in telegram.calls_to("sendMediaGroup", ok_only=True)] == [
        8,
        7,
    ]
    assert runcomfy.count("submit") == 1


async def test_sigkill_during_submit_is_not_resubmitted_and_the_user_is_told(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, process_env: dict[str, str], tmp_path: Path
) -> None:
    runcomfy.timeout_delay = 20.0
    runcomfy.fail_next("submit", "timeout")
    bot = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 2 a fox")
    await telegram.wait_for(lambda: (j := read_job(process_env)) and j.status == Status.SUBMITTING)
    bot.kill()

    job = await finish_after_restart(telegram, process_env, tmp_path, bot)

    assert job.status == Status.FAILED
    assert "not sent again, to avoid charging twice" in (job.error or "")
    assert job.submit_unknown == 1  # it may have been billed: it counts toward the limits
    assert runcomfy.count("submit") <= 1
    assert telegram.history[(job.chat_id, job.status_message_id or 0)][-1].startswith("❌ Failed")


async def test_sigterm_stops_cleanly_and_the_job_resumes(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, process_env: dict[str, str], tmp_path: Path
) -> None:
    runcomfy.script_next(JobScript(queued_polls=30, running_polls=5))
    bot = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 2 a fox")
    (fake_job,) = await runcomfy.wait_for(lambda: list(runcomfy.jobs.values()))
    await runcomfy.wait_for(lambda: fake_job.polls >= 3)
    started = time.monotonic()
    bot.terminate()
    assert await bot.wait() == 0
    assert time.monotonic() - started < 10
    assert read_job(process_env).status == Status.QUEUED  # type: ignore[union-attr]

    await _run_until_final(telegram, process_env, tmp_path / "bot.log", signal.SIGINT)
    assert len(images_in_chat(telegram)) == 2


async def test_debug_logs_name_each_state_and_never_a_token(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, process_env: dict[str, str], tmp_path: Path
) -> None:
    runcomfy.fail_next("status", "500")
    bot = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 2 a fox")
    await telegram.wait_for(lambda: (j := read_job(process_env)) and j.final, timeout=30)
    telegram.send_text("/seq 99 bad input")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMessage")) == 3)
    bot.terminate()
    assert await bot.wait() == 0

    output = bot.output()
    assert TG_TOKEN not in output and RC_TOKEN not in output
    assert TG_TOKEN.split(":")[1] not in output
    assert "DEBUG" in output  # the level really was DEBUG
    job = read_job(process_env)
    assert job is not None
    for state in ("queued", "running", "sending", "done"):
        assert f"job 1 {state} (request {job.request_id}, chat {job.chat_id})" in output
    assert f"database {tmp_path / 'seqbot.sqlite3'}" in output
    assert runcomfy.base_url in output


@pytest.mark.parametrize("method", ["getMe", "deleteWebhook"])
async def test_sigterm_during_start_up_stops_cleanly_and_the_job_resumes_later(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    process_env: dict[str, str],
    tmp_path: Path,
    method: str,
) -> None:
    # getMe: initialize; deleteWebhook: the job is already resumed. (The command menu does not
    # hold start-up: test_startup.)
    runcomfy.script_next(JobScript(queued_polls=10**6))  # held in RunComfy's queue for now
    first = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 2 a fox")
    (fake_job,) = await runcomfy.wait_for(lambda: list(runcomfy.jobs.values()))
    await telegram.wait_for(lambda: (j := read_job(process_env)) and j.status == Status.QUEUED)
    first.terminate()
    assert await first.wait() == 0

    telegram.delay_next(method, 10.0)
    starting = await BotProcess(process_env, tmp_path / "bot.log").spawn()
    await telegram.wait_for(lambda: telegram.faults_pending(method) == 0, timeout=30)
    stopped = time.monotonic()
    starting.terminate()
    assert await starting.wait() == 0
    assert time.monotonic() - stopped < 5
    output = starting.output()
    assert "Traceback" not in output, output
    assert READY not in output
    job = read_job(process_env)
    assert job is not None and job.status == Status.QUEUED
    assert job.request_id == fake_job.request_id

    fake_job.script.queued_polls = fake_job.polls  # RunComfy starts it now
    job = await _run_until_final(telegram, process_env, tmp_path / "bot.log")
    assert job.status == Status.DONE
    assert runcomfy.count("submit") == 1
    assert len(images_in_chat(telegram)) == 2
    assert telegram.errors == []


async def test_sigterm_during_a_submit_lets_it_finish_and_the_job_is_delivered_after_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, process_env: dict[str, str], tmp_path: Path
) -> None:
    # RunComfy answers the POST only once the bot is stopping (within HTTP_TIMEOUT_SECONDS, 5):
    # it has the job, and bills it, whatever the bot does meanwhile.
    runcomfy.hold("submit")
    runcomfy.script_next(JobScript(queued_polls=3))
    bot = await BotProcess(process_env, tmp_path / "bot.log").start(telegram)
    telegram.send_text("/seq 2 a fox")
    await runcomfy.wait_for(lambda: runcomfy.in_flight("submit") == 1)
    bot.terminate()
    await runcomfy.wait_for(
        lambda: "waiting for RunComfy to answer 1 submit" in bot.output() or bot.exited()
    )
    runcomfy.release("submit")
    assert await bot.wait() == 0
    assert "Traceback" not in bot.output()

    (fake_job,) = await runcomfy.wait_for(lambda: list(runcomfy.jobs.values()))
    job = read_job(process_env)
    assert job is not None and job.status == Status.QUEUED  # not "unclear"
    assert job.request_id == fake_job.request_id and job.submit_unknown == 0

    job = await _run_until_final(telegram, process_env, tmp_path / "bot.log")
    assert job.status == Status.DONE
    assert runcomfy.count("submit") == 1
    assert len(images_in_chat(telegram)) == 2
    assert len(status_messages(telegram)) == 1
    assert telegram.errors == []
