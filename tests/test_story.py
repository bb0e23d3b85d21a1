"""➡️ Continue and ✏️ Redo one panel (issue 21), through the real Application and the loopback
fakes (the fake RunComfy fetches every reference): the question, only the tapper's answer, the
references and their order, what is billed, the versions Sheet, ZIP and /show use, Details and
/jobs, each after a restart."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot import cast, limits, refimages, sheets
from bot.models import CastImage, Reference, SeqRequest
from bot.store import Job, Status, Store
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import answered, assert_clean, reply_to, until_final, write_job, zip_sent
from tests.test_payments import _paid_bot
from tests.test_refs_in import colour, kept, refs_on

BOB_ID = 222000111
GROUP = -100555000111


@pytest.fixture
async def bot(bots: Bots) -> RunningBot:
    """A bot with reference images on (PUBLIC_URL set)."""
    return await bots.start(**refs_on())


def fkey(job: Job) -> tuple[int, int]:
    assert job.actions_message_id is not None
    return (job.chat_id, job.actions_message_id)


async def done(telegram: FakeTelegram, bot: RunningBot, text: str, job_id: int, **send: Any) -> Job:
    """``text`` sent (a /seq), its job run to the end."""
    telegram.send_text(text, **send)
    job = await until_final(telegram, bot, job_id)
    assert job.status == Status.DONE, job.error
    return job


def questions(telegram: FakeTelegram) -> list[Any]:
    """The bot's questions: messages with a ForceReply."""
    return [
        c
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if "force_reply" in json.dumps(c.params.get("reply_markup") or {})
    ]


async def asked(telegram: FakeTelegram, before: int) -> dict[str, Any]:
    """The next question the bot posts (after ``before`` of them): its message."""
    call = await telegram.wait_for(lambda: questions(telegram)[before:])
    result: dict[str, Any] = call[0].response["result"]
    return result


async def details_of(telegram: FakeTelegram, job: Job) -> str:
    """The ℹ️ Details text posted under the job's follow-up."""

    def find() -> str | None:
        for call in telegram.calls_to("sendMessage", ok_only=True):
            params = call.params
            if params.get("reply_parameters", {}).get("message_id") == fkey(job)[1] and params[
                "text"
            ].startswith(f"Job #{job.id} ·"):
                return str(params["text"])
        return None

    text: str = await telegram.wait_for(find)
    return text


def panel_refs(bot: RunningBot, job: Job, panels: list[int]) -> list[bytes]:
    """What a panel becomes as a reference: its kept original, cleaned."""
    originals = bot.runner.delivery.originals
    return [
        refimages.clean((originals.folder / str(job.id) / str(i)).read_bytes()).data for i in panels
    ]


def body(runcomfy: FakeRunComfy, job: Job) -> dict[str, Any]:
    found = next(j for j in runcomfy.jobs.values() if j.request_id == job.request_id)
    payload: dict[str, Any] = found.payload
    return payload


def fetched(runcomfy: FakeRunComfy, payload: dict[str, Any]) -> list[bytes]:
    """The bytes the fake RunComfy fetched for the submit's reference URLs, in their order."""
    by_url = {f.url: f for f in runcomfy.ref_fetches}
    assert all(by_url[u].status == 200 for u in payload["images"])
    return [by_url[u].body for u in payload["images"]]


async def with_cast(env: dict[str, str], telegram: FakeTelegram, count: int = 4) -> Job:
    """A job that used two saved characters (refs of kind "cast"), written as the intake writes
    one (row, pin, files), for a bot that starts next to run."""
    db = Path(env["DATABASE_PATH"])
    message_id = telegram.send_text("/seq (cast)", push=False)["message"]["message_id"]
    images = [colour("red", (64, 64)), colour("blue", (64, 64))]
    refs = [
        Reference(f"cast{i:02d}-{'x' * 8}", "cast", ADA_ID, message_id, 64, 64, len(d), name=n)
        for i, (d, n) in enumerate(zip(images, ("anna", "rex"), strict=True))
    ]
    request = SeqRequest(
        count=count,
        size="2560:1440 (16:9)",
        mode="standard",
        seed=None,
        prompt="anna walks rex",
        text=f"Image 1 is anna. Image 2 is rex. Generate {count} images: anna walks rex",
        refs=tuple(refs),
    )
    job = await write_job(env, request, message_id, images)
    store = Store(db)
    try:  # still saved in Ada's cast: a new job of hers carries them on
        for data, name in zip(images, ("anna", "rex"), strict=True):
            image = CastImage(data, 64, 64, ADA_ID, message_id)
            store.cast_save(ADA_ID, name, cast.key(name), [image], cap=20)
    finally:
        store.close()
    return job


# ---- ➡️ Continue ----------------------------------------------------------------------------------


async def test_continue_takes_the_last_panels_and_the_cast_and_keeps_count_ratio_and_mode(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, env: dict[str, str]
) -> None:
    first = await with_cast(env, telegram, count=5)
    bot = await bots.start(**refs_on())
    first = await until_final(telegram, bot, first.id)
    assert first.status == Status.DONE, first.error
    assert [b[1] for b in telegram.buttons(*fkey(first))][-2:] == ["v1:next:1", "v1:redo:1"]

    answer = await answered(telegram, telegram.press_button(fkey(first), "v1:next:1"))
    assert not answer.get("show_alert")
    question = await asked(telegram, 0)
    assert question["text"].startswith("What happens next?")
    markup = questions(telegram)[0].params["reply_markup"]
    assert markup["force_reply"] is True and markup["selective"] is True
    assert question["reply_to_message"]["message_id"] == fkey(first)[1]
    telegram.send_text("they reach the sea", reply_to_message_id=question["message_id"])
    second = await until_final(telegram, bot, 2)

    assert second.status == Status.DONE, second.error
    assert (second.count, second.size, second.mode) == (5, first.size, "standard")
    assert (second.continues, second.story, second.episode) == (1, 1, 2)
    # The cast first, as named; then the last three panels of the first episode, in order.
    assert [(r.kind, r.name) for r in second.refs] == [("cast", "anna"), ("cast", "rex")] + [
        ("result", "")
    ] * 3
    payload = body(runcomfy, second)
    assert payload["sequential_image_generation_options"] == 5
    assert payload["text"] == (
        "Image 1 is anna. Image 2 is rex. Images 3–5 are the last panels of the previous "
        "episode: continue from them. Generate 5 images: they reach the sea"
    )
    refs = fetched(runcomfy, payload)
    assert refs[:2] == kept(bot, first)  # the cast's files, copied
    assert refs[2:] == panel_refs(bot, first, [2, 3, 4])
    assert refs == kept(bot, second)
    assert_clean(telegram, runcomfy)


async def test_only_the_tappers_answer_counts_in_a_group_and_the_question_survives_a_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on())
    group = {"chat_id": GROUP, "chat_type": "supergroup"}
    first = await done(telegram, bot, "/seq 3 a fox in the snow", 1, user_id=ADA_ID, **group)
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1", user_id=BOB_ID))
    question = await asked(telegram, 0)
    # Bob tapped: the question names him, so only his client opens the reply.
    call = questions(telegram)[0]
    assert call.params["parse_mode"] == "HTML"
    assert f'<a href="tg://user?id={BOB_ID}">' in call.params["text"]
    assert call.params["reply_markup"]["selective"] is True

    # Ada's answer is not Bob's: ignored, nothing written, nothing billed.
    ada = telegram.send_text(
        "the fox sleeps", user_id=ADA_ID, reply_to_message_id=question["message_id"], **group
    )
    telegram.send_text("/help", user_id=ADA_ID, **group)
    await telegram.wait_for(
        lambda: any(
            c.params["text"].startswith("Hi! I turn")
            for c in telegram.calls_to("sendMessage", ok_only=True)
        )
    )
    assert bot.store.get(2) is None
    assert not [
        c
        for c in telegram.calls_to("sendMessage")
        if c.params.get("reply_parameters", {}).get("message_id") == ada["message"]["message_id"]
    ]

    await bots.stop(bot)
    bot = await bots.start(**refs_on())
    telegram.send_text(
        "the fox finds a den", user_id=BOB_ID, reply_to_message_id=question["message_id"], **group
    )
    second = await until_final(telegram, bot, 2)
    assert second.status == Status.DONE, second.error
    assert (second.user_id, second.continues, second.episode, second.count) == (BOB_ID, 1, 2, 3)
    assert [r.kind for r in second.refs] == ["result"] * 3

    # Details and /jobs say which story and episode.
    await answered(telegram, telegram.press_button(fkey(second), "v1:info:2", user_id=BOB_ID))
    details = await details_of(telegram, second)
    assert "Story: episode 2 of #1" in details
    jobs = await reply_to(telegram, telegram.send_text("/jobs", user_id=ADA_ID, **group))
    assert "#2 ✅ done · 3 images · 🖼 3 · episode 2 of #1 · " in jobs
    # A second answer to the same question makes nothing more.
    telegram.send_text("again", user_id=BOB_ID, reply_to_message_id=question["message_id"], **group)
    telegram.send_text("/help", user_id=ADA_ID, **group)
    await telegram.wait_for(
        lambda: (
            sum(
                c.params["text"].startswith("Hi! I turn")
                for c in telegram.calls_to("sendMessage", ok_only=True)
            )
            == 2
        )
    )
    assert bot.store.get(3) is None
    assert_clean(telegram, runcomfy)


async def test_continue_of_pruned_originals_says_so_and_bills_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    first = await done(telegram, bot, "/seq 2 a fox", 1)
    folder = bot.runner.delivery.originals.folder / "1"
    for file in folder.iterdir():
        file.unlink()
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1"))
    question = await asked(telegram, 0)
    answer = await reply_to(
        telegram, telegram.send_text("and then", reply_to_message_id=question["message_id"])
    )
    assert answer == (
        "The images of job #1 are no longer kept, so it cannot go on; nothing was charged. "
        "Start again with /seq."
    )
    assert bot.store.get(2) is None
    assert runcomfy.count("submit") == 1
    assert bot.store.usage(ADA_ID, limits.day_start(time.time())).images == 2


async def test_a_numbered_script_answer_sets_the_count_and_keeps_the_ratio_and_mode(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    first = await done(telegram, bot, "/seq 4 3:4 mode=standard a fox", 1)
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1"))
    question = await asked(telegram, 0)
    telegram.send_text(
        "The fox travels.\n1. it packs\n2. it leaves",
        reply_to_message_id=question["message_id"],
    )
    second = await until_final(telegram, bot, 2)
    assert second.status == Status.DONE, second.error
    assert (second.count, second.size, second.mode) == (2, "1728:2304 (3:4)", "standard")
    assert second.panels == ["it packs", "it leaves"]
    assert body(runcomfy, second)["text"] == (
        "Images 1–3 are the last panels of the previous episode: continue from them. "
        "Generate 2 images. The fox travels. Panel 1: it packs. Panel 2: it leaves."
    )
    assert fetched(runcomfy, body(runcomfy, second)) == panel_refs(bot, first, [1, 2, 3])
    # Captioned per panel, as a /seq script is.
    assert telegram.delivered_media[-2]["caption"].startswith("1. it packs")

    # A third episode: its story is still #1.
    await answered(telegram, telegram.press_button(fkey(second), "v1:next:2"))
    question = await asked(telegram, 1)
    telegram.send_text("it arrives", reply_to_message_id=question["message_id"])
    third = await until_final(telegram, bot, 3)
    assert (third.continues, third.story, third.episode, third.count) == (2, 1, 3, 2)
    await answered(telegram, telegram.press_button(fkey(third), "v1:info:3"))
    assert "Story: episode 3 of #1, after #2" in await details_of(telegram, third)


# ---- ✏️ Redo one panel ----------------------------------------------------------------------------


async def redo(
    telegram: FakeTelegram,
    bot: RunningBot,
    job: Job,
    panel: int,
    text: str,
    before: int,
    *,
    answer: bool = True,
) -> None:
    """Tap ✏️ Redo panel, then panel ``panel`` (1-based), then answer ``text``."""
    await answered(telegram, telegram.press_button(fkey(job), f"v1:redo:{job.id}"))
    panels = [f"v1:redo:{job.id}:{n}" for n in range(1, job.count + 1)] + [f"v1:back:{job.id}"]
    await telegram.wait_for(lambda: [b[1] for b in telegram.buttons(*fkey(job))] == panels)
    await answered(telegram, telegram.press_button(fkey(job), f"v1:redo:{job.id}:{panel}"))
    question = await asked(telegram, before)
    assert question["text"].startswith(f"Panel {panel}: reply to this message")
    # The follow-up has its own buttons back.
    await telegram.wait_for(
        lambda: f"v1:again:{job.id}" in [b[1] for b in telegram.buttons(*fkey(job))]
    )
    if answer:
        telegram.send_text(text, reply_to_message_id=question["message_id"])


async def test_redo_one_panel_bills_one_image_and_uses_the_other_panels_nearest_first(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on())
    script = "/seq 16:9 A fox.\n1. wakes\n2. eats\n3. runs\n4. sleeps\n5. dreams"
    first = await done(telegram, bot, script, 1)
    day = limits.day_start(time.time())
    assert bot.store.usage(ADA_ID, day).images == 5

    await redo(telegram, bot, first, 3, "", 0, answer=False)
    question = questions(telegram)[0].response["result"]
    await bots.stop(bot)
    bot = await bots.start(**refs_on())
    telegram.send_text("same", reply_to_message_id=question["message_id"])
    second = await until_final(telegram, bot, 2)

    assert second.status == Status.DONE, second.error
    assert (second.redo_of, second.redo_panel, second.redo_version, second.count) == (1, 2, 2, 1)
    payload = body(runcomfy, second)
    assert payload["sequential_image_generation_options"] == 1
    assert payload["image_size"] == first.size
    assert payload["text"] == (
        "Generate 1 image. A fox. Images 1–4 are other panels of the same series: match them. runs"
    )
    # The other panels, nearest first: 2 and 4, then 1 and 5.
    assert fetched(runcomfy, payload) == panel_refs(bot, first, [1, 3, 0, 4])
    assert bot.store.usage(ADA_ID, day).images == 6  # one more image, no more

    # Delivered as a reply to panel 3 of the original album, captioned with its version.
    new = [
        m for m in telegram.delivered_media if m["caption"] and m["caption"].startswith("3 (v2)")
    ]
    assert len(new) == 1 and new[0]["caption"] == "3 (v2). runs"
    panel3 = next(k for k, i in first.image_keys.items() if k.startswith("m:") and i == 2)
    assert new[0]["reply_to_message_id"] == int(panel3[2:])
    assert_clean(telegram, runcomfy)


async def test_sheet_zip_show_and_details_use_the_latest_version_after_a_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on())
    first = await done(telegram, bot, "/seq 3 a fox at dawn", 1)
    await redo(telegram, bot, first, 2, "a fox at dusk", 0)
    second = await until_final(telegram, bot, 2)
    assert second.status == Status.DONE, second.error
    assert second.prompt == "a fox at dusk"
    originals = bot.runner.delivery.originals
    new_panel = (originals.folder / "2" / "0").read_bytes()
    old = [(originals.folder / "1" / str(i)).read_bytes() for i in range(3)]
    assert new_panel not in old

    await bots.stop(bot)
    bot = await bots.start(**refs_on())

    # 📦 ZIP: 02.jpg is the new version; prompt.txt lists the versions.
    await answered(telegram, telegram.press_button(fkey(first), "v1:zip:1"))
    data = await zip_sent(telegram)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert [archive.read(f"0{n}.jpg") for n in (1, 2, 3)] == [old[0], new_panel, old[2]]
        assert (
            "Versions: panel 2: v2 #2 (the latest is used)" in archive.read("prompt.txt").decode()
        )

    # ℹ️ Details of the set lists the versions; the redo's own says what it is.
    await answered(telegram, telegram.press_button(fkey(first), "v1:info:1"))
    details = await details_of(telegram, first)
    assert "Versions: panel 2: v2 #2 (the latest is used)" in details
    await answered(telegram, telegram.press_button(fkey(second), "v1:info:2"))
    assert "Story: panel 2 (v2) of #1" in await details_of(telegram, second)

    # 🗂 Sheet: made from the latest versions (the sheet's middle panel is the new one).
    sheets_before = len(telegram.calls_to("sendPhoto", ok_only=True))
    await answered(telegram, telegram.press_button(fkey(first), "v1:sheet:1"))
    await telegram.wait_for(
        lambda: len(telegram.calls_to("sendPhoto", ok_only=True)) > sheets_before
    )
    sheet_calls = [
        c
        for c in telegram.calls_to("sendPhoto", ok_only=True)
        if c.params.get("caption", "").startswith("🗂")
    ]
    assert len(sheet_calls) == 1

    # /show: the album again, panel 2 its new version (by its file_id), captioned as such.
    albums = len(telegram.calls_to("sendMediaGroup", ok_only=True))
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) > albums)
    shown = telegram.calls_to("sendMediaGroup", ok_only=True)[-1].params["media"]
    assert shown[1]["media"] == second.photos["0"]
    assert shown[1]["caption"] == "2 (v2). a fox at dusk"
    assert shown[0]["media"] == first.photos["0"] and shown[2]["media"] == first.photos["2"]

    # 📎 Originals: the new version's file, captioned as such.
    docs = len(telegram.calls_to("sendMediaGroup", ok_only=True))
    await answered(telegram, telegram.press_button(fkey(first), "v1:orig:1"))
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) > docs)
    sent = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert [m["type"] for m in sent.params["media"]] == ["document"] * 3
    assert sent.params["media"][1]["caption"] == "2 (v2). a fox at dusk"
    files = [m["document"]["file_id"] for m in sent.response["result"]]
    assert [telegram.files[f] for f in files] == [old[0], new_panel, old[2]]
    # Kept as the version's own document: the next Originals sends it by its file_id.
    mine = await telegram.wait_for(lambda: (j := bot.store.get(2)) and j.originals)
    assert mine == {"0": files[1]}
    parent = await telegram.wait_for(lambda: (j := bot.store.get(1)) and j.originals)
    assert parent == {"0": files[0], "2": files[2]}
    assert_clean(telegram, runcomfy)


async def test_sheet_uses_the_new_version(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[bytes]] = []
    real = sheets.contact_sheet

    def spy(paths: list[Path], *args: Any, **kwargs: Any) -> Any:
        seen.append([Path(p).read_bytes() for p in paths])
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(sheets, "contact_sheet", spy)
    first = await done(telegram, bot, "/seq 2 a fox", 1)
    await redo(telegram, bot, first, 1, "a wolf", 0)
    assert (await until_final(telegram, bot, 2)).status == Status.DONE
    await answered(telegram, telegram.press_button(fkey(first), "v1:sheet:1"))
    await telegram.wait_for(lambda: seen)
    folder = bot.runner.delivery.originals.folder
    assert seen[0] == [(folder / "2" / "0").read_bytes(), (folder / "1" / "1").read_bytes()]


async def test_forged_and_out_of_range_panel_buttons_are_refused(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    first = await done(telegram, bot, "/seq 2 a fox", 1)
    for data in ("v1:redo:1:0", "v1:redo:1:16", "v1:redo:1:03", "v1:redo:1:x", "v1:next:1:2"):
        answer = await answered(telegram, telegram.press_button(fkey(first), data))
        assert answer["text"] == "This button no longer works.", data
    answer = await answered(telegram, telegram.press_button(fkey(first), "v1:redo:1:3"))
    assert answer["text"] == "Job #1 has no panel 3."
    # Data copied onto another message (the status) is not the follow-up's.
    status = (ADA_ID, first.status_message_id or 0)
    answer = await answered(telegram, telegram.press_button(status, "v1:redo:1:1"))
    assert answer["text"] == "This button no longer works."
    assert questions(telegram) == []
    # ↩️ Back puts the follow-up's own buttons back.
    await answered(telegram, telegram.press_button(fkey(first), "v1:redo:1"))
    await telegram.wait_for(lambda: "v1:back:1" in [b[1] for b in telegram.buttons(*fkey(first))])
    await answered(telegram, telegram.press_button(fkey(first), "v1:back:1"))
    await telegram.wait_for(lambda: "v1:again:1" in [b[1] for b in telegram.buttons(*fkey(first))])
    assert runcomfy.count("submit") == 1


async def test_the_daily_limit_refuses_a_whole_episode_but_lets_a_one_image_redo_through(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on(), DAILY_IMAGE_LIMIT_PER_USER="6")
    first = await done(telegram, bot, "/seq 5 a fox", 1)
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1"))
    question = await asked(telegram, 0)
    answer = await reply_to(
        telegram, telegram.send_text("and then", reply_to_message_id=question["message_id"])
    )
    assert answer.startswith("You have 1 of today's 6 images left; ask for 1 or fewer.")
    assert bot.store.get(2) is None and runcomfy.count("submit") == 1

    # A redo is one image: it fits the one left.
    await redo(telegram, bot, first, 2, "a wolf", 1)
    second = await until_final(telegram, bot, 2)
    assert (second.status, second.count, second.redo_of) == (Status.DONE, 1, first.id)

    # Now the day's six are used: the episode's question still stands, and is refused again.
    answer = await reply_to(
        telegram, telegram.send_text("and then", reply_to_message_id=question["message_id"])
    )
    assert answer.startswith("You have used all 6 images of today's limit.")
    assert bot.store.get(3) is None and runcomfy.count("submit") == 2


async def test_with_stars_a_redo_reserves_and_spends_one_credit(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram, **refs_on())
    first = await done(telegram, bot, "/seq 3 a fox", 1)
    assert bot.store.balance(ADA_ID) == 7
    await redo(telegram, bot, first, 2, "a wolf", 0)
    second = await until_final(telegram, bot, 2)
    assert second.status == Status.DONE, second.error
    assert bot.store.reservation(second.id) == ("spent", 1, 0)
    assert bot.store.balance(ADA_ID) == 6


def script(n: int) -> str:
    """An answer of ``n`` numbered items: an episode of ``n`` images."""
    return "\n".join(f"{i}. fox number {i}" for i in range(1, n + 1))


async def test_an_episode_too_big_for_the_panels_is_refused_with_the_most_that_fits(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    first = await done(telegram, bot, "/seq 2 a fox", 1)
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1"))
    question = await asked(telegram, 0)
    answer = await reply_to(
        telegram, telegram.send_text(script(15), reply_to_message_id=question["message_id"])
    )
    assert answer == (
        "An episode of 15 images leaves no room for the previous panels as references: "
        "ask for at most 14."
    )
    assert bot.store.get(2) is None and runcomfy.count("submit") == 1
    telegram.send_text(script(13), reply_to_message_id=question["message_id"])
    second = await until_final(telegram, bot, 2)
    # 13 images leave room for two of the last panels (15 in all): both of the first's.
    assert (second.count, len(second.refs)) == (13, 2)


async def test_only_the_owner_carries_their_characters_on_and_only_while_saved(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on())
    saved = telegram.send_photo(colour("red"), "/cast add anna", user_id=ADA_ID)
    assert (await reply_to(telegram, saved)).startswith("Saved ")
    group = {"chat_id": GROUP, "chat_type": "supergroup"}
    first = await done(
        telegram, bot, "/seq 2 cast=anna anna in the rain", 1, user_id=ADA_ID, **group
    )
    assert [r.kind for r in first.refs] == ["cast"]

    # Bob continues Ada's set in the group: the panels, never Ada's own saved photo.
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1", user_id=BOB_ID))
    question = await asked(telegram, 0)
    telegram.send_text(
        "anna dries off", user_id=BOB_ID, reply_to_message_id=question["message_id"], **group
    )
    second = await until_final(telegram, bot, 2)
    assert second.status == Status.DONE, second.error
    assert [r.kind for r in second.refs] == ["result", "result"]
    assert "is anna" not in body(runcomfy, second)["text"]
    # Nor does his 🔁 Again on her set copy it: refused, nothing billed.
    submits = runcomfy.count("submit")
    tap = telegram.press_button(fkey(first), "v1:again:1", user_id=BOB_ID)
    refusal = await answered(telegram, tap)
    assert "not yours, or were removed" in str(refusal)
    assert bot.store.get(3) is None and runcomfy.count("submit") == submits

    # Ada removes anna: her own next episode goes on without the removed character.
    removed = telegram.send_text("/cast remove anna", user_id=ADA_ID)
    await reply_to(telegram, removed)
    await answered(telegram, telegram.press_button(fkey(first), "v1:next:1", user_id=ADA_ID))
    question = await asked(telegram, 1)
    telegram.send_text(
        "the rain stops", user_id=ADA_ID, reply_to_message_id=question["message_id"], **group
    )
    third = await until_final(telegram, bot, 3)
    assert third.status == Status.DONE, third.error
    assert [r.kind for r in third.refs] == ["result", "result"]
