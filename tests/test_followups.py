"""Again / Originals / Details under the images, and /settings, through the real Application."""

from __future__ import annotations

import math
import shutil
from typing import Any

from bot.callbacks import JobAction
from bot.store import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    answered,
    assert_clean,
    followups,
    media,
    menu_set,
    reply_to,
    until_final,
)

ADA = 123456789
BOB = 222333444
GROUP = -1001234567890


async def finished_with_buttons(
    telegram: FakeTelegram, bot: RunningBot, text: str = "/seq 4 a fox", **kwargs: Any
) -> tuple[int, int]:
    """Run a job to the end; the (chat id, message id) of its follow-up message."""
    telegram.send_text(text, **kwargs)
    job = await until_final(telegram, bot, len(followups(telegram)) + 1)
    assert job.status == Status.DONE
    return (job.chat_id, job.actions_message_id or 0)


async def test_the_follow_up_carries_five_buttons_and_replies_to_the_command(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    command = telegram.send_text("/seq 2 a fox")
    await until_final(telegram, bot)
    (followup,) = followups(telegram)
    assert followup.params["reply_parameters"]["message_id"] == command["message"]["message_id"]
    key = (ADA, followup.response["result"]["message_id"])
    assert telegram.buttons(*key) == [
        ("🔁 Again", "v1:again:1"),
        ("📎 Originals", "v1:orig:1"),
        ("ℹ️ Details", "v1:info:1"),
        ("🗂 Sheet", "v1:sheet:1"),
        ("📦 ZIP", "v1:zip:1"),
    ]
    assert_clean(telegram, runcomfy)


async def test_again_runs_the_same_parameters_with_a_new_seed_once_per_message(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished_with_buttons(telegram, bot, "/seq 3 9:16 mode=standard a fox")
    answer = await answered(telegram, telegram.press_button(key, "v1:again:1"))
    assert answer["text"] == "Job #2: same settings, new seed."
    second = await until_final(telegram, bot, 2)
    assert second.status == Status.DONE
    first_payload, second_payload = (j.payload for j in runcomfy.jobs.values())
    assert {k: v for k, v in second_payload.items() if k != "seed"} == first_payload
    assert isinstance(second_payload["seed"], int)
    assert second.seed == second_payload["seed"]
    # The new job replies to the follow-up it came from; tapping that Again again starts nothing.
    assert second.message_id == key[1]
    again = await answered(telegram, telegram.press_button(key, "v1:again:1"))
    assert again["text"].startswith("Already started")
    assert runcomfy.count("submit") == 2


async def test_again_follows_the_quota_and_the_allowlist(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(DAILY_IMAGE_LIMIT_PER_USER="5", ALLOWED_USER_IDS=f"{ADA}")
    key = await finished_with_buttons(telegram, bot)
    refused = await answered(telegram, telegram.press_button(key, "v1:again:1"))
    assert refused["show_alert"] and "1 of today's 5 images left" in refused["text"]
    stranger = await answered(telegram, telegram.press_button(key, "v1:again:1", user_id=BOB))
    assert stranger["text"] == "Sorry, this bot is not available to you."
    details = await answered(telegram, telegram.press_button(key, "v1:info:1", user_id=BOB))
    assert details["text"] == "Sorry, this bot is not available to you."
    assert runcomfy.count("submit") == 1


async def test_originals_come_as_documents_without_downloading_again(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished_with_buttons(telegram, bot)
    downloads = runcomfy.count("image")
    photos = {m["sha256"] for m in telegram.delivered_media}
    bot.runner.delivery.files.repeat_cooldown = 0.0  # no pause between sets, to see the second one

    await answered(telegram, telegram.press_button(key, "v1:orig:1"))
    first = await telegram.wait_for(
        lambda: [
            c
            for c in telegram.calls_to("sendMediaGroup", ok_only=True)
            if c.params["media"][0]["type"] == "document"
        ]
    )
    (album,) = first
    assert [m["type"] for m in album.params["media"]] == ["document"] * 4
    assert album.params["reply_parameters"]["message_id"] == key[1]
    documents = [m for m in telegram.delivered_media if m["kind"] == "document"]
    assert len(documents) == 4 and {m["sha256"] for m in documents} == photos
    assert runcomfy.count("image") == downloads  # nothing fetched from RunComfy again

    # A later tap (once the pause after a set has passed) reuses Telegram's file ids.
    await telegram.wait_for(
        lambda: bot.runner.delivery.files._busy.get((1, JobAction.ORIGINALS)) != math.inf
    )
    await answered(telegram, telegram.press_button(key, "v1:orig:1"))
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 3)
    again = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert again.files == {}
    assert all(not m["media"].startswith("attach://") for m in again.params["media"])
    assert_clean(telegram, runcomfy)


async def test_originals_no_longer_kept_is_said(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished_with_buttons(telegram, bot, "/seq 2 a fox")
    kept = bot.runner.delivery.originals.folder / "1"
    # The files are written in the background: removing them mid-write would race the write.
    await telegram.wait_for(
        lambda: kept.is_dir() and sorted(p.name for p in kept.iterdir()) == ["0", "1"]
    )
    shutil.rmtree(bot.runner.delivery.originals.folder)
    await answered(telegram, telegram.press_button(key, "v1:orig:1"))
    await telegram.wait_for(lambda: "no longer kept" in " ".join(replies_to_sync(telegram, key)))


async def test_quick_taps_on_originals_send_one_set(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished_with_buttons(telegram, bot, "/seq 2 a fox")
    taps = [telegram.press_button(key, "v1:orig:1") for _ in range(8)]
    answers = [(await answered(telegram, tap))["text"] for tap in taps]
    assert answers.count("Sending the original files…") == 1
    assert answers.count("The original files are being sent or were sent above.") == 7
    await telegram.wait_for(lambda: media(telegram, "document"))
    # Every tap is answered; only the first sent anything, and that one set is whole.
    assert len(media(telegram, "document")) == 2
    assert len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2  # photos, documents
    assert_clean(telegram, runcomfy)


async def test_follow_up_buttons_work_only_on_their_own_message(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished_with_buttons(telegram, bot, "/seq 2 a fox")
    job = bot.store.get(1)
    assert job is not None and job.status_message_id is not None
    telegram.send_text("/settings")
    settings_message = await telegram.wait_for(
        lambda: next(
            (
                (c.params["chat_id"], m)
                for c in telegram.calls_to("sendMessage", ok_only=True)
                for m in [c.response["result"]["message_id"]]
                if c.params["text"].startswith("Defaults for /seq")
            ),
            None,
        )
    )
    for forged_on in ((job.chat_id, job.status_message_id), settings_message):
        for data in ("v1:again:1", "v1:orig:1", "v1:info:1"):
            answer = await answered(telegram, telegram.press_button(forged_on, data))
            assert answer["text"] == "This button no longer works.", (forged_on, data)
    assert runcomfy.count("submit") == 1
    assert len(bot.store.recent(job.chat_id)) == 1
    assert media(telegram, "document") == []
    # The real follow-up still works.
    again = await answered(telegram, telegram.press_button(key, "v1:again:1"))
    assert again["text"] == "Job #2: same settings, new seed."


def replies_to_sync(telegram: FakeTelegram, key: tuple[int, int]) -> list[str]:
    return [
        c.params["text"]
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params.get("reply_parameters", {}).get("message_id") == key[1]
    ]


async def test_details_and_buttons_work_after_a_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    first = await bots.start()
    key = await finished_with_buttons(telegram, first, "/seq 2 1:1 seed=7 a fox")
    await bots.stop(first)
    second = await bots.start()
    await answered(telegram, telegram.press_button(key, "v1:info:1"))
    text = await telegram.wait_for(
        lambda: next((t for t in replies_to_sync(telegram, key) if t.startswith("Job #1")), None)
    )
    request_id = next(iter(runcomfy.jobs))
    assert "Prompt: a fox" in text
    assert "Images: 2 · ratio 1:1 · mode fast · seed 7" in text
    assert f"Request: {request_id}" in text
    assert "Cost: $0.06" in text
    assert "Times: queued 0:00 · generating 0:00 · delivering 0:00" in text
    again = await answered(telegram, telegram.press_button(key, "v1:again:1"))
    assert again["text"] == "Job #2: same settings, new seed."
    assert (await until_final(telegram, second, 2)).status == Status.DONE
    stale = await answered(telegram, telegram.press_button(key, "v1:info:99"))
    assert stale["text"] == "This button no longer works."


async def test_settings_change_the_defaults_of_seq(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    shown = await reply_to(telegram, telegram.send_text("/settings"))
    assert shown.startswith("Defaults for /seq in this chat: 3 images · 16:9 · fast.")
    message = next(k for k in telegram.messages if telegram.buttons(*k) and k[0] == ADA)
    for data in ("v1:set:count:4", "v1:set:ratio:1:1", "v1:set:mode:standard"):
        assert (await answered(telegram, telegram.press_button(message, data)))["text"] == "Saved."
    assert (await answered(telegram, telegram.press_button(message, "v1:set:mode:standard")))[
        "text"
    ] == "Already set."
    assert telegram.history[message][-1].startswith(
        "Defaults for /seq in this chat: 4 images · 1:1 · standard."
    )
    assert ("• 4", "v1:set:count:4") in telegram.buttons(*message)

    telegram.send_text("/seq a fox")
    job = await until_final(telegram, bot)
    payload = next(iter(runcomfy.jobs.values())).payload
    assert payload["text"] == "Generate 4 images: a fox"
    assert (
        payload["image_size"] == "2048:2048 (1:1)"
        and payload["optimize_prompt_options"] == "standard"
    )
    # Options in the command and a count stated in the prompt still win over the defaults.
    telegram.send_text("/seq 16:9 Generate 2 images of a cat")
    second = await until_final(telegram, bot, 2)
    assert (second.count, second.size, second.mode) == (2, "2560:1440 (16:9)", "standard")
    assert job.count == 4
    await answered(telegram, telegram.press_button(message, "v1:set:reset"))
    assert bot.store.chat_defaults(ADA).count is None
    forged = await answered(telegram, telegram.press_button(message, "v1:set:count:99"))
    assert forged["text"] == "This button no longer works."


async def test_in_groups_only_admins_change_settings(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    command = telegram.send_text("/settings@SeqImageBot", chat_id=GROUP, user_id=BOB)
    await reply_to(telegram, command)
    message = next(k for k in telegram.messages if telegram.buttons(*k) and k[0] == GROUP)
    refused = await answered(
        telegram, telegram.press_button(message, "v1:set:count:6", user_id=BOB)
    )
    assert (
        refused["show_alert"]
        and refused["text"] == "Only the chat's admins can change its defaults."
    )
    assert bot.store.chat_defaults(GROUP).count is None
    telegram.set_member_status(GROUP, ADA, "administrator")
    saved = await answered(telegram, telegram.press_button(message, "v1:set:count:6", user_id=ADA))
    assert saved["text"] == "Saved."
    assert bot.store.chat_defaults(GROUP).count == 6


IVAN = {"id": 777000, "is_bot": False, "first_name": "Иван", "language_code": "ru"}


async def test_a_russian_speaking_user_gets_russian(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await menu_set(bot)
    ru_menu = telegram.calls_to("setMyCommands", ok_only=True)
    assert [c.params.get("language_code") for c in ru_menu] == [None, "ru"]
    assert ru_menu[1].params["commands"][0]["description"].startswith("Серия изображений")

    refused = telegram.send_text("/seq 99 кот", chat_id=IVAN["id"], from_user=IVAN)
    assert await reply_to(telegram, refused) == (
        "Количество изображений: от 1 до 15 (указано: 99)."
    )
    telegram.send_text(
        "/seq 16:9 Сделай 4 изображения маяка в разные времена года",
        chat_id=IVAN["id"],
        from_user=IVAN,
    )
    job = await until_final(telegram, bot)
    assert job.lang == "ru" and job.count == 4
    payload = next(iter(runcomfy.jobs.values())).payload
    assert payload["text"] == "Сделай 4 изображения маяка в разные времена года"
    history = telegram.history[(job.chat_id, job.status_message_id or 0)]
    assert history[0] == "⏳ В очереди…\nЗадание №1 · 4 изображения · 16:9 · fast"
    assert history[-1].startswith("✅ Готово: 4 изображения за ")
    (followup,) = followups(telegram)
    labels = [b["text"] for b in followup.params["reply_markup"]["inline_keyboard"][0]]
    assert labels == ["🔁 Ещё раз", "📎 Оригиналы", "ℹ️ Подробности"]
    album = telegram.calls_to("sendMediaGroup", ok_only=True)[0]
    assert album.params["media"][0]["caption"].endswith("4 изображения · 16:9 · fast")
    # An English speaker tapping Details in the same chat reads English.
    key = (job.chat_id, job.actions_message_id or 0)
    await answered(telegram, telegram.press_button(key, "v1:info:1"))
    text = await telegram.wait_for(
        lambda: next((t for t in replies_to_sync(telegram, key) if t.startswith("Job #1")), None)
    )
    assert "Prompt: Сделай 4 изображения маяка" in text
    usage = await reply_to(
        telegram, telegram.send_text("/usage", chat_id=IVAN["id"], from_user=IVAN)
    )
    assert usage.startswith("Сегодня (UTC): 4 изображения, $0.12")
    assert_clean(telegram, runcomfy)
