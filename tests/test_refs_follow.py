"""What follows a job with reference images, through the real Application and the loopback fakes:
🔁 Again reuses them, ℹ️ Details, /jobs and /show say them, 📦 ZIP holds them in refs/, a reply
to one of the bot's own images is matched whatever file_id Telegram gives, and a job that ends
before any delivery leaves no pin behind."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from bot.models import Job
from bot.store import Status, Store
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import (
    answered,
    assert_clean,
    followups,
    record_job,
    refs_env,
    reply_to,
    until_final,
    zip_sent,
)
from tests.test_refs_in import colour, job_started, kept, refs_on

EDIT = "/v1/models/bytedance/seedream-4-0/edit-sequential"


@pytest.fixture
async def bot(bots: Bots) -> RunningBot:
    """A bot with reference images on (PUBLIC_URL set) and a short album wait."""
    return await bots.start(**refs_on())


async def done_with_refs(
    telegram: FakeTelegram, bot: RunningBot, images: list[bytes], text: str = "/seq 2 a pilot"
) -> tuple[Job, tuple[int, int]]:
    """A job with these references (one photo, or an album) run to the end; it and the key of
    its follow-up message."""
    if len(images) == 1:
        telegram.send_photo(images[0], text)
    else:
        telegram.send_album(images, text)
    job = await until_final(telegram, bot, len(followups(telegram)) + 1)
    assert job.status == Status.DONE, job.error
    assert job.actions_message_id is not None
    return job, (job.chat_id, job.actions_message_id)


def pinned(bot: RunningBot, job_id: int) -> bool:
    return (bot.runner.delivery.originals.folder / ".pinned" / str(job_id)).exists()


# ---- 1. 🔁 Again ------------------------------------------------------------------------------


async def test_again_runs_the_same_references_under_new_ids_and_runcomfy_fetches_them(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    first, key = await done_with_refs(
        telegram, bot, [colour("red"), colour("lime"), colour("blue")], "/seq 2 the three"
    )
    first_files = kept(bot, first)
    fetched_before = len(runcomfy.ref_fetches)

    answer = await answered(telegram, telegram.press_button(key, f"v1:again:{first.id}"))
    assert answer["text"] == "Job #2: same settings, new seed."
    second = await until_final(telegram, bot, 2)

    assert second.status == Status.DONE, second.error
    assert len(second.refs) == 3
    assert not {r.id for r in second.refs} & {r.id for r in first.refs}  # its own files
    # Where they came from stays as it was (Details says it); the bytes are the same.
    assert [(r.kind, r.message_id) for r in second.refs] == [
        (r.kind, r.message_id) for r in first.refs
    ]
    assert kept(bot, second) == first_files
    bodies = [j.payload for j in runcomfy.jobs.values()]
    assert len(bodies) == 2 and all("images" in b for b in bodies)
    links = bot.runner.links
    assert links is not None
    assert bodies[1]["images"] == [links.url(2, r.id) for r in second.refs]
    again = runcomfy.ref_fetches[fetched_before:]
    assert [f.url for f in again] == bodies[1]["images"]
    assert [f.body for f in again] == first_files and all(f.status == 200 for f in again)
    # The first job's files are untouched, and its own URLs stay closed (it is over).
    assert kept(bot, first) == first_files
    assert not pinned(bot, 1) and not pinned(bot, 2)
    assert_clean(telegram, runcomfy)


async def test_again_whose_references_are_gone_says_so_and_bills_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    first, key = await done_with_refs(telegram, bot, [colour("red")])
    originals = bot.runner.delivery.originals
    originals.ref_path(first.id, first.refs[0].id).unlink()
    submits = runcomfy.count("submit")

    await answered(telegram, telegram.press_button(key, f"v1:again:{first.id}"))
    text = await reply_to(telegram, {"message": {"message_id": key[1], "chat": {"id": key[0]}}})

    assert text == (
        "The reference images of job #1 are no longer kept, so it cannot be run again; "
        "nothing was charged. Send them again with /seq."
    )
    assert bot.store.get(2) is None
    assert runcomfy.count("submit") == submits


# ---- 2. ℹ️ Details, /jobs, /show ---------------------------------------------------------------


async def test_details_jobs_and_show_say_how_many_references_and_where_from(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    album, key = await done_with_refs(
        telegram, bot, [colour("red"), colour("lime"), colour("blue")], "/seq 2 the three"
    )
    await answered(telegram, telegram.press_button(key, "v1:info:1"))
    details = await reply_to(telegram, {"message": {"message_id": key[1], "chat": {"id": ADA_ID}}})
    first, last = sorted(r.message_id for r in album.refs)[:: len(album.refs) - 1]
    assert (
        f"References: 3 reference images, from an album in this chat (messages {first}–{last})"
        in (details)
    )

    photo, key2 = await done_with_refs(telegram, bot, [colour("red")])
    await answered(telegram, telegram.press_button(key2, f"v1:info:{photo.id}"))
    details = await reply_to(telegram, {"message": {"message_id": key2[1], "chat": {"id": ADA_ID}}})
    assert (
        f"References: 1 reference image, from a photo in this chat (message {photo.refs[0].message_id})"
        in details
    )

    # A reply to one of the bot's images: Details names the job it came from.
    sent = telegram.calls_to("sendMediaGroup", ok_only=True)[-1].response["result"][0]
    telegram.send_text("/seq 1 the same, at night", reply_to_message_id=sent["message_id"])
    third = await until_final(telegram, bot, 3)
    assert third.refs[0].kind == "result" and third.refs[0].job_id == photo.id
    key3 = (ADA_ID, third.actions_message_id or 0)
    await answered(telegram, telegram.press_button(key3, "v1:info:3"))
    details = await reply_to(telegram, {"message": {"message_id": key3[1], "chat": {"id": ADA_ID}}})
    assert f"References: 1 reference image, from one of the bot's images of job #{photo.id}" in (
        details
    )

    jobs = await reply_to(telegram, telegram.send_text("/jobs"))
    lines = jobs.splitlines()
    assert next(line for line in lines if line.startswith("#1 ")).startswith(
        "#1 ✅ done · 2 images · 🖼 3 · "
    )
    assert "🖼 1" in next(line for line in lines if line.startswith("#2 "))

    calls = len(telegram.calls_to("sendMediaGroup", ok_only=True))
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) > calls)
    shown = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert "🖼 3 reference images" in shown.params["media"][0]["caption"]
    assert_clean(telegram, runcomfy)


# ---- 3. 📦 ZIP ---------------------------------------------------------------------------------


async def test_the_zip_holds_the_references_in_a_refs_folder(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    job, key = await done_with_refs(telegram, bot, [colour("red"), colour("blue")])
    refs = kept(bot, job)

    await answered(telegram, telegram.press_button(key, "v1:zip:1"))
    data = await zip_sent(telegram)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["01.jpg", "02.jpg", "refs/1.jpg", "refs/2.jpg", "prompt.txt"]
        assert [archive.read(f"refs/{n}.jpg") for n in (1, 2)] == refs  # in the model's order
        assert "References: 2 reference images" in archive.read("prompt.txt").decode()


# ---- 4. a reply to the bot's own image ----------------------------------------------------------


async def test_a_reply_to_the_bots_album_item_is_matched_though_telegram_gives_another_file_id(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 3 a red fox")
    done = await until_final(telegram, bot)
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    third = album.response["result"][2]
    # Telegram does not promise the same file_id for the same file: the reply carries another.
    stored = telegram.messages[(ADA_ID, third["message_id"])]
    stored["photo"] = [{**size, "file_id": f"{size['file_id']}-again"} for size in stored["photo"]]
    original = await bot.runner.delivery.originals.load(done.id, 2)
    assert original is not None

    telegram.send_text("/seq 2 the fox in winter", reply_to_message_id=third["message_id"])
    job = await job_started(telegram, bot, 2)

    (ref,) = job.refs
    assert (ref.kind, ref.job_id, ref.message_id) == ("result", 1, third["message_id"])
    assert bot.store.get(1).image_keys[f"m:{third['message_id']}"] == 2  # type: ignore[union-attr]
    await until_final(telegram, bot, 2)
    # The third image's kept original went to RunComfy (cleaned: the same size).
    with Image.open(io.BytesIO(original)) as img:
        assert (ref.width, ref.height) == img.size


async def test_a_reply_to_an_original_sent_again_is_matched_by_its_unique_id(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 1 a red fox")
    await until_final(telegram, bot)
    (sent,) = telegram.calls_to("sendPhoto", ok_only=True)
    photo = sent.response["result"]
    # The same photo as another message (a forward by the bot's admin, say) and another file_id:
    # only the file's unique id tells it is the bot's image 1 of job 1.
    copy = telegram.send_text(
        "",
        content={
            "photo": [{**s, "file_id": f"{s['file_id']}-fwd"} for s in photo["photo"]],
            "from": photo["from"],
        },
        push=False,
    )["message"]
    telegram.messages[(ADA_ID, copy["message_id"])] = copy
    telegram.send_text("/seq 2 the fox in winter", reply_to_message_id=copy["message_id"])
    job = await job_started(telegram, bot, 2)
    assert [(r.kind, r.job_id) for r in job.refs] == [("result", 1)]


# ---- 5. pins ------------------------------------------------------------------------------------


async def test_a_job_with_references_cancelled_while_waiting_to_be_sent_is_unpinned(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(
        **refs_on(), RUNCOMFY_MAX_REQUESTS_PER_SECOND="0.1", POLL_INTERVAL_SECONDS="30"
    )
    telegram.send_text("/seq 2 a fox")  # takes the only slot for ten seconds
    telegram.send_photo(colour("red"), "/seq 2 a pilot")
    await telegram.wait_for(lambda: bot.runner.client.waiting == 1)
    assert pinned(bot, 2)
    job = bot.store.get(2)
    assert job is not None and job.status_message_id is not None
    update = telegram.press_button((ADA_ID, job.status_message_id), "v1:cancel:2")
    assert (await answered(telegram, update))["text"] == "Cancelled."

    job = await until_final(telegram, bot, 2)
    assert job.status == Status.CANCELLED
    assert not pinned(bot, 2)
    assert 2 not in await bot.runner.delivery.originals.pinned()


async def test_references_that_cannot_be_kept_leave_no_pin(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    folder = bot.runner.delivery.originals.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1").write_bytes(b"in the way")  # job 1's folder cannot be made

    telegram.send_photo(colour("red"), "/seq 2 a pilot")
    job = await until_final(telegram, bot)

    assert job.status == Status.FAILED and runcomfy.count("submit") == 0
    assert not pinned(bot, 1)


async def test_a_pin_left_by_a_job_that_ended_undelivered_goes_at_start(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    job, _ = await record_job(env, telegram, [colour("red")])
    db = Path(env["DATABASE_PATH"])
    store = Store(db)
    try:
        ended = store.get(job.id)
        assert ended is not None
        store.update(ended, status=Status.CANCELLED, finished_at=1.0)
    finally:
        store.close()
    # As a stop between the job's end and its unpin leaves it:
    pins = db.parent / "originals" / ".pinned"
    pins.mkdir(parents=True, exist_ok=True)
    (pins / str(job.id)).touch()
    (pins / "99").touch()  # a job with no row at all

    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})

    assert not (pins / str(job.id)).exists() and not (pins / "99").exists()
    assert await bot.runner.delivery.originals.pinned() == set()


async def test_again_after_reference_images_were_turned_off_says_so_and_bills_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on())
    first, key = await done_with_refs(telegram, bot, [colour("red")])
    await bots.stop(bot)
    submits = runcomfy.count("submit")

    restarted = await bots.start()  # PUBLIC_URL no longer set
    answer = await answered(telegram, telegram.press_button(key, f"v1:again:{first.id}"))

    assert answer["text"] == (
        "This bot is not set up for reference images. Send /seq with text only."
    )
    assert answer["show_alert"] is True
    assert restarted.store.get(2) is None and runcomfy.count("submit") == submits
