"""Script mode end to end: numbered panels in, one panel per image, each with its own caption."""

from __future__ import annotations

from bot import render
from bot.models import Job, Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import (
    answered,
    assert_clean,
    followups,
    reply_to,
    until_final,
)

SCRIPT = (
    "/seq 16:9 A fox cub's first winter, watercolour\n"
    "1. The cub peeks out of the den\n"
    "2) It sees snow for the first time\n"
    "Panel 3: It leaps into a snowdrift\n"
    "4. It falls asleep by the fire"
)
PANELS = [
    "The cub peeks out of the den",
    "It sees snow for the first time",
    "It leaps into a snowdrift",
    "It falls asleep by the fire",
]


async def test_a_four_panel_script_makes_four_images_each_captioned_with_its_panel(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text(SCRIPT)
    job = await until_final(telegram, bot)

    assert job.status == Status.DONE
    assert job.panels == PANELS
    (fake_job,) = runcomfy.jobs.values()
    assert fake_job.payload["sequential_image_generation_options"] == 4
    assert fake_job.payload["text"] == (
        "Generate 4 images. A fox cub's first winter, watercolour. "
        "Panel 1: The cub peeks out of the den. Panel 2: It sees snow for the first time. "
        "Panel 3: It leaps into a snowdrift. Panel 4: It falls asleep by the fire."
    )
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    captions = [item.get("caption") for item in album.params["media"]]
    assert captions == [
        "1. The cub peeks out of the den\n\n4 images · 16:9 · fast",
        "2. It sees snow for the first time",
        "3. It leaps into a snowdrift",
        "4. It falls asleep by the fire",
    ]
    assert_clean(telegram, runcomfy)


async def test_a_long_script_in_two_albums_captions_every_item_and_the_first_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq\n" + "\n".join(f"Кадр {i}: сцена {i}" for i in range(1, 13)))
    job = await until_final(telegram, bot)

    assert job.status == Status.DONE and job.count == 12
    (fake_job,) = runcomfy.jobs.values()
    assert fake_job.payload["sequential_image_generation_options"] == 12
    albums = telegram.calls_to("sendMediaGroup", ok_only=True)
    captions = [item.get("caption") for album in albums for item in album.params["media"]]
    assert [len(album.params["media"]) for album in albums] == [6, 6]
    assert captions[0] == "1. сцена 1\n\n12 images · 16:9 · fast"
    assert captions[1:] == [f"{i}. сцена {i}" for i in range(2, 13)]
    assert_clean(telegram, runcomfy)


async def test_again_on_a_script_keeps_its_panels(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text(SCRIPT)
    first = await until_final(telegram, bot)
    (followup,) = followups(telegram)
    key = (first.chat_id, followup.response["result"]["message_id"])
    await answered(telegram, telegram.press_button(key, "v1:again:1"))
    second = await until_final(telegram, bot, 2)

    assert second.status == Status.DONE and second.panels == PANELS
    payloads = [j.payload for j in runcomfy.jobs.values()]
    assert payloads[1]["text"] == payloads[0]["text"]
    last = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert [i.get("caption", "").split("\n")[0] for i in last.params["media"]][1:] == [
        f"{n}. {p}" for n, p in enumerate(PANELS, 1)
    ][1:]


async def test_panels_survive_a_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start()
    telegram.send_text(SCRIPT)
    await until_final(telegram, bot)
    await bots.stop(bot)
    again = await bots.start()
    job = again.store.get(1)
    assert job is not None and job.panels == PANELS


async def test_a_script_refused_says_why_and_submits_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    update = telegram.send_text("/seq\n" + "\n".join(f"{i}. p{i}" for i in range(1, 17)))
    text = await reply_to(telegram, update)
    assert text == "Your script has 16 panels, but at most 15 images can be made at once: cut 1."
    assert runcomfy.count("submit") == 0


async def test_seq_alone_and_help_show_a_script_and_start_says_its_intro_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    usage = await reply_to(telegram, telegram.send_text("/seq"))
    telegram.send_text("/start")
    help_text = await telegram.wait_for(
        lambda: next(
            (
                c.params["text"]
                for c in telegram.calls_to("sendMessage", ok_only=True)
                if c.params["text"].startswith("Hi! I turn")
            ),
            None,
        )
    )
    for text in (usage, help_text):
        assert "A script makes one image per numbered line" in text
        assert "\n1. The cub peeks out of the den\n2. " in text
    assert usage.startswith("Make a series of related images")
    assert help_text.startswith("Hi! I turn one prompt")
    assert "Make a series of related images" not in help_text
    assert "Seedream 4.0" in help_text and help_text.count("Seedream 4.0") == 1


def _job(**changes: object) -> Job:
    fields: dict[str, object] = {
        "id": 3, "chat_id": 1, "message_id": 2, "count": 2, "size": "2560:1440 (16:9)",
        "mode": "fast", "prompt": "p", "text": "t", "status": Status.SENDING,
        "panels": ["a", "b"],
    }  # fmt: skip
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


def test_panel_captions_fit_telegram_and_carry_the_parameters_once() -> None:
    long = "🦊" * 700  # 1,400 UTF-16 units
    job = _job(panels=[long, long])
    first = render.panel_captions(job, (0, 1), first=True)
    assert first is not None
    assert all(render.utf16_len(c) <= render.CAPTION_LIMIT for c in first.values())
    assert first[0].endswith("…\n\n2 images · 16:9 · fast") and first[0].startswith("1. 🦊")
    assert first[1].startswith("2. 🦊") and "images" not in first[1]
    later = render.panel_captions(job, (1,), first=False)
    assert later is not None and "2 images" not in later[1]


def test_a_unit_is_captioned_per_panel_or_on_its_first_item_only() -> None:
    plain = _job(panels=[])
    assert render.unit_captions(plain, (3, 4), first=True) == {3: render.caption(plain)}
    assert render.unit_captions(plain, (5,), first=False) == {}
    script = _job()
    assert render.unit_captions(script, (0, 1), first=False) == render.panel_captions(
        script, (0, 1), first=False
    )


def test_no_panels_no_per_item_captions() -> None:
    assert render.panel_captions(_job(panels=[]), (0, 1), first=True) is None
    # An image beyond the panels (the model made more than asked) has no panel to show.
    assert render.panel_captions(_job(), (2,), first=False) == {}
    assert render.panel_captions(_job(), (2, 0), first=True) == {
        2: "2 images · 16:9 · fast",
        0: "1. a",
    }
