"""The /seq path end to end: the real Application against both loopback fakes."""

from __future__ import annotations

import pytest

from bot.store import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    assert_clean,
    followups,
    media,
    menu_set,
    status_history,
    status_messages,
    until_final,
)

CHAT = 123456789


async def test_four_images_arrive_as_one_album_replying_to_the_command(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=2, running_polls=2))
    command = telegram.send_text("/seq 4 16:9 a lighthouse through four seasons")

    job = await until_final(telegram, bot)

    assert job.status == Status.DONE
    # The status message replies to the command and walked through every state, no repeats.
    first = telegram.calls_to("sendMessage")[0].params
    assert first["reply_parameters"]["message_id"] == command["message"]["message_id"]
    assert first["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "v1:cancel:1"
    history = status_history(telegram, job)
    assert [h.split("\n")[0] for h in history] == [
        "⏳ Queued…",
        "⏳ Queued (position 2)…",
        "⏳ Queued (position 1)…",
        "🎨 Generating… 0:00",
        # No "📤 Sending 4 images…": the album came within SENDING_EDIT_DELAY_SECONDS.
        history[-1].split("\n")[0],
    ]
    assert history[-1].startswith("✅ Done: 4 images in ")
    assert telegram.buttons(CHAT, job.status_message_id or 0) == []
    # One album of four photos, replying to the command, caption on the first item only.
    albums = telegram.calls_to("sendMediaGroup", ok_only=True)
    assert len(albums) == 1
    items = albums[0].params["media"]
    assert [i["type"] for i in items] == ["photo"] * 4
    assert items[0]["caption"] == "a lighthouse through four seasons\n\n4 images · 16:9 · fast"
    assert all("caption" not in i for i in items[1:])
    assert albums[0].params["reply_parameters"]["message_id"] == command["message"]["message_id"]
    assert len(media(telegram, "photo")) == 4
    # RunComfy got exactly one submit with the schema's strings, and one result fetch.
    (fake_job,) = runcomfy.jobs.values()
    assert fake_job.payload == {
        "text": "Generate 4 images: a lighthouse through four seasons",
        "sequential_image_generation_options": 4,
        "image_size": "2560:1440 (16:9)",
        "optimize_prompt_options": "fast",
        "sequential_image_generation": "auto",
    }
    assert runcomfy.count("submit") == 1
    assert fake_job.result_fetches == 1
    assert job.request_id == fake_job.request_id
    assert job.cost == pytest.approx(0.12)
    assert_clean(telegram, runcomfy)


async def test_one_image_is_sent_as_a_photo(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(single_image_form=True))
    telegram.send_text("/seq 1 1:1 seed=42 mode=standard a red fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    (photo,) = telegram.calls_to("sendPhoto", ok_only=True)
    assert photo.params["caption"] == "a red fox\n\n1 image · 1:1 · standard · seed 42"
    assert telegram.calls_to("sendMediaGroup") == []
    payload = next(iter(runcomfy.jobs.values())).payload
    assert payload["seed"] == 42 and payload["image_size"] == "2048:2048 (1:1)"
    assert payload["text"] == "Generate 1 image: a red fox"
    assert_clean(telegram, runcomfy)


async def test_fifteen_images_arrive_as_two_balanced_albums(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 15 9:16 a flip-book of a bouncing ball")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    albums = telegram.calls_to("sendMediaGroup", ok_only=True)
    assert [len(a.params["media"]) for a in albums] == [8, 7]
    captions = [i.get("caption") for a in albums for i in a.params["media"]]
    assert captions[0] is not None and captions[1:] == [None] * 14
    assert len(media(telegram, "photo")) == 15
    # Each image exactly once.
    assert len({m["sha256"] for m in media(telegram)}) == 15
    assert job.delivered == [0, 1] and job.delivered_images == 15
    assert_clean(telegram, runcomfy)


async def test_fewer_images_than_asked_are_delivered_and_said(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(images=3))
    telegram.send_text("/seq 5 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 3
    assert "The model returned 3 of the 5 images asked for." in status_history(telegram, job)[-1]


async def test_oversized_image_goes_as_a_document_and_a_broken_one_is_reported(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(bad_images={1: "huge", 3: "not_image"}))
    telegram.send_text("/seq 4 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram, "photo")) == 2  # one album of the two good photos
    assert len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 1
    (document,) = telegram.calls_to("sendDocument", ok_only=True)
    assert "caption" not in document.params
    final = status_history(telegram, job)[-1]
    assert final.startswith("✅ Done: 3 images")
    assert "1 image could not be delivered (image 4: the file was not an image)" in final
    assert_clean(telegram, runcomfy)


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/seq 0 a cat", "The number of images must be 1–15 (you gave 0)."),
        ("/seq 99 a cat", "The number of images must be 1–15 (you gave 99)."),
        ("/seq 5:4 a cat", "Use one of: 1:1 4:3 3:4 16:9 9:16 3:2 2:3 21:9."),
        ("/seq seed=x a cat", "Seed must be a whole number from 0 to 2147483647"),
        ("/seq mode=ultra a cat", "mode must be one of: fast, standard"),
        ("/seq colour=red a cat", "Unknown option colour=."),
        ("/seq 4 16:9", "Add a prompt after the options"),
        ("/seq 4 Generate 3 images of a cat", "You asked for 4 images but the prompt says 3."),
        ("/seq " + "x" * 600, "Your prompt is 19 characters too long"),
        ("/seq", "/seq [count] [ratio] [seed=N] [mode=fast|standard] prompt"),
        ("/seq@SeqImageBot", "Examples:"),
    ],
)
async def test_bad_input_gets_a_friendly_reply_and_nothing_is_submitted(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, text: str, reply: str
) -> None:
    command = telegram.send_text(text)
    (answer,) = await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    assert reply in answer.params["text"]
    assert answer.params["reply_parameters"]["message_id"] == command["message"]["message_id"]
    assert "reply_markup" not in answer.params
    assert runcomfy.count("submit") == 0
    assert bot.store.unfinished() == []
    assert_clean(telegram, runcomfy)


async def test_prompt_that_states_its_count_is_sent_as_is(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 3:2 Generate six images of a tea ceremony, one step each")
    job = await until_final(telegram, bot)
    assert job.count == 6
    payload = next(iter(runcomfy.jobs.values())).payload
    assert payload["text"] == "Generate six images of a tea ceremony, one step each"
    assert payload["sequential_image_generation_options"] == 6
    assert payload["image_size"] == "2496:1664 (3:2)"
    assert len(media(telegram)) == 6


async def test_an_edited_command_starts_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 4 a fox", edited=True)
    telegram.send_text("/help")  # a marker: once it is answered, the edit was handled too
    await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    assert len(telegram.calls_to("sendMessage")) == 1
    assert runcomfy.count("submit") == 0
    assert bot.store.get(1) is None


async def test_start_and_help_explain_and_commands_are_registered(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await menu_set(bot)
    assert [c["command"] for c in telegram.commands] == [
        "seq", "cancel", "jobs", "show", "usage", "settings", "help"
    ]  # fmt: skip
    telegram.send_text("/start")
    (answer,) = await telegram.wait_for(lambda: telegram.calls_to("sendMessage", ok_only=True))
    assert "Seedream" in answer.params["text"] and "/seq 4 16:9" in answer.params["text"]


async def test_cancel_while_queued_cancels_at_runcomfy(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 4 a fox")
    job = await telegram.wait_for(
        lambda: (j := bot.store.get(1)) and j.queue_position is not None and j
    )
    assert job.status_message_id is not None
    press = telegram.press_button((CHAT, job.status_message_id), "v1:cancel:1")

    job = await until_final(telegram, bot)
    assert job.status == Status.CANCELLED
    query_id = press["callback_query"]["id"]
    await telegram.wait_for(lambda: query_id in telegram.callback_answers)
    assert telegram.callback_answers[query_id].get("text") == "Cancelled."
    assert next(iter(runcomfy.jobs.values())).cancelled
    assert status_history(telegram, job)[-1].startswith("🚫 Cancelled.")
    assert telegram.buttons(CHAT, job.status_message_id or 0) == []
    assert media(telegram) == []
    assert_clean(telegram, runcomfy)


async def test_cancel_once_running_says_it_is_too_late(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # The bot still shows "queued" (its status polls fail) while RunComfy already runs the job.
    runcomfy.script_next(JobScript(queued_seconds=0.0, running_seconds=1.0))
    runcomfy.fail_next("status", "503", times=4)
    telegram.send_text("/seq 2 a fox")
    job = await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id and j)
    assert job.status == Status.QUEUED
    press = telegram.press_button((CHAT, job.status_message_id or 0), "v1:cancel:1")
    query_id = press["callback_query"]["id"]
    await telegram.wait_for(lambda: query_id in telegram.callback_answers)
    assert telegram.callback_answers[query_id]["text"].startswith("Too late")
    assert runcomfy.count("cancel") == 1

    job = await until_final(telegram, bot)
    assert job.status == Status.DONE and len(media(telegram)) == 2
    # A tap on the stale button after the end is answered too, and calls nothing.
    late = telegram.press_button((CHAT, job.status_message_id or 0), "v1:cancel:1")
    await telegram.wait_for(lambda: late["callback_query"]["id"] in telegram.callback_answers)
    assert telegram.callback_answers[late["callback_query"]["id"]]["text"] == (
        "This job has already finished."
    )
    assert runcomfy.count("cancel") == 1
    assert_clean(telegram, runcomfy)


async def test_forged_and_unknown_buttons_are_answered(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 2 a fox")
    job = await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.request_id and j)
    ids = [
        telegram.press_button((CHAT, job.status_message_id or 0), data)["callback_query"]["id"]
        # An unknown job, a forged id, a button from before the version prefix, not ours at all.
        for data in ("v1:cancel:999", "v1:cancel:abc", "cancel:1", "garbage")
    ]
    await telegram.wait_for(lambda: all(i in telegram.callback_answers for i in ids))
    assert {telegram.callback_answers[i]["text"] for i in ids} == {"This button no longer works."}
    assert runcomfy.count("cancel") == 0


async def test_failed_job_says_why(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(outcome="failed", error={"message": "Content was flagged"}))
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.FAILED
    assert status_history(telegram, job)[-1].startswith("❌ Failed: Content was flagged.")
    assert media(telegram) == []
    assert_clean(telegram, runcomfy)


@pytest.mark.parametrize(
    "fault", ["500", "502", "503", "429", "broken_json", "error_code_200", "disconnect", "timeout"]
)
async def test_transient_status_errors_are_retried(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, fault: str
) -> None:
    runcomfy.timeout_delay = 1.5  # longer than the bot's 1 s HTTP timeout in tests
    # A 429 asks for a short wait here (honouring it is tested on its own): only the retry counts.
    runcomfy.fail_next("status", fault, times=3, retry_after=0.05)
    runcomfy.fail_next("result", fault, times=1, retry_after=0.05)
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 2
    assert runcomfy.count("submit") == 1
    # A "timeout" call is recorded when the fake finally answers, after the bot gave up on it.
    await runcomfy.wait_for(lambda: sum(c.fault == fault for c in runcomfy.calls) == 4)
    assert_clean(telegram, runcomfy)


async def test_deadline_reports_timed_out_and_cancels_a_queued_job(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    bot = await bots.start(JOB_DEADLINE_SECONDS="0.3")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    await bots.stop()
    assert job.status == Status.TIMED_OUT
    assert status_history(telegram, job)[-1].startswith("⌛ Timed out")
    assert runcomfy.count("cancel") == 1


async def test_a_restart_resumes_an_unfinished_job_and_delivers_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    runcomfy.script_next(JobScript(queued_polls=15, running_polls=5))
    first = await bots.start()
    telegram.send_text("/seq 3 a fox")
    await telegram.wait_for(lambda: (j := first.store.get(1)) and j.queue_position)
    await bots.stop(first)
    second = await bots.start()
    job = await until_final(telegram, second)
    await bots.stop(second)
    assert job.status == Status.DONE
    assert len(media(telegram)) == 3
    assert runcomfy.count("submit") == 1
    assert len(status_messages(telegram)) == 1  # the status message was not posted again
    assert len(followups(telegram)) == 1
    assert_clean(telegram, runcomfy)


async def test_a_bad_runcomfy_token_is_explained_and_nothing_retried(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(RUNCOMFY_API_TOKEN="wrong")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    await bots.stop()
    assert job.status == Status.FAILED
    assert "RunComfy access is not working" in status_history(telegram, job)[-1]
    assert runcomfy.count("submit") == 1
    assert runcomfy.jobs == {}


async def test_under_flood_limits_only_final_states_are_edited(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # As if many messages always waited in the rate limiter: progress edits give way.
    bot = await bots.start(TELEGRAM_BUSY_AT="0")
    runcomfy.script_next(JobScript(queued_polls=3, running_polls=3))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    history = status_history(telegram, job)
    assert len(history) == 2  # the first reply and the final state, nothing in between
    assert history[-1].startswith("✅ Done")
    assert len(media(telegram)) == 2
