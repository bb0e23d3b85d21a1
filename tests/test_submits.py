"""Submits whose outcome must be exact: a rate-limit wait, a stop, a cancel and a gateway's answer.

A job is "unclear" only when the bot truly cannot know whether RunComfy took it; everything else
is sent after a restart, delivered, or cancelled at RunComfy.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bot.store import Job, Status, Store
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import (
    answered,
    assert_clean,
    media,
    status_history,
    status_messages,
    until_final,
)


def _jobs(path: Path) -> list[Job]:
    """Every job SQLite has (read while no bot runs)."""
    store = Store(path)
    try:
        ids = [row["id"] for row in store.db.query("SELECT id FROM jobs ORDER BY id")]
        return [job for job_id in ids if (job := store.get(job_id))]
    finally:
        store.close()


def _queued(bot: RunningBot, jobs: int) -> list[int]:
    """Which of jobs 1..``jobs`` RunComfy has queued."""
    found = (bot.store.get(job_id) for job_id in range(1, jobs + 1))
    return [job.id for job in found if job is not None and job.status == Status.QUEUED]


async def finally_shows(telegram: FakeTelegram, job: Job, start: str) -> list[str]:
    """Wait until the job's status message shows a text that starts with ``start`` (the edit
    follows the state on disk); returns every text it showed."""
    await telegram.wait_for(lambda: status_history(telegram, job)[-1].startswith(start))
    return status_history(telegram, job)


# ---- 1. waiting for a RunComfy rate-limit slot is not "being sent" ----------------------------


async def test_jobs_waiting_for_a_rate_limit_slot_at_a_stop_are_sent_after_the_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # One request in ten seconds: the first job's submit takes the only slot, the next two wait
    # for theirs. Slow polls: nothing else waits for a slot meanwhile.
    bot = await bots.start(
        RUNCOMFY_MAX_REQUESTS_PER_SECOND="0.1",
        POLL_INTERVAL_SECONDS="30",
        MAX_ACTIVE_JOBS_PER_USER="3",
    )
    for animal in ("fox", "cat", "owl"):
        telegram.send_text(f"/seq 2 a {animal}")
    # Whichever job's status message is posted first takes the slot (the three are posted at
    # once); it is queued at RunComfy, the other two wait.
    await telegram.wait_for(lambda: len(_queued(bot, 3)) == 1 and bot.runner.client.waiting == 2)
    assert runcomfy.count("submit") == 1
    await bots.stop(bot)

    # RunComfy never saw the other two: they are still new, not "unclear".
    states = [job.status for job in _jobs(bot.settings.database_path)]
    assert states.count(Status.QUEUED) == 1 and states.count(Status.NEW) == 2
    restarted = await bots.start(MAX_ACTIVE_JOBS_PER_USER="3")
    jobs = [await until_final(telegram, restarted, job_id) for job_id in (1, 2, 3)]
    assert [j.status for j in jobs] == [Status.DONE] * 3
    assert [j.submit_unknown for j in jobs] == [0, 0, 0]
    assert runcomfy.count("submit") == 3  # each once
    assert len(media(telegram)) == 6
    assert len(status_messages(telegram)) == 3  # one each, kept across the restart
    assert_clean(telegram, runcomfy)


async def test_a_stop_while_the_submitting_state_waits_for_a_locked_database_leaves_it_new(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    telegram.delay_next("sendMessage", 1.5)  # the status message: time to take the lock
    bot = await bots.start(HTTP_TIMEOUT_SECONDS="3")
    telegram.send_text("/seq 2 a fox")
    await telegram.wait_for(lambda: bot.store.get(1))
    # Another process holds the write lock: "submitting" waits in memory, and the POST for it.
    other = sqlite3.connect(bot.settings.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        await telegram.wait_for(lambda: bot.store.pending.get(1, {}).get("status") == "submitting")
        await bot.runner.stop()  # what stopping the bot does first (again, harmlessly, below)
    finally:
        other.rollback()
        other.close()
    await bots.stop(bot)  # the waiting changes are written as the store closes
    assert runcomfy.count("submit") == 0
    assert [job.status for job in _jobs(bot.settings.database_path)] == [Status.NEW]

    restarted = await bots.start()
    job = await until_final(telegram, restarted)
    assert job.status == Status.DONE and job.submit_unknown == 0
    assert runcomfy.count("submit") == 1


# ---- 2. a stop lets a submit already sent finish ----------------------------------------------
# (The real process under SIGTERM: tests/test_process.py.)


async def test_a_stop_waits_for_a_submit_in_flight_at_most_the_http_timeout(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    runcomfy.timeout_delay = 10.0  # RunComfy answers long after the bot's timeout
    runcomfy.fail_next("submit", "timeout")
    bot = await bots.start(HTTP_TIMEOUT_SECONDS="1")
    telegram.send_text("/seq 2 a fox")
    await runcomfy.wait_for(lambda: runcomfy.in_flight("submit") == 1)
    started = time.monotonic()
    await bots.stop(bot)
    took = time.monotonic() - started

    assert 0.5 < took < 8.0  # the POST's own timeout (1 s), not RunComfy's ten seconds
    (job,) = _jobs(bot.settings.database_path)
    # The outcome is known to be unknown, and the chat was told so before the bot stopped.
    assert job.status == Status.FAILED and job.submit_unknown == 1
    assert "not sent again, to avoid charging twice" in (job.error or "")
    assert status_history(telegram, job)[-1].startswith("❌ Failed")


# ---- 3. a Cancel tapped during the submit, and RunComfy's cancel fails ------------------------


async def _cancel_during_the_submit(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, **extra: str
) -> None:
    """Start a job and tap Cancel while its submit is on its way; then RunComfy answers it."""
    runcomfy.hold("submit")
    runcomfy.script_next(JobScript(queued_polls=10**6))  # it would wait in RunComfy's queue
    bot = await bots.start(**extra)
    telegram.send_text("/seq 2 a fox")
    await runcomfy.wait_for(lambda: runcomfy.in_flight("submit") == 1)
    job = bot.store.get(1)
    assert job is not None and job.status_message_id is not None
    update = telegram.press_button((ADA_ID, job.status_message_id), "v1:cancel:1")
    assert (await answered(telegram, update))["text"] == "Cancelling…"
    runcomfy.release("submit")


async def test_a_cancel_that_fails_after_the_submit_is_tried_again_at_the_next_poll(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # RunComfy's cancel fails every retry once the submit is answered; the next one works.
    runcomfy.fail_next("cancel", "500", times=4)
    await _cancel_during_the_submit(
        telegram, runcomfy, bots, STARS_PACKS="10:75", FREE_IMAGES_PER_DAY="10"
    )
    bot = bots.running[-1]
    job = await until_final(telegram, bot)

    assert job.status == Status.CANCELLED
    (fake_job,) = runcomfy.jobs.values()
    assert fake_job.cancelled  # not left running (and billed) at RunComfy
    assert runcomfy.count("cancel") == 5
    shown = await finally_shows(telegram, job, "🚫 Cancelled")
    assert any(text.startswith("⏳ Cancelling…") for text in shown)  # not "Queued" meanwhile
    assert bot.store.reservation(1) == ("returned", 0, 2)
    assert runcomfy.count("submit") == 1


async def test_a_cancel_that_keeps_failing_still_ends_at_the_deadline(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    runcomfy.fail_ratio("cancel", "500", 1.0)
    await _cancel_during_the_submit(telegram, runcomfy, bots, JOB_DEADLINE_SECONDS="1")
    job = await until_final(telegram, bots.running[-1])

    assert job.status == Status.TIMED_OUT
    assert runcomfy.count("cancel") > 4  # asked again after the first four tries failed
    await finally_shows(telegram, job, "⌛ Timed out")


# ---- 4. a gateway's 502 or 504 to a submit: RunComfy may have the job -------------------------


@pytest.mark.parametrize("fault", ["502", "504"])
async def test_a_gateway_error_to_a_submit_is_an_unknown_outcome_never_resent(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, fault: str
) -> None:
    # RunComfy made (and bills) the job; the gateway in front of it lost the answer.
    runcomfy.fail_next("submit", fault, late=True)
    bot = await bots.start(STARS_PACKS="10:75", FREE_IMAGES_PER_DAY="10")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)

    assert job.status == Status.FAILED and job.request_id is None
    assert job.submit_unknown == 1  # counted as spent toward the limits
    assert "unclear whether the job started" in (job.error or "")
    assert "not sent again, to avoid charging twice" in (job.error or "")
    await finally_shows(telegram, job, "❌ Failed")
    assert bot.store.reservation(1) == ("reserved", 0, 2)  # kept, as after a timeout
    assert runcomfy.count("submit") == 1 and len(runcomfy.jobs) == 1


async def test_other_server_errors_to_a_submit_still_mean_nothing_was_charged(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    runcomfy.fail_next("submit", "500")
    bot = await bots.start(STARS_PACKS="10:75", FREE_IMAGES_PER_DAY="10")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)

    assert job.status == Status.FAILED and job.submit_unknown == 0
    assert "did not start the job; nothing was charged" in (job.error or "")
    assert bot.store.reservation(1) == ("returned", 0, 2)
    assert runcomfy.count("submit") == 1 and runcomfy.jobs == {}


async def test_a_cancel_while_waiting_for_a_rate_limit_slot_ends_the_job_at_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(RUNCOMFY_MAX_REQUESTS_PER_SECOND="0.1", POLL_INTERVAL_SECONDS="30")
    telegram.send_text("/seq 2 a fox")
    telegram.send_text("/seq 2 a cat")
    # One job takes the only slot (whichever status message is posted first); the other waits.
    await telegram.wait_for(lambda: len(_queued(bot, 2)) == 1 and bot.runner.client.waiting == 1)
    (sent,) = _queued(bot, 2)
    job = bot.store.get(3 - sent)
    assert job is not None and job.status == Status.NEW and job.status_message_id is not None
    update = telegram.press_button((ADA_ID, job.status_message_id), f"v1:cancel:{job.id}")
    assert (await answered(telegram, update))["text"] == "Cancelled."

    job = await until_final(telegram, bot, job.id)
    assert job.status == Status.CANCELLED
    assert status_history(telegram, job)[-1].startswith("🚫 Cancelled")
    assert bot.runner.client.waiting == 0  # its place in the line was given up
    assert runcomfy.count("submit") == 1  # the other job's only
    assert job.id not in bot.runner.active
