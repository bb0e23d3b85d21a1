"""What RunComfy sends back is not trusted: counts, fields, links, redirects, bombs and slow servers.

Every address here is loopback. 127.0.0.2 stands for an internal service (a metadata endpoint, an
admin panel): the bot must never connect to it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.runcomfy import RunComfyClient
from bot.store import Status
from tests.conftest import RC_TOKEN, Bots, RunningBot
from tests.fakes.internal import InternalService
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import assert_clean, media, status_history, until_final

REFUSED = "the image link points to a place the bot does not download from"
MAX_ERROR_CHARS = 1000  # what the RunComfy client keeps of an error text


@pytest.fixture
async def internal() -> AsyncIterator[InternalService]:
    service = await InternalService().start()
    yield service
    await service.stop()


# ---- 6: no more images than were asked for, bounded fields ----------------------------------


async def test_no_more_images_than_were_asked_for(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runcomfy.script_next(JobScript(images=40))
    with caplog.at_level(logging.WARNING, logger="bot.jobs"):
        telegram.send_text("/seq 2 a fox")
        job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    assert runcomfy.count("image") == 2  # the other 38 are never fetched
    assert len(job.image_urls) == 2
    (line,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "job 1" in line and "38 dropped" in line
    assert_clean(telegram, runcomfy)


@pytest.mark.parametrize(
    "cost",
    [-0.06, math.inf, math.nan, True, 10**400, "0.06"],
    ids=["negative", "inf", "nan", "bool", "huge-int", "string"],
)
async def test_malformed_result_entries_are_dropped_and_a_bad_cost_is_not_kept(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, cost: Any
) -> None:
    too_long = "{base}/images/{rid}/0.jpeg?sig=" + "a" * 5000
    runcomfy.script_next(JobScript(urls={0: too_long, 1: 42}, cost=cost))
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert job.cost is None
    assert len(job.image_urls) == 1 and len(media(telegram)) == 1
    assert runcomfy.count("image") == 1
    assert "The model returned 1 of the 3 images asked for." in status_history(telegram, job)[-1]


async def test_a_long_error_text_is_capped(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.fail_next("submit", "422", message="The input is wrong. " * 250)
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    assert job.error is not None and "The input is wrong." in job.error
    assert len(job.error) <= MAX_ERROR_CHARS + 100


async def test_the_client_caps_a_failed_result_s_error(runcomfy: FakeRunComfy) -> None:
    runcomfy.script_next(
        JobScript(queued_polls=0, running_polls=0, outcome="failed", error="x" * 5000)
    )
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=2)
    try:
        submission = await client.submit({"text": "Generate 2 images of a fox.",
                                          "sequential_image_generation_options": 2})  # fmt: skip
        result = await client.result(submission.request_id)
    finally:
        await client.aclose()
    assert result.status == "failed"
    assert result.error is not None and len(result.error) <= MAX_ERROR_CHARS


# ---- 7: downloads go only where images live ---------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        lambda internal: JobScript(urls={1: internal.url("http")}),
        lambda internal: JobScript(urls={1: internal.url("https")}),
        lambda internal: JobScript(redirects={1: internal.url("http")}),
        lambda internal: JobScript(redirects={1: internal.url("https")}),
    ],
    ids=["link-http", "link-https", "redirect-http", "redirect-https"],
)
async def test_links_and_redirects_to_an_internal_service_are_never_followed(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    internal: InternalService,
    script: Callable[[InternalService], JobScript],
) -> None:
    runcomfy.script_next(script(internal))
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert internal.connections == 0
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    final = status_history(telegram, job)[-1]
    assert f"1 image could not be delivered (image 2: {REFUSED})" in final
    assert_clean(telegram, runcomfy)


async def test_a_link_with_credentials_is_refused_unfetched(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    with_credentials = runcomfy.base_url.replace("://", "://user:secret@") + "/images/{rid}/1.jpeg"
    runcomfy.script_next(JobScript(urls={1: with_credentials}))
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    assert runcomfy.count("image") == 2  # image 2's own link was never requested
    assert f"image 2: {REFUSED}" in status_history(telegram, job)[-1]


async def test_a_redirect_within_runcomfy_s_own_host_works_without_cookies_or_token(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # Image 1 answers 302 (setting a cookie) to image 2; the fake records any Cookie or
    # Authorization header on an image request as an error.
    runcomfy.script_next(JobScript(redirects={0: "{base}/images/{rid}/1.jpeg"}))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    assert runcomfy.count("image") == 3
    assert_clean(telegram, runcomfy)


# ---- 8: a decompression bomb spoils only itself -----------------------------------------------


async def test_a_decompression_bomb_spoils_only_itself(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(bad_images={1: "bomb"}))
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    final = status_history(telegram, job)[-1]
    assert "1 image could not be delivered (image 2: the image claims too many pixels)" in final


# ---- 9: every download has a deadline -------------------------------------------------------


async def test_a_dripping_download_is_cut_off_and_the_others_are_delivered(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bots: Bots,
) -> None:
    runcomfy.drip_interval = 0.05  # well inside the 1 s read timeout: only a deadline stops it
    bot = await bots.start(DOWNLOAD_TIMEOUT_SECONDS="0.5")
    runcomfy.script_next(JobScript(bad_images={1: "drip"}))
    started = time.monotonic()
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert time.monotonic() - started < 5
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    final = status_history(telegram, job)[-1]
    assert "image 2: the image took longer than 0.5 s to download" in final
