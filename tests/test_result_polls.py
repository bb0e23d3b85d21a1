"""A generating job is polled at RunComfy's /result: the poll that finds it done is its result."""

from __future__ import annotations

import logging

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

