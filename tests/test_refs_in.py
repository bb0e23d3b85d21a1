"""Reference images in, through the real Application and the loopback fakes: photos with a
``/seq`` caption, image files, albums, replies, the bot's own images; and every refusal."""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
from PIL import Image

from bot import intake
from bot.errors import InputError
from bot.intake import check_counts
from bot.models import Job
from bot.store import Status
from tests.conftest import TG_TOKEN, Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import refs_env, reply_to, status_messages, until_final
from tests.test_refimages import GPS_IFD, photo

CHAT = 123456789


def refs_on(**extra: str) -> dict[str, str]:
    """Reference images on: PUBLIC_URL and the web server on a free loopback port; a short album
    wait; ``extra`` settings on top."""
    return {**refs_env({}), "ALBUM_WAIT_SECONDS": "0.2", **extra}


@pytest.fixture
async def bot(bots: Bots) -> RunningBot:
    """A bot with reference images on (PUBLIC_URL set) and a short album wait."""
    return await bots.start(**refs_on())


def colour(name: str, size: tuple[int, int] = (640, 480)) -> bytes:
    """A plain JPEG of one colour: its reference can be told apart from the others."""
    buf = io.BytesIO()
    Image.new("RGB", size, name).save(buf, "JPEG")
    return buf.getvalue()


def centre(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        return rgb.getpixel((rgb.width // 2, rgb.height // 2))  # type: ignore[return-value]


async def job_started(telegram: FakeTelegram, bot: RunningBot, job_id: int = 1) -> Job:
    """Wait until the job's row exists and its status message is posted."""

    def started() -> Job | None:
        job = bot.store.get(job_id)
        return job if job is not None and job.status_message_id is not None else None

    job: Job = await telegram.wait_for(started)
    return job


def kept(bot: RunningBot, job: Job) -> list[bytes]:
    """The job's reference files on disk, in the job's order."""
    originals = bot.runner.delivery.originals
    return [originals.ref_path(job.id, ref.id).read_bytes() for ref in job.refs]


async def test_a_photo_with_a_seq_caption_becomes_the_reference(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = photo(1280, 960, orientation=6, gps=True, comment=b"at home")
    with caplog.at_level(logging.DEBUG):
        sent = telegram.send_photo(source, "/seq 4 the woman in image 1 as a pilot, four scenes")
        job = await job_started(telegram, bot)

    (ref,) = job.refs
    assert ref.kind == "photo"
    assert (ref.chat_id, ref.message_id) == (CHAT, sent["message"]["message_id"])
    assert (ref.width, ref.height) == (960, 1280)  # EXIF orientation applied
    (data,) = kept(bot, job)
    assert ref.size == len(data)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (960, 1280)
        assert not img.getexif().get_ifd(GPS_IFD) and len(img.getexif()) == 0
    assert b"at home" not in data
    # The job is a /seq like any other: the prompt, the count, the status message.
    assert job.count == 4 and job.prompt == "the woman in image 1 as a pilot, four scenes"
    assert job.message_id == sent["message"]["message_id"]
    assert len(status_messages(telegram)) == 1
    # Fetched once with getFile; the file URL (and so the token) is in none of the bot's log
    # lines (httpx's own, with every URL, stay at WARNING in the running bot: bot/logs.py).
    assert len(telegram.calls_to("getFile", ok_only=True)) == 1
    assert [status for _, status in telegram.downloads] == [200]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bot"))
    assert "job 1" in ours
    assert TG_TOKEN.partition(":")[2] not in ours and "/file/bot" not in ours
    assert telegram.errors == []


async def test_without_public_url_one_short_reply_and_nothing_billed(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bots: Bots,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await bots.start()
    with caplog.at_level(logging.WARNING):
        answer = await reply_to(telegram, telegram.send_photo(colour("red"), "/seq 2 a pilot"))
    assert answer == "This bot is not set up for reference images. Send /seq with text only."
    assert "PUBLIC_URL" in caplog.text
    assert bot.store.get(1) is None
    assert telegram.calls_to("getFile") == [] and runcomfy.count("submit") == 0


async def test_an_album_is_one_job_with_its_references_in_album_order(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    colours = ["red", "lime", "blue"]
    # The caption on the second item: it counts wherever it is.
    items = telegram.send_album(
        [colour(c) for c in colours], "/seq 3 the three of them", caption_on=1
    )

    job = await job_started(telegram, bot)

    assert job.message_id == items[1]["message"]["message_id"]
    assert [r.message_id for r in job.refs] == [i["message"]["message_id"] for i in items]
    got = [centre(d) for d in kept(bot, job)]
    assert [max(range(3), key=lambda k, c=c: c[k]) for c in got] == [0, 1, 2]  # r, g, b
    assert len(telegram.calls_to("getFile", ok_only=True)) == 3
    await until_final(telegram, bot)
    assert bot.store.get(2) is None  # one job for the whole album


async def test_a_reply_to_an_album_item_takes_the_whole_album(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    items = telegram.send_album([colour("red"), colour("blue")])  # no caption: remembered only
    await telegram.wait_for(lambda: bot.services.intake and bot.services.intake._albums)
    last = items[-1]["message"]["message_id"]
    command = telegram.send_text("/seq 2 the two of them at sea", reply_to_message_id=last)

    job = await job_started(telegram, bot)

    assert job.message_id == command["message"]["message_id"]
    assert [r.message_id for r in job.refs] == [i["message"]["message_id"] for i in items]


async def test_a_reply_to_a_photo_and_an_image_file(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    pic = telegram.send_photo(colour("red"))  # no caption: nothing happens yet
    telegram.send_text("/seq 2 this cat in space", reply_to_message_id=pic["message"]["message_id"])
    first = await job_started(telegram, bot)
    assert [(r.kind, r.message_id) for r in first.refs] == [("photo", pic["message"]["message_id"])]

    png = photo(800, 600, fmt="PNG", mode="RGBA")
    doc = telegram.send_document(png, "/seq 2 the logo on two mugs")
    second = await job_started(telegram, bot, 2)
    assert [(r.kind, r.message_id) for r in second.refs] == [
        ("document", doc["message"]["message_id"])
    ]
    assert (second.refs[0].width, second.refs[0].height) == (800, 600)


async def test_a_reply_to_the_bots_own_image_uses_its_kept_original(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 2 a red fox")
    done = await until_final(telegram, bot)
    assert done.status == Status.DONE
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    second = album.response["result"][1]
    original = await bot.runner.delivery.originals.load(done.id, 1)
    assert original is not None
    getfiles = len(telegram.calls_to("getFile"))

    telegram.send_text("/seq 3 the fox in winter", reply_to_message_id=second["message_id"])
    job = await job_started(telegram, bot, 2)

    (ref,) = job.refs
    assert ref.kind == "result" and ref.message_id == second["message_id"]
    with Image.open(io.BytesIO(original)) as img:
        assert (ref.width, ref.height) == img.size
    assert len(telegram.calls_to("getFile")) == getfiles  # the kept original, not Telegram's copy


@pytest.mark.parametrize(
    ("send", "answer"),
    [
        (
            lambda t: t.send_document(
                b"%PDF-1.7\n...", "/seq 2 a pilot", mime_type="application/pdf", file_name="cv.pdf"
            ),
            "That file is not an image I can use. Send a JPEG, PNG or WebP photo or file.",
        ),
        (
            lambda t: t.send_document(colour("red"), "/seq 2 a pilot", size=25 * 1024 * 1024),
            "That file is over 20 MB, more than Telegram lets a bot download. "
            "Send it as a photo, or a smaller file.",
        ),
        (
            lambda t: t.send_photo(colour("red", (1700, 100)), "/seq 2 a pilot"),
            "That image is too long and narrow: its long side may be at most 16 times its "
            "short side. Crop it and send it again.",
        ),
    ],
    ids=["not-an-image", "over-20-mb", "ratio"],
)
async def test_a_reference_refused_gets_one_reply_and_nothing_is_billed(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, send, answer: str
) -> None:
    assert await reply_to(telegram, send(telegram)) == answer
    assert bot.store.get(1) is None and runcomfy.count("submit") == 0
    assert status_messages(telegram) == []


async def test_a_file_telegram_will_not_hand_over(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.fail_next("getFile", description="Bad Request: file is temporarily unavailable")
    answer = await reply_to(telegram, telegram.send_photo(colour("red"), "/seq 2 a pilot"))
    assert answer == "Telegram did not hand that image over just now. Send it again in a moment."
    assert bot.store.get(1) is None and runcomfy.count("submit") == 0


async def test_limits_on_the_number_of_references(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    ten = [colour("red", (64, 64))] * 10
    items = telegram.send_album(ten, "/seq 8 eight scenes of them")
    answer = await reply_to(telegram, items[0])
    assert answer == "10 reference images leave room for at most 5 images; you asked for 8."
    # Refused before anything was fetched.
    assert telegram.calls_to("getFile") == [] and bot.store.get(1) is None

    # A reply may name an album of ten: the same rule, from the same check.
    with pytest.raises(InputError) as caught:
        check_counts(11, 2)
    assert caught.value.user_message == (
        "At most 10 reference images can be used at once; you sent 11."
    )
    with pytest.raises(InputError) as caught:
        check_counts(1, 15)
    assert caught.value.user_message == (
        "1 reference image leaves room for at most 14 images; you asked for 15."
    )
    check_counts(5, 10)


async def test_an_album_of_ten_starts_at_its_tenth_item_without_waiting(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**{**refs_on(), "ALBUM_WAIT_SECONDS": "30"})
    telegram.send_album([colour("red", (64, 64))] * 10, "/seq 5 ten of them")
    job = await job_started(telegram, bot)  # within wait_for's 10 s, not after 30
    assert len(job.refs) == 10


async def test_a_bad_item_stops_the_fetches_of_the_others(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # Item 1 is refused when it is cleaned; items 2-6 hang at getFile (until the bot's own request
    # timeout, about 2 s, if nothing stops them). The user is told at once, and none of the slow
    # files is downloaded. (By file: the six getFile calls go out together, in any order.)
    items = telegram.send_album(
        [colour("blue", (1700, 100))]
        + [colour(c) for c in ("red", "green", "white", "black", "yellow")],
        "/seq 2 all of them",
    )
    for item in items[1:]:
        for size in item["message"]["photo"]:
            telegram.delay_next("getFile", 5.0, file_id=size["file_id"])
    start = time.monotonic()
    answer = await reply_to(telegram, items[0])
    assert answer.startswith("Reference 1: That image is too long and narrow")
    assert time.monotonic() - start < 1.5
    assert len(telegram.downloads) == 1 and bot.store.get(1) is None


async def test_a_bad_item_of_an_album_is_named(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    items = telegram.send_album([colour("red"), colour("blue", (1700, 100))], "/seq 2 both")
    answer = await reply_to(telegram, items[0])
    assert answer.startswith("Reference 2: That image is too long and narrow")
    assert bot.store.get(1) is None


async def test_edited_captions_and_other_bots_commands_start_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_photo(colour("red"), "/seq 2 a pilot", edited=True)
    telegram.send_photo(colour("red"), "/seq@OtherBot 2 a pilot")
    telegram.send_photo(colour("red"), "a holiday photo")
    telegram.send_text("/help")
    await telegram.wait_for(
        lambda: any(c.params["text"].startswith("Hi!") for c in telegram.calls_to("sendMessage"))
    )
    assert telegram.calls_to("getFile") == [] and bot.store.get(1) is None
    # Addressed to this bot by name, it works.
    telegram.send_photo(colour("red"), "/seq@SeqImageBot 2 a pilot")
    job = await job_started(telegram, bot)
    assert len(job.refs) == 1


async def test_help_shows_one_reference_example_only_when_they_are_on(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    await bots.start(**refs_on())
    telegram.send_text("/help")
    text = await telegram.wait_for(
        lambda: next(
            (
                c.params["text"]
                for c in telegram.calls_to("sendMessage")
                if "Hi!" in c.params["text"]
            ),
            None,
        )
    )
    assert text.count("with /seq in its caption") == 1
    assert "/seq 4 the woman in image 1 as a pilot" in text
    assert "➡️ Continue makes the next episode" in text and "✏️ Redo panel remakes" in text


async def test_a_slow_telegram_file_ends_the_request_within_the_time_limit(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on(), REFERENCE_FETCH_TIMEOUT_SECONDS="0.3")
    telegram.delay_next("getFile", 5)
    answer = await reply_to(telegram, telegram.send_photo(colour("red"), "/seq 2 a pilot"))
    assert answer == "Telegram did not hand that image over just now. Send it again in a moment."
    assert bot.store.get(1) is None and runcomfy.count("submit") == 0


async def test_a_reply_to_the_bots_image_whose_original_is_gone(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 1 a red fox")
    done = await until_final(telegram, bot)
    (sent,) = telegram.calls_to("sendPhoto", ok_only=True)
    bot.runner.delivery.originals._path(done.id, 0).unlink()
    command = telegram.send_text(
        "/seq 2 the fox again", reply_to_message_id=sent.response["result"]["message_id"]
    )
    answer = await reply_to(telegram, command)
    assert answer == "The original of that image is no longer kept. Send it again as a photo."
    assert bot.store.get(2) is None


async def test_references_that_cannot_be_kept_fail_the_job_before_the_submit(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # Job 1's folder cannot be made: its reference files cannot be written.
    folder = bot.runner.delivery.originals.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1").write_bytes(b"in the way")

    telegram.send_photo(colour("red"), "/seq 2 a pilot")
    job = await until_final(telegram, bot)

    assert job.status == Status.FAILED
    assert job.error == (
        "The reference images could not be kept just now; nothing was charged. "
        "Please try again in a minute."
    )
    assert runcomfy.count("submit") == 0


async def test_references_are_fetched_a_few_at_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # Six references, each getFile answered after 0.3 s: four at once take two rounds (≥ 0.6 s);
    # all six at once would take one. Only a lower bound: a busy machine only adds to it.
    telegram.delay_next("getFile", 0.3, times=6)
    telegram.send_album([colour("red", (64, 64))] * 6, "/seq 2 all six")
    job = await job_started(telegram, bot)
    calls = telegram.calls_to("getFile", ok_only=True)
    assert len(calls) == 6 and len(job.refs) == 6
    ends = sorted(c.at for c in calls)
    # Exactly four in the first round (the fake answers each 0.3 s after it came); the other two
    # a round later. One, two, three or six at once would end in other groups.
    first_round = [at for at in ends if at - ends[0] < 0.15]
    assert len(first_round) == 4 and ends[-1] - ends[0] >= 0.25


async def test_references_are_cleaned_two_at_once(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside, most, lock = 0, 0, threading.Lock()
    clean = intake.refimages.clean

    def counted(data: bytes, max_side: int) -> intake.refimages.CleanImage:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.05)  # long enough for the others to come in if they may
            return clean(data, max_side)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(intake.refimages, "clean", counted)
    telegram.send_album([colour("red", (64, 64))] * 6, "/seq 2 all six")
    job = await job_started(telegram, bot)
    assert len(job.refs) == 6 and most == intake.CLEANS_AT_ONCE == 2


async def test_the_albums_remembered_for_replies_are_bounded(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "ALBUMS_REMEMBERED", 2)
    albums = [telegram.send_album([colour("red"), colour("blue")]) for _ in range(3)]
    remembered = bot.services.intake
    assert remembered is not None
    await telegram.wait_for(lambda: len(remembered._albums) == 2 and not remembered._collecting)

    # The oldest album is forgotten: a reply to its item takes that item only; the newest, both.
    oldest = albums[0][1]["message"]["message_id"]
    telegram.send_text("/seq 2 just this one", reply_to_message_id=oldest)
    first = await job_started(telegram, bot)
    assert [r.message_id for r in first.refs] == [oldest]
    newest = [a["message"]["message_id"] for a in albums[2]]
    telegram.send_text("/seq 2 both of them", reply_to_message_id=newest[0])
    second = await job_started(telegram, bot, 2)
    assert [r.message_id for r in second.refs] == newest


async def test_a_bare_reply_to_the_bots_captioned_image_is_not_given_its_caption_as_a_prompt(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 2 a red fox")
    assert (await until_final(telegram, bot)).status == Status.DONE
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    first = album.response["result"][0]
    assert "a red fox" in first["caption"]  # the bot's caption: prompt and parameters

    update = telegram.send_text("/seq 3", reply_to_message_id=first["message_id"])
    answer = await reply_to(telegram, update)
    # No prompt of its own, and the bot's caption is not one: asked for a prompt, nothing started.
    assert answer.startswith("Add a prompt after the options")
    assert bot.store.get(2) is None and runcomfy.count("submit") == 1


async def test_an_album_arriving_at_a_stop_is_asked_for_again_and_never_started(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # A long album wait: the album is still being collected when the bot stops.
    bot = await bots.start(**{**refs_on(), "ALBUM_WAIT_SECONDS": "60"})
    items = telegram.send_album([colour("red"), colour("blue")], "/seq 2 the two of them")
    await telegram.wait_for(lambda: bot.services.intake and bot.services.intake._collecting)
    await bots.stop(bot)
    (reply,) = [c for c in telegram.calls_to("sendMessage", ok_only=True)]
    assert "send the album again" in reply.params["text"]
    assert reply.params["reply_parameters"]["message_id"] == items[0]["message"]["message_id"]
    # The restarted bot starts nothing from it, and nothing was billed.
    again = await bots.start(**refs_on())
    assert again.store.get(1) is None
    assert runcomfy.jobs == {}
