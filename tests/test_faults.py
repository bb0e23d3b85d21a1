"""Faults on both sides, hostile input and odd updates: every job ends well, the bot keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.store import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    assert_clean,
    followups,
    media,
    reply_to,
    status_history,
    status_messages,
    until_final,
)

ADA = 123456789
UPDATES = Path(__file__).parent / "data" / "updates"


# ---- RunComfy -------------------------------------------------------------------------------


async def test_faults_on_a_third_of_the_polls(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(MAX_ACTIVE_JOBS_PER_USER="3")
    runcomfy.default_script = JobScript(queued_polls=4, running_polls=4)
    runcomfy.fail_ratio("status", "503", 1 / 3, seed=1)
    runcomfy.fail_ratio("result", "broken_json", 1 / 3, seed=2)
    for n in range(3):
        telegram.send_text(f"/seq 2 a fox, take {n}")
    jobs = [await until_final(telegram, bot, job_id) for job_id in (1, 2, 3)]
    await bots.stop()
    assert [j.status for j in jobs] == [Status.DONE] * 3
    assert len(media(telegram)) == 6
    assert runcomfy.count("submit") == 3
    assert sum(c.fault == "503" for c in runcomfy.calls) >= 3
    assert_clean(telegram, runcomfy)


async def test_a_runcomfy_outage_longer_than_several_polls(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=3, running_polls=3))
    telegram.send_text("/seq 2 a fox")
    await runcomfy.wait_for(lambda: runcomfy.count("status") >= 1)
    await runcomfy.down()  # connections refused
    await asyncio.sleep(1.5)  # on purpose: the outage lasts ~75 poll intervals of 0.02 s
    assert bot.store.get(1).status == Status.QUEUED  # type: ignore[union-attr]
    await runcomfy.up()
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    assert runcomfy.count("submit") == 1


async def test_retry_after_is_honoured(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.fail_next("status", "429", retry_after=1)
    telegram.send_text("/seq 2 a fox")
    assert (await until_final(telegram, bot)).status == Status.DONE
    polls = [c for c in runcomfy.calls if c.endpoint == "status"]
    assert polls[0].status == 429
    assert polls[1].at - polls[0].at >= 0.9


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("402", "run out of balance"),
        ("401", "RunComfy access is not working"),
    ],
)
async def test_permanent_errors_are_explained_and_logged_once(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    said: str,
) -> None:
    runcomfy.fail_next("submit", fault, times=2)
    with caplog.at_level(logging.WARNING):
        telegram.send_text("/seq 2 a fox")
        first = await until_final(telegram, bot, 1)
        telegram.send_text("/seq 2 a cat")
        second = await until_final(telegram, bot, 2)
    for job in (first, second):
        assert job.status == Status.FAILED
        assert said in status_history(telegram, job)[-1]
    assert runcomfy.count("submit") == 2  # one each, never retried
    assert caplog.text.count("OPERATOR ACTION NEEDED") == 1


async def test_a_refused_submit_is_not_retried(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.fail_next("submit", "503")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    assert "did not start the job; nothing was charged" in (job.error or "")
    assert runcomfy.count("submit") == 1


async def test_bad_images_are_reported_and_the_others_delivered(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(bad_images={0: "404", 2: "truncated", 3: "not_image"}))
    telegram.send_text("/seq 5 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    final = status_history(telegram, job)[-1]
    assert "3 images could not be delivered" in final
    assert "image 1: the image link has expired (HTTP 404)" in final
    assert "image 3: the image was" in final
    assert "image 4: the file was not an image" in final


async def test_when_every_image_is_bad_the_job_fails_plainly(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(bad_images={0: "404", 1: "404"}))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    assert status_history(telegram, job)[-1].startswith("❌ Failed: No image could be delivered.")


# ---- Telegram -------------------------------------------------------------------------------


async def test_telegram_server_errors_on_sends_are_retried(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.fail_server_next("sendMediaGroup", times=2, status=502)
    telegram.fail_server_next("sendMessage", times=1, status=500)
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 3
    assert len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 1
    assert len(status_messages(telegram)) == 1 and len(followups(telegram)) == 1


async def test_a_telegram_timeout_on_a_send_is_retried(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # The fake stalls longer than the bot's 1 s timeout, then still delivers (as Telegram may):
    # the bot cannot know, so it sends again. At least once beats never; see the README.
    telegram.delay_next("sendPhoto", 1.5)
    telegram.send_text("/seq 1 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    # The stalled call is recorded when the fake answers it, which may be after the job ended.
    await telegram.wait_for(lambda: len(telegram.calls_to("sendPhoto")) == 2)
    assert len(media(telegram)) >= 1


async def test_a_user_who_blocked_the_bot_ends_the_job_without_a_retry_storm(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=5, running_polls=5))
    telegram.send_text("/seq 2 a fox")
    await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    telegram.block_chat(ADA)
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    # Nothing more is tried after the job ended: time for retries (the first after 0.05 s) and
    # polls (every 0.02 s) to show up passes on purpose, and neither fake sees any.
    telegram_calls, runcomfy_calls = len(telegram.calls), len(runcomfy.calls)
    await asyncio.sleep(0.5)
    assert [c.method for c in telegram.calls[telegram_calls:] if c.method != "getUpdates"] == []
    assert [c.endpoint for c in runcomfy.calls[runcomfy_calls:]] == []
    refused = [c for c in telegram.calls if c.status == 403]
    assert 1 <= len(refused) <= 2
    assert media(telegram) == []


async def test_a_deleted_status_message_does_not_stop_delivery(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=3, running_polls=3))
    telegram.send_text("/seq 2 a fox")
    (status,) = await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    telegram.user_delete_message(ADA, status.response["result"]["message_id"])
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    not_found = [c for c in telegram.calls_to("editMessageText") if c.status == 400]
    assert len(not_found) == 1  # it stops editing once the message is gone


# ---- hostile and odd input -------------------------------------------------------------------

HOSTILE = [
    ("/seq 2 🦊🌲 a fox 👣 in snow ❄️", None),
    ("/seq 2 ثعلب في الثلج عند الغروب", None),  # right-to-left
    ("/seq 2 a\u200bfox\u200d with zero\u2060width", None),
    (
        "/seq 2 <b>bold</b> & <script>alert(1)</script> *stars* _under_ [link](http://x) `code`",
        None,
    ),
    ("/seq 2 " + "a" * 4000, "Your prompt is 3419 characters too long"),
    ("/seq 4 16:9 seed=3 mode=standard", "Add a prompt after the options"),
    ("/seq 99999999999999999999999999 a fox", "The number of images must be 1–15"),
    ("/seq seed=-5 a fox", "Seed must be a whole number from 0 to 2147483647"),
    ("/seq seed=123456789012345678901234567890 a fox", "Seed must be a whole number"),
    ("/seq 1:0 a fox", "Aspect ratio 1:0 is not available"),
    ("/seq mode= a fox", "mode must be one of: fast, standard"),
    ("/seq@SeqImageBot", "/seq [count] [ratio]"),
]


@pytest.mark.parametrize(("text", "refusal"), HOSTILE)
async def test_hostile_input(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    text: str,
    refusal: str | None,
) -> None:
    command = telegram.send_text(text)
    if refusal is not None:
        assert refusal in await reply_to(telegram, command)
        assert runcomfy.count("submit") == 0
    else:
        job = await until_final(telegram, bot)
        assert job.status == Status.DONE
        prompt = text.removeprefix("/seq 2 ")
        caption = telegram.calls_to("sendMediaGroup", ok_only=True)[0].params["media"][0]
        assert caption["caption"].startswith(prompt)  # shown back exactly as written
    # No message of the bot uses a parse mode: user text is never interpreted as markup.
    assert all("parse_mode" not in c.params for c in telegram.calls)
    assert_clean(telegram, runcomfy)
    # And the bot keeps serving.
    telegram.send_text("/help")
    await telegram.wait_for(
        lambda: any(
            c.params.get("text", "").startswith("Hi!") for c in telegram.calls_to("sendMessage")
        )
    )


def odd_updates() -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = []
    for path in sorted(UPDATES.glob("*.json")):
        data = json.loads(path.read_text())
        updates += data if isinstance(data, list) else [data]
    group = {"id": -100777, "type": "supergroup", "title": "Odd"}
    updates += [
        # A message with no sender at all, a command in it.
        {"message": {"message_id": 5, "date": 1, "chat": group, "text": "/seq 2 a fox"}},
        # A callback from an inline message (no message, no chat).
        {
            "callback_query": {
                "id": "77",
                "from": {"id": 5, "is_bot": False, "first_name": "E"},
                "chat_instance": "1",
                "inline_message_id": "abc",
                "data": "v1:cancel:1",
            }
        },
        {"message": {"message_id": 6, "date": 1, "chat": group, "new_chat_members": []}},
        {"poll": {"id": "1", "question": "?", "options": [], "total_voter_count": 0}},
        {"update_id": 1},
    ]
    for update in updates:
        update.pop("update_id", None)
    return updates


async def test_odd_and_malformed_updates_never_crash_the_bot(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for update in odd_updates():
        telegram.push_update(update)
    command = telegram.send_text("/seq 2 a fox after the storm", chat_id=999)
    job = await telegram.wait_for(
        lambda: next(
            (
                j
                for j in bot.store.recent(999)
                if j.message_id == command["message"]["message_id"] and j.final
            ),
            None,
        )
    )
    assert job.status == Status.DONE
    assert "error while handling an update" not in caplog.text
    # The inline callback (no message) and the inaccessible one were both answered.
    await telegram.wait_for(
        lambda: {"77", "4278655576917205700"} <= telegram.callback_answers.keys()
    )
