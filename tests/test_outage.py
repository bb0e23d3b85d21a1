"""A bad minute (or hours) at Telegram: paid images wait it out, a restart resumes them, a
definite refusal ends the job at once, past the deadline they are kept for /show; odd answers to
status edits never spoil a tap. Through the real Application and the loopback fakes."""

from __future__ import annotations

import hashlib
import logging
import time

import pytest
from telegram.error import TelegramError
from telegram.request import BaseRequest

from bot.config import Settings
from bot.logs import setup_logging
from bot.store import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    answered,
    assert_clean,
    followups,
    media,
    reply_to,
    status_history,
    until_final,
)

ADA = 123456789
# Backoff from TELEGRAM_RETRY_SECONDS (0.05 in the tests) capped at 0.1 s: dozens of tries a
# few seconds; no test sleeps for real retry seconds.
FAST = {"TELEGRAM_RETRY_MAX_SECONDS": "0.1", "DELIVERY_DEADLINE_SECONDS": "60"}


def failed(telegram: FakeTelegram, method: str) -> list:
    return [c for c in telegram.calls_to(method) if c.status != 200]


def distinct_images(telegram: FakeTelegram) -> set[str]:
    return {m["sha256"] for m in media(telegram)}


async def test_a_delivery_waits_out_an_outage_longer_than_six_tries(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bots: Bots,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await bots.start(**FAST)
    # Ten failures in a row (502 pages, then connections dropped unanswered): the old code gave up
    # after six tries and failed the job with the images on disk.
    telegram.fail_server_next("sendMediaGroup", times=6, status=502)
    telegram.drop_next("sendMediaGroup", times=4)
    with caplog.at_level(logging.INFO):
        telegram.send_text("/seq 4 a lighthouse through four seasons")
        job = await until_final(telegram, bot)
    assert job.status == Status.DONE, job.error
    assert len(failed(telegram, "sendMediaGroup")) == 10
    assert len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 1
    assert len(media(telegram)) == 4 and len(distinct_images(telegram)) == 4
    assert len(followups(telegram)) == 1
    shown = status_history(telegram, job)
    assert not any(text.startswith("❌") for text in shown)
    # Meanwhile the status said why nothing arrived yet.
    assert any(
        text.startswith(
            "📤 Sending 4 images…\nTelegram is not taking them just now; the bot keeps "
            "trying until "
        )
        for text in shown
    )
    # Each retry line names the job, the method and the try; a proxy's HTML page stays out.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bot."))
    assert "job 1: sendMediaGroup failed (try 3): Bad Gateway (502)" in ours
    # Past the sixth, one try in ten is logged: hours of a try a minute stay readable.
    assert "job 1: sendMediaGroup failed (try 10): aiohttp.ServerDisconnectedError" in ours
    assert "(try 8)" not in ours and "<html>" not in ours
    assert_clean(telegram, runcomfy)


async def test_a_restart_during_an_outage_resumes_and_sends_only_what_is_left(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**FAST)
    # Fifteen images go as two albums; the first gets through, then Telegram goes away.
    telegram.fail_server_next("sendMediaGroup", times=100_000, skip=1)
    telegram.send_text("/seq 15 a fox in every season")
    await telegram.wait_for(lambda: len(failed(telegram, "sendMediaGroup")) >= 8)
    job = bot.store.get(1)
    assert job is not None and job.status == Status.SENDING and job.delivered == [0]
    await bots.stop(bot)

    telegram.recover()
    downloads = runcomfy.count("image")
    assert downloads == 15
    bot = await bots.start(**FAST)
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE, job.error
    albums = telegram.calls_to("sendMediaGroup", ok_only=True)
    assert len(albums) == 2  # the first album was not sent again
    assert len(media(telegram)) == 15 and len(distinct_images(telegram)) == 15
    assert len(followups(telegram)) == 1
    assert runcomfy.count("image") == downloads  # the rest came from the kept files
    assert_clean(telegram, runcomfy)


async def test_after_a_timeout_a_slow_telegram_gets_longer_to_answer_not_the_album_again(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**FAST)  # HTTP_TIMEOUT_SECONDS is 1
    # Telegram answers each album after 1.5 s, and takes it even when the bot stopped waiting.
    telegram.delay_next("sendMediaGroup", 1.5, times=3)
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup")) == 2)
    # The first try timed out (and arrived anyway); the second waited 2 s and got the answer. With
    # the same 1 s each time every try timed out and arrived: four albums of the same images.
    assert len({m["media_group_id"] for m in media(telegram)}) == 2
    assert telegram.faults_pending("sendMediaGroup") == 1  # no third try


@pytest.mark.parametrize(
    ("status", "description", "said"),
    [
        (403, "Forbidden: bot was blocked by the user", "The bot cannot post in this chat."),
        (400, "Bad Request: chat not found", "Last error: Chat not found"),
    ],
)
async def test_a_definite_refusal_ends_the_delivery_at_once(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bots: Bots,
    status: int,
    description: str,
    said: str,
) -> None:
    bot = await bots.start(**FAST)
    telegram.fail_server_next("sendMediaGroup", times=2, status=503)
    telegram.fail_next("sendMediaGroup", status=status, description=description)
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    assert said in (job.error or "")
    await telegram.wait_for(lambda: not bot.runner.active)
    assert len(telegram.calls_to("sendMediaGroup")) == 3  # two 503s waited out, then no more
    assert media(telegram) == []


async def test_past_the_deadline_the_images_are_kept_and_show_delivers_them_later(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(DELIVERY_DEADLINE_SECONDS="2", TELEGRAM_RETRY_MAX_SECONDS="0.1")
    telegram.fail_server_next("sendMediaGroup", times=100_000)
    telegram.send_text("/seq 4 a lighthouse through four seasons")
    job = await until_final(telegram, bot, 1)
    assert job.status == Status.FAILED
    assert job.finished_at is not None and job.completed_at is not None
    assert job.finished_at - job.completed_at >= 2.0  # it waited for the whole deadline
    assert media(telegram) == [] and followups(telegram) == []
    said = status_history(telegram, job)[-1]
    assert said.startswith(
        "❌ Failed: Telegram did not take the images before the delivery deadline. "
        "Last error: Bad Gateway (502) They are kept until "
    )
    assert "send /show 1 to get them." in said
    kept_dir = bot.settings.database_path.parent / "originals" / "1"
    kept = {int(p.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in kept_dir.iterdir()}
    assert sorted(kept) == [0, 1, 2, 3]

    fetched = runcomfy.count("image")
    telegram.recover()  # Telegram is back
    command = telegram.send_text("/show 1")
    (album,) = await telegram.wait_for(lambda: telegram.calls_to("sendMediaGroup", ok_only=True))
    assert album.files and runcomfy.count("image") == fetched  # uploaded from the kept files
    assert [m["sha256"] for m in media(telegram)] == [kept[i] for i in range(4)]
    assert album.params["reply_parameters"]["message_id"] == command["message"]["message_id"]
    assert album.params["media"][0]["caption"]  # the job's parameters, as in a delivery
    job = await telegram.wait_for(
        lambda: (
            (j := bot.store.get(1)) and j.status == Status.DONE and len(followups(telegram)) and j
        )
    )
    assert job.delivered == [0] and job.delivered_images == 4 and job.error is None
    await telegram.wait_for(
        lambda: status_history(telegram, job)[-1].startswith("✅ Done: 4 images")
    )

    # Delivered now: another /show (once REPEAT_WINDOW_SECONDS have passed: the clock of that
    # memory is moved on) sends Telegram's copies, uploads nothing, changes nothing.
    shows = bot.services.repeats.shows  # type: ignore[union-attr]
    shows.clock = lambda: time.monotonic() + bot.settings.repeat_window
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)
    again = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert again.files == {}
    assert len(followups(telegram)) == 1
    assert_clean(telegram, runcomfy)


# ---- answers of an unexpected shape ----------------------------------------------------------


async def test_an_unreadable_status_edit_answer_does_not_spoil_a_cancel(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 4 a fox")
    job = await telegram.wait_for(
        lambda: (j := bot.store.get(1)) and j.queue_position is not None and j
    )
    # From now on every edit is answered "ok" with something that is not a Message.
    telegram.answer_raw_next(
        "editMessageText", {"ok": True, "result": {"unexpected": "shape"}}, times=100_000
    )
    with caplog.at_level(logging.INFO):
        press = telegram.press_button((ADA, job.status_message_id or 0), "v1:cancel:1")
        answer = await answered(telegram, press)
        job = await until_final(telegram, bot)
    assert answer.get("text") == "Cancelled."
    assert job.status == Status.CANCELLED
    warnings = [r for r in caplog.records if "got an unexpected answer" in r.getMessage()]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "job 1: status edit got an unexpected answer" in caplog.text
    assert "error while handling an update" not in caplog.text


async def test_an_unreadable_answer_to_a_settings_redraw_does_not_spoil_the_tap(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await reply_to(telegram, telegram.send_text("/settings"))
    message = next(k for k in telegram.messages if telegram.buttons(*k) and k[0] == ADA)
    telegram.answer_raw_next("editMessageText", {"ok": True, "result": {"unexpected": "shape"}})
    with caplog.at_level(logging.INFO):
        answer = await answered(telegram, telegram.press_button(message, "v1:set:count:4"))
        await telegram.wait_for(lambda: "the message was not redrawn" in caplog.text)
    assert answer["text"] == "Saved."
    assert bot.store.chat_defaults(ADA).count == 4
    assert "error while handling an update" not in caplog.text
    assert telegram.errors == []  # no second answer to the tap ("Sorry, something went wrong")


def test_deadline_and_cap_are_settings() -> None:
    env = {"TELEGRAM_BOT_TOKEN": "7012345678:fake-test-token-0123456789", "RUNCOMFY_API_TOKEN": "x"}
    default = Settings.from_env(env)
    assert (default.delivery_deadline, default.telegram_retry_max) == (10800.0, 60.0)
    custom = Settings.from_env(
        {**env, "DELIVERY_DEADLINE_SECONDS": "600", "TELEGRAM_RETRY_MAX_SECONDS": "5"}
    )
    assert (custom.delivery_deadline, custom.telegram_retry_max) == (600.0, 5.0)


def test_an_error_page_is_one_line_of_ours_not_a_traceback_per_try(
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = ("", "httpx", "httpcore", "telegram.request.BaseRequest")
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg, lg.level, lg.handlers[:]) for lg in loggers]
    try:
        setup_logging(logging.INFO, [])
        with pytest.raises(TelegramError):
            BaseRequest.parse_json_payload(b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    finally:
        for lg, level, handlers in saved:
            lg.setLevel(level)
            lg.handlers[:] = handlers
    assert "Traceback" not in capsys.readouterr().err
