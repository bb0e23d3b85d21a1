"""Spend past a limit, channel posters, button rules, odd digits and a locked database.

Each test goes through the real Application and both loopback fakes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

import pytest

from bot.store import Status
from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript, render_jpeg
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import answered, assert_clean, reply_to, status_history, until_final

GROUP = -1001234567890
ADA = 123456789
BOB = 222333444
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"}
NEWS = {"id": -1001111111111, "title": "News", "type": "channel"}
ART = {"id": -1002222222222, "title": "Art", "type": "channel"}


def as_channel(telegram: FakeTelegram, text: str, channel: dict[str, Any]) -> dict[str, Any]:
    """A message posted in the group "as a channel": every such message has the same sender."""
    return telegram.send_text(
        text, chat_id=GROUP, chat_type="supergroup", from_user=CHANNEL_BOT, sender_chat=channel
    )


# ---- 1. a submit whose outcome is unknown counts ---------------------------------------------


async def test_a_submit_without_an_answer_counts_toward_the_daily_limit(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # RunComfy answers after the bot's timeout: the job exists there and is billed.
    runcomfy.timeout_delay = 2.0
    runcomfy.fail_next("submit", "timeout")
    bot = await bots.start(DAILY_IMAGE_LIMIT_PER_USER="4")
    telegram.send_text("/seq 4 a fox")
    first = await until_final(telegram, bot)
    assert first.status == Status.FAILED and first.request_id is None
    assert first.submit_unknown == 1
    assert "not sent again, to avoid charging twice" in (first.error or "")

    second = telegram.send_text("/seq 4 a fox")
    assert (await reply_to(telegram, second)).startswith("You have used all 4 images of today's")
    usage = await reply_to(telegram, telegram.send_text("/usage"))
    assert "Today (UTC): 4 images" in usage
    assert "Daily limit: 4 images, 0 left" in usage
    assert "Counted as spent: 4 images whose request RunComfy did not answer" in usage
    await runcomfy.wait_for(lambda: runcomfy.count("submit") == 1)
    assert len(runcomfy.jobs) == 1  # the one RunComfy made (and billed); nothing more was sent


async def test_a_submit_without_an_answer_counts_as_active_until_the_deadline(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    runcomfy.timeout_delay = 2.0
    runcomfy.fail_next("submit", "timeout")
    bot = await bots.start(MAX_ACTIVE_JOBS_PER_USER="1", DAILY_IMAGE_LIMIT_PER_USER="0")
    telegram.send_text("/seq 2 a fox")
    assert (await until_final(telegram, bot)).submit_unknown == 1
    again = telegram.send_text("/seq 2 a fox")
    assert (await reply_to(telegram, again)).startswith("You already have 1 job in progress")
    # Once the deadline has passed, RunComfy has finished or dropped it: the cap is free again.
    with bot.store.db.conn:
        bot.store.db.execute("UPDATE jobs SET created_at = created_at - 3600 WHERE id = 1")
    telegram.send_text("/seq 2 a fox")
    assert (await until_final(telegram, bot, 2)).status == Status.DONE


# ---- 2 and 15. a locked database ---------------------------------------------------------------


class LoopLag:
    """The longest the event loop went without running a 10 ms ticker."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.worst = max(self.worst, now - last)
            last = now

    def __enter__(self) -> LoopLag:
        self._task = asyncio.ensure_future(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_request_id_the_database_refuses_is_logged_kept_and_written_later(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bots: Bots,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    runcomfy.timeout_delay = 0.5  # the submit is answered, slowly: time to take the lock
    runcomfy.fail_next("submit", "timeout")
    runcomfy.script_next(JobScript(queued_polls=5))
    bot = await bots.start(HTTP_TIMEOUT_SECONDS="10")
    command = telegram.send_text("/seq 2 a fox")
    await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.status == Status.SUBMITTING)

    # Another process (a backup, a sqlite shell) holds the write lock as RunComfy answers.
    other = sqlite3.connect(bot.settings.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with LoopLag() as lag:
            request_id = await runcomfy.wait_for(lambda: next(iter(runcomfy.jobs), None))
            notice = await telegram.wait_for(
                lambda: next(
                    (
                        c.params["text"]
                        for c in telegram.calls_to("sendMessage", ok_only=True)
                        if "accepted by RunComfy" in c.params["text"]
                        and c.params["reply_parameters"]["message_id"]
                        == command["message"]["message_id"]
                    ),
                    None,
                )
            )
            # The lock is held a while: polls and status edits go on meanwhile.
            polls, edits = runcomfy.count("status"), len(telegram.calls_to("editMessageText"))
            await runcomfy.wait_for(lambda: runcomfy.count("status") >= polls + 3)
            await telegram.wait_for(lambda: len(telegram.calls_to("editMessageText")) > edits)
    finally:
        other.rollback()
        other.close()

    assert notice.startswith(f"Job #1 was accepted by RunComfy (request {request_id})")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("job 1" in m and request_id in m for m in logged), logged
    assert lag.worst < 0.5  # the lock never held up the event loop for long
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    await telegram.wait_for(lambda: bot.store.pending == {}, timeout=5)  # retried within 2 s
    # What is on disk, read by a fresh connection: the request id was not lost.
    with sqlite3.connect(bot.settings.database_path) as fresh:
        row = fresh.execute("SELECT request_id, status FROM jobs WHERE id = 1").fetchone()
    assert row == (request_id, "done")
    assert runcomfy.count("submit") == 1
    assert_clean(telegram, runcomfy)


async def test_a_new_job_while_the_database_is_locked_is_refused_politely(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start()
    other = sqlite3.connect(bot.settings.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with LoopLag() as lag:
            refused = telegram.send_text("/seq 2 a fox")
            answer = await reply_to(telegram, refused)
    finally:
        other.rollback()
        other.close()
    assert answer == "The bot is busy for a moment and nothing was started. Please try again."
    assert lag.worst < 0.5
    assert runcomfy.count("submit") == 0
    telegram.send_text("/seq 2 a fox")
    assert (await until_final(telegram, bot)).status == Status.DONE


# ---- 3. people posting as a channel are different people -------------------------------------


async def test_channels_posting_in_a_group_have_their_own_quota_caps_and_cancel_rights(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # The group's own cap (by default the per-user limit, 4) is raised: each channel's quota here.
    bot = await bots.start(
        DAILY_IMAGE_LIMIT_PER_USER="4", DAILY_IMAGE_LIMIT_PER_CHAT="8", MAX_ACTIVE_JOBS_PER_USER="1"
    )
    runcomfy.script_next(JobScript(queued_polls=10_000))
    as_channel(telegram, "/seq@SeqImageBot 4 a fox", NEWS)
    await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id)
    runcomfy.script_next(JobScript(queued_polls=10_000))
    as_channel(telegram, "/seq@SeqImageBot 4 a bear", ART)  # not News's quota nor its cap
    await telegram.wait_for(lambda: (j := bot.store.get(2)) and j.request_id)
    assert (bot.store.get(1).requester_id, bot.store.get(2).requester_id) == (NEWS["id"], ART["id"])  # type: ignore[union-attr]

    more = as_channel(telegram, "/seq@SeqImageBot 1 a fox", NEWS)
    assert (await reply_to(telegram, more)).startswith("You already have 1 job in progress")
    usage = await reply_to(telegram, as_channel(telegram, "/usage@SeqImageBot", ART))
    assert "Today (UTC): 4 images" in usage and "0 left" in usage

    # Art may not cancel News's job, by number or as "my latest"; News may.
    foreign = as_channel(telegram, "/cancel@SeqImageBot 1", ART)
    assert (await reply_to(telegram, foreign)).startswith("Only News (who asked for this job)")
    own = as_channel(telegram, "/cancel@SeqImageBot", ART)
    assert await reply_to(telegram, own) == "Job #2: Cancelled."
    assert bot.store.get(1).status == Status.QUEUED  # type: ignore[union-attr]
    # A member tapping Cancel is a real person: neither channel, not an admin.
    job = bot.store.get(1)
    assert job is not None and job.status_message_id is not None
    tap = telegram.press_button((GROUP, job.status_message_id), "v1:cancel:1", user_id=BOB)
    assert (await answered(telegram, tap))["show_alert"]
    news = as_channel(telegram, "/cancel@SeqImageBot 1", NEWS)
    assert await reply_to(telegram, news) == "Job #1: Cancelled."
    assert runcomfy.count("submit") == 2


# ---- 13. odd digits --------------------------------------------------------------------------


async def test_odd_digits_in_ids_are_refused_not_crashed_on(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start()
    for raw in ("²", "#²", "١", "1²"):
        answer = await reply_to(telegram, telegram.send_text(f"/cancel {raw}"))
        assert answer == f"There is no job {raw} in this chat."
    settings = telegram.send_text("/settings")
    await reply_to(telegram, settings)
    key = max(k for k in telegram.messages if k[0] == ADA)
    for data in ("v1:set:count:²", "v1:set:count:١", "v1:again:²", "v1:cancel:١"):
        answer = await answered(telegram, telegram.press_button(key, data))
        assert answer["text"] == "This button no longer works.", data
    assert bot.store.chat_defaults(ADA).count is None
    assert telegram.errors == []


# ---- 10. every text is cut to Telegram's limits in one place ---------------------------------


async def test_every_text_the_bot_sends_is_cut_to_telegrams_limits(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start()
    tg = bot.app.bot
    sent = await tg.send_message(ADA, "x" * 5000)
    await tg.edit_message_text("é" * 4000 + "🎨" * 200, chat_id=ADA, message_id=sent.message_id)
    await tg.send_photo(ADA, photo=render_jpeg("x", 0, (64, 36), None), caption="y" * 2000)
    tap = telegram.press_button((ADA, sent.message_id), "nothing:1", push=False)
    await tg.answer_callback_query(tap["callback_query"]["id"], text="z" * 500)

    assert telegram.errors == []  # the fake refuses any text over Telegram's limits
    (message,) = telegram.calls_to("sendMessage", ok_only=True)
    assert len(message.params["text"]) == 4096 and message.params["text"].endswith("…")
    (edit,) = telegram.calls_to("editMessageText", ok_only=True)
    assert edit.params["text"].endswith("…") and edit.params["text"].startswith("é" * 4000)
    (photo,) = telegram.calls_to("sendPhoto", ok_only=True)
    assert len(photo.params["caption"]) == 1024
    assert len(telegram.callback_answers[tap["callback_query"]["id"]]["text"]) == 200


# ---- 8 and 9 after a restart: an image lost meanwhile spoils only itself ---------------------


async def test_an_image_lost_while_the_bot_was_stopped_spoils_only_itself(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # The second album meets a long flood wait; the bot stops while it waits.
    telegram.rate_limit_next("sendMediaGroup", retry_after=30, times=1, skip=1)
    first = await bots.start()
    telegram.send_text("/seq 15 a flip-book of a bouncing ball")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup")) == 2)
    await bots.stop(first)
    # Meanwhile the kept copy of the last image went, and so did its link at RunComfy.
    (fake_job,) = runcomfy.jobs.values()
    fake_job.script.bad_images[14] = "404"
    (first.runner.delivery.originals.folder / "1" / "14").unlink()

    second = await bots.start()
    job = await until_final(telegram, second)
    await bots.stop(second)
    assert job.status == Status.DONE and job.delivered_images == 14
    albums = telegram.calls_to("sendMediaGroup", ok_only=True)
    assert [len(a.params["media"]) for a in albums] == [8, 6]
    assert "1 image could not be delivered (image 15: the image link has expired" in (
        job.error or ""
    )
    assert "image 15" in status_history(telegram, job)[-1]
