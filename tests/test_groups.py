"""Groups, permissions, spend control and flood control, through the real Application."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot import render
from bot.store import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    answered,
    assert_clean,
    followups,
    help_sent,
    media,
    reply_to,
    status_history,
    status_messages,
    until_final,
)

GROUP = -1001234567890
ADA = 123456789
BOB = 222333444
CAROL = 333444555
UPDATES = Path(__file__).parent / "data" / "updates"
GROUP_CHAT = {"id": GROUP, "title": "Image lab", "username": "imagelab_chat", "type": "supergroup"}
ANONYMOUS_ADMIN = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}


def example(name: str) -> dict[str, Any]:
    update: dict[str, Any] = json.loads((UPDATES / f"{name}.json").read_text())
    update.pop("update_id")
    return update


async def test_group_command_with_mention_in_a_topic_stays_in_the_topic(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=6, running_polls=3))
    command = telegram.send_text(
        "/seq@SeqImageBot 3 4:3 a lantern festival", chat_id=GROUP, message_thread_id=77
    )
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE and job.thread_id == 77
    (status,) = status_messages(telegram)
    assert status.params["message_thread_id"] == 77
    (followup,) = followups(telegram)
    assert followup.params["message_thread_id"] == 77
    assert status.params["reply_parameters"]["message_id"] == command["message"]["message_id"]
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    assert album.params["message_thread_id"] == 77
    assert all(m["message_thread_id"] == 77 for m in media(telegram))
    # In a group, queue-position changes within one state are not each worth an edit.
    firsts = [line.split("\n")[0] for line in status_history(telegram, job)]
    assert firsts[:3] == ["⏳ Queued…", "🎨 Generating… 0:00", firsts[2]]
    assert firsts[2].startswith("✅ Done")
    assert_clean(telegram, runcomfy)


async def test_commands_for_other_bots_and_plain_chatter_are_ignored(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.push_update(example("supergroup_command_for_other_bot"))
    telegram.push_update(example("supergroup_plain_message_from_user"))
    telegram.push_update(example("channel_post_command"))
    telegram.push_update(example("callback_query_inaccessible_message"))
    telegram.send_text("/help@SeqImageBot", chat_id=GROUP)
    await help_sent(telegram, GROUP)
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 1)
    assert len(telegram.calls_to("sendMessage")) == 1
    assert runcomfy.count("submit") == 0
    assert_clean(telegram, runcomfy)


async def test_example_group_command_and_anonymous_admin_command_both_run(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.push_update(example("group_command_with_botname"))
    telegram.push_update(example("supergroup_command_anonymous_admin"))
    await until_final(telegram, bot, 1)
    job = await until_final(telegram, bot, 2)
    assert runcomfy.count("submit") == 2
    anonymous = bot.store.get(2)
    assert anonymous is not None and anonymous.user_name == "Image lab"
    assert render.requester(anonymous, "en") == "an admin of Image lab"
    assert render.requester(anonymous, "ru") == "администратор Image lab"
    assert job.status == Status.DONE
    assert_clean(telegram, runcomfy)


async def test_a_reply_uses_the_replied_message_as_the_prompt(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    idea = telegram.send_text("a castle on a hill at dawn, then noon, then dusk", chat_id=GROUP)
    telegram.send_text(
        "/seq@SeqImageBot 3 1:1",
        chat_id=GROUP,
        user_id=BOB,
        reply_to_message_id=idea["message"]["message_id"],
    )
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    payload = next(iter(runcomfy.jobs.values())).payload
    assert payload["text"] == "Generate 3 images: a castle on a hill at dawn, then noon, then dusk"
    assert payload["image_size"] == "2048:2048 (1:1)"


async def test_cancel_refused_to_a_member_allowed_to_an_admin(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=ADA)
    job = await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id and j)
    key = (GROUP, job.status_message_id or 0)

    refused = await answered(telegram, telegram.press_button(key, "v1:cancel:1", user_id=CAROL))
    assert refused["show_alert"] is True
    assert refused["text"] == "Only @ada_l (who asked for this job) or a chat admin can cancel it."
    assert runcomfy.count("cancel") == 0

    telegram.set_member_status(GROUP, BOB, "administrator")
    allowed = await answered(telegram, telegram.press_button(key, "v1:cancel:1", user_id=BOB))
    assert allowed["text"] == "Cancelled."
    assert (await until_final(telegram, bot)).status == Status.CANCELLED
    assert runcomfy.count("cancel") == 1


async def test_an_anonymous_admin_cancels_with_the_command(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=ADA)
    await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id)
    member = telegram.send_text("/cancel@SeqImageBot 1", chat_id=GROUP, user_id=BOB)
    assert await reply_to(telegram, member) == (
        "Only @ada_l (who asked for this job) or a chat admin can cancel it."
    )
    anonymous = telegram.send_text(
        "/cancel@SeqImageBot 1", chat_id=GROUP, from_user=ANONYMOUS_ADMIN, sender_chat=GROUP_CHAT
    )
    assert await reply_to(telegram, anonymous) == "Job #1: Cancelled."
    assert (await until_final(telegram, bot)).status == Status.CANCELLED


async def test_cancel_command_without_id_takes_the_callers_latest_job(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    nothing = telegram.send_text("/cancel")
    assert await reply_to(telegram, nothing) == "You have no job here that can still be cancelled."
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 2 a fox")
    await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id)
    assert await reply_to(telegram, telegram.send_text("/cancel")) == "Job #1: Cancelled."
    unknown = telegram.send_text("/cancel 42")
    assert await reply_to(telegram, unknown) == "There is no job 42 in this chat."


async def test_buttons_of_another_chat_are_refused(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP)
    await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id)
    # Ada's private chat with the bot: a forged button naming the group's job.
    telegram.send_text("/help")
    private_message = await telegram.wait_for(
        lambda: next((k for k in telegram.messages if k[0] == ADA and k[1] > 1), None)
    )
    answer = await answered(telegram, telegram.press_button(private_message, "v1:cancel:1"))
    assert answer["text"] == "This button no longer works."
    assert runcomfy.count("cancel") == 0
    assert bot.store.get(1).status == Status.QUEUED  # type: ignore[union-attr]


async def test_daily_quota_refuses_with_what_is_left_and_usage_reports(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(DAILY_IMAGE_LIMIT_PER_USER="5")
    telegram.send_text("/seq 4 a fox")
    await until_final(telegram, bot)
    refused = telegram.send_text("/seq 2 a fox")
    text = await reply_to(telegram, refused)
    assert text.startswith("You have 1 of today's 5 images left; ask for 1 or fewer.")
    assert "resets at midnight UTC (in " in text
    usage = await reply_to(telegram, telegram.send_text("/usage"))
    assert usage.splitlines()[:3] == [
        "Today (UTC): 4 images, $0.12",
        "This month: 4 images, $0.12",
        usage.splitlines()[2],
    ]
    assert usage.splitlines()[2].startswith("Daily limit: 5 images, 1 left; resets in ")
    assert runcomfy.count("submit") == 1


async def test_bot_admins_are_exempt_and_see_every_chat(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(DAILY_IMAGE_LIMIT_PER_USER="1", ADMIN_USER_IDS=str(ADA))
    telegram.send_text("/seq 3 a fox")
    await until_final(telegram, bot)
    usage = await reply_to(telegram, telegram.send_text("/usage"))
    assert "As a bot admin you have no daily limit." in usage
    assert f"{ADA}: 1 job, 3 images, $0.09" in usage


async def test_active_job_caps(telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots) -> None:
    await bots.start(MAX_ACTIVE_JOBS_PER_USER="1", MAX_ACTIVE_JOBS_PER_CHAT="2")
    runcomfy.default_script = JobScript(queued_polls=10_000)
    telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=ADA)
    await runcomfy.wait_for(lambda: runcomfy.count("submit") == 1)
    again = telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=ADA)
    assert (await reply_to(telegram, again)).startswith("You already have 1 job in progress")
    telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=BOB)
    await runcomfy.wait_for(lambda: runcomfy.count("submit") == 2)
    third = telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=555)
    assert (await reply_to(telegram, third)).startswith("This chat already has 2 jobs in progress")
    assert runcomfy.count("submit") == 2


async def test_allowlists_refuse_in_one_line(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    await bots.start(ALLOWED_CHAT_IDS=str(GROUP), ALLOWED_USER_IDS=f"{ADA},{BOB}")
    private = telegram.send_text("/seq 2 a fox")
    assert await reply_to(telegram, private) == "Sorry, this bot is not available in this chat."
    stranger = telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=555)
    assert await reply_to(telegram, stranger) == "Sorry, this bot is not available to you."
    assert runcomfy.count("submit") == 0
    telegram.send_text("/seq@SeqImageBot 2 a fox", chat_id=GROUP, user_id=BOB)
    await runcomfy.wait_for(lambda: runcomfy.count("submit") == 1)


async def test_jobs_lists_the_chats_latest_jobs(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    empty = telegram.send_text("/jobs")
    assert await reply_to(telegram, empty) == "No jobs in this chat yet. Start one with /seq."
    runcomfy.script_next(JobScript(outcome="failed"))
    telegram.send_text("/seq 2 16:9 a fox")
    await until_final(telegram, bot, 1)
    telegram.send_text("/seq 3 9:16 a cat")
    await until_final(telegram, bot, 2)
    listing = await reply_to(telegram, telegram.send_text("/jobs"))
    assert listing.splitlines() == [
        "Latest jobs in this chat:",
        "#2 ✅ done · 3 images · 9:16 · just now · @ada_l",
        "#1 ❌ failed · 2 images · 16:9 · just now · @ada_l",
        "/show 2 sends a job's images again, free.",
    ]


async def test_the_same_message_delivered_twice_makes_one_job(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    update = telegram.send_text("/seq 2 a fox", push=False)
    telegram.push_update(dict(update))
    telegram.push_update(dict(update))
    await until_final(telegram, bot)
    telegram.send_text("/help")
    await help_sent(telegram, ADA)
    assert runcomfy.count("submit") == 1
    assert bot.store.get(2) is None
    assert len(media(telegram)) == 2


async def test_flood_limits_delay_delivery_but_never_drop_images(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(MAX_ACTIVE_JOBS_PER_CHAT="5")
    chats = [ADA, BOB, 555]
    telegram.rate_limit_next("sendMediaGroup", retry_after=1, times=2)
    telegram.album_retry_after_next(retry_after=1, delivered_before=2)
    for chat in chats:
        telegram.send_text("/seq 4 a fox", chat_id=chat)
    for job_id in (1, 2, 3):
        assert (await until_final(telegram, bot, job_id)).status == Status.DONE
    for chat in chats:
        delivered = [m for m in media(telegram) if m["chat_id"] == chat]
        assert len(delivered) == 4, chat
        assert len({m["sha256"] for m in delivered}) == 4
    assert len(telegram.calls_to("sendMediaGroup")) == 6  # 3 albums + 3 refused tries
    assert_clean(telegram, runcomfy)


async def test_an_album_cut_short_sends_only_the_rest(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.album_retry_after_next(retry_after=1, delivered_before=3)
    telegram.send_text("/seq 4 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 4 and len({m["sha256"] for m in media(telegram)}) == 4
    (rest,) = telegram.calls_to("sendPhoto", ok_only=True)
    assert "caption" not in rest.params


async def test_a_delivery_that_fails_for_good_is_reported(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.fail_next("sendMediaGroup", status=400, description="Bad Request: wrong file", times=1)
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    assert status_history(telegram, job)[-1].startswith("❌ Failed: Telegram refused the images.")
