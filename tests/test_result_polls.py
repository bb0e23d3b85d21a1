"""Polling at RunComfy: a generating job at /result (the poll that finds it done is its result);
polls that change nothing write nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.store import Status
from tests.conftest import RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import assert_clean, media, status_history, until_final


async def test_a_generating_job_is_polled_at_result_and_its_last_poll_brings_the_images(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=1, running_polls=3))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)

    assert job.status == Status.DONE
    assert len(media(telegram)) == 2 and len({m["sha256"] for m in media(telegram)}) == 2
    (fake_job,) = runcomfy.jobs.values()
    # /status while queued and until it is seen generating (queue, start); then /result only:
    # two "in_progress" answers and the one that lists the images. Before, the third to fifth
    # polls asked /status and a sixth request fetched the result.
    assert runcomfy.count("status") == 2
    assert runcomfy.count("result") == 3
    assert fake_job.polls == 5 and fake_job.result_fetches == 1
    results = [c for c in runcomfy.calls if c.endpoint == "result"]
    assert all(c.query == {"include_cost": "true"} and c.status == 200 for c in results)
    assert job.cost == pytest.approx(0.06)
    assert status_history(telegram, job)[-1].startswith("✅ Done: 2 images in ")
    assert_clean(telegram, runcomfy)


async def test_a_job_that_fails_while_generating_says_why_from_its_result_poll(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(
        JobScript(queued_polls=1, running_polls=2, outcome="failed", error={"message": "Flagged"})
    )
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)

    assert job.status == Status.FAILED
    assert status_history(telegram, job)[-1].startswith("❌ Failed: Flagged.")
    assert media(telegram) == []
    assert (runcomfy.count("status"), runcomfy.count("result")) == (2, 2)
    assert_clean(telegram, runcomfy)


async def test_a_refused_result_poll_goes_back_to_status_and_the_job_is_delivered(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Not what RunComfy documents for an unfinished job, but not a reason to lose a paid one.
    caplog.set_level(logging.WARNING, logger="bot")
    runcomfy.script_next(JobScript(queued_polls=1, running_polls=3))
    runcomfy.fail_next("result", "404")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)

    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    assert any("result poll refused" in r.getMessage() for r in caplog.records)
    # The refused one (which told the fake nothing), then /status: queued, started, two more
    # "in_progress" and "completed"; then the one fetch of the images.
    assert [c.status for c in runcomfy.calls if c.endpoint == "result"] == [404, 200]
    (fake_job,) = runcomfy.jobs.values()
    assert fake_job.result_fetches == 1
    assert runcomfy.count("status") == 5


async def test_polls_that_change_nothing_write_nothing(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Queued at place 1 for 0.6 s: about 30 status polls at the tests' 0.02 s interval, each the
    # same answer; then generating. Before, every poll wrote the job's row (and its time).
    writes: list[dict[str, Any]] = []
    real_write = bot.store._write

    def counted(job_id: int, row: dict[str, Any]) -> bool:
        writes.append(row)
        return real_write(job_id, row)

    monkeypatch.setattr(bot.store, "_write", counted)
    runcomfy.script_next(JobScript(queued_seconds=0.6, running_seconds=0.3))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)

    assert job.status == Status.DONE
    queued_polls = [
        c for c in runcomfy.calls if c.endpoint == "status" and c.at - runcomfy.calls[0].at < 0.5
    ]
    assert len(queued_polls) >= 8
    assert sum("queue_position" in row for row in writes) == 1
    assert sum(row.get("status") == Status.RUNNING for row in writes) == 1
