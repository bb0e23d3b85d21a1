"""Submits whose outcome must be exact: a rate-limit wait, a stop, a cancel and a gateway's answer.

A job is "unclear" only when the bot truly cannot know whether RunComfy took it; everything else
is sent after a restart, delivered, or cancelled at RunComfy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.store import Status, Store
from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import assert_clean, media, status_history, status_messages, until_final

def stored_states(path: Path) -> list[str]:
    """Every job's state as SQLite has it (read while no bot runs)."""
    store = Store(path)
    try:
        return [str(row["status"]) for row in store.db.query("SELECT status FROM jobs ORDER BY id")]
    finally:
        store.close()


# ---- 1. waiting for a RunComfy rate-limit slot is not "being sent" ----------------------------


async def test_jobs_waiting_for_a_rate_limit_slot_at_a_stop_are_sent_after_the_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # One request a second: the first job's submit takes the only slot, the next two wait for
    # theirs. Slow polls: nothing else waits for a slot meanwhile.
    bot = await bots.start(
        RUNCOMFY_MAX_REQUESTS_PER_SECOND="1",
        POLL_INTERVAL_SECONDS="30",
        MAX_ACTIVE_JOBS_PER_USER="3",
    )
    for animal in ("fox", "cat", "owl"):
        telegram.send_text(f"/seq 2 a {animal}")
    await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.status == Status.QUEUED)
    await telegram.wait_for(lambda: bot.runner.client.waiting == 2)
    assert runcomfy.count("submit") == 1
    await bots.stop(bot)

    # RunComfy never saw jobs 2 and 3: they are still new, not "unclear".
    assert stored_states(bot.settings.database_path) == ["queued", "new", "new"]
    restarted = await bots.start(MAX_ACTIVE_JOBS_PER_USER="3")
    jobs = [await until_final(telegram, restarted, job_id) for job_id in (1, 2, 3)]
    assert [j.status for j in jobs] == [Status.DONE] * 3
    assert [j.submit_unknown for j in jobs] == [0, 0, 0]
    assert runcomfy.count("submit") == 3  # each once
    assert len(media(telegram)) == 6
    assert len(status_messages(telegram)) == 3  # one each, kept across the restart
    assert_clean(telegram, runcomfy)
