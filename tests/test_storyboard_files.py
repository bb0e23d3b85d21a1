"""🗂 Sheet and 📦 ZIP under the images, through the real Application and the fakes."""

from __future__ import annotations

import io
import shutil
import zipfile
from typing import Any

import pytest
from PIL import Image, ImageStat

from bot import callbacks, sheets
from bot.callbacks import JobAction, JobButton
from bot.images import PHOTO_MAX_BYTES, PHOTO_MAX_RATIO, PHOTO_MAX_SIDES
from bot.store import Job, Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.helpers import answered, assert_clean, followups, until_final


async def finished(telegram: FakeTelegram, bot: RunningBot, text: str) -> Job:
    """Run a job to the end, with every image kept on disk."""
    telegram.send_text(text)
    job = await until_final(telegram, bot, len(followups(telegram)) + 1)
    assert job.status == Status.DONE and job.actions_message_id is not None
    folder = bot.runner.delivery.originals.folder / str(job.id)
    await telegram.wait_for(lambda: len(list(folder.glob("[0-9]*"))) == job.count)
    return job


def key(job: Job) -> tuple[int, int]:
    assert job.actions_message_id is not None
    return (job.chat_id, job.actions_message_id)


def press(telegram: FakeTelegram, job: Job, action: JobAction) -> dict[str, Any]:
    return telegram.press_button(key(job), callbacks.encode(JobButton(action, job.id)))


def replies(telegram: FakeTelegram, job: Job, method: str) -> list[Call]:
    """What the bot sent with ``method`` in reply to the job's follow-up message."""
    return [
        c
        for c in telegram.calls_to(method, ok_only=True)
        if c.params.get("reply_parameters", {}).get("message_id") == job.actions_message_id
    ]


def uploaded(telegram: FakeTelegram, call: Call) -> bytes:
    result = call.response["result"]
    file = result["photo"][-1] if "photo" in result else result["document"]
    return telegram.files[file["file_id"]]


async def kept(bot: RunningBot, job: Job) -> list[bytes]:
    images = []
    for index in range(job.count):
        data = await bot.runner.delivery.originals.load(job.id, index)
        assert data is not None
        images.append(data)
    return images


def centre_colour(img: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    """The mean colour of the middle half of ``box`` (clear of the number in the corner)."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    inner = (left + w // 4, top + h // 4, right - w // 4, bottom - h // 4)
    return tuple(ImageStat.Stat(img.crop(inner)).mean)


def distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5


def assert_shows_every_panel(sheet: bytes, images: list[bytes], ratio: float) -> None:
    """Each cell of the sheet has the colours of its own panel, in order."""
    with Image.open(io.BytesIO(sheet)) as img:
        assert img.format == "JPEG"
        picture = img.convert("RGB")
    first = Image.open(io.BytesIO(images[0]))
    layout = sheets.grid(len(images), ratio, max_cell=first.size)
    assert picture.size == layout.size
    expected = []
    for data in images:
        panel = Image.open(io.BytesIO(data)).convert("RGB")
        panel.thumbnail(layout.cell)
        expected.append(centre_colour(panel, (0, 0, *panel.size)))
    for n in range(len(images)):
        # The panel is centred in its cell; with every panel the same size it fills it.
        seen = centre_colour(picture, layout.box(n))
        nearest = min(range(len(images)), key=lambda i: distance(seen, expected[i]))
        assert nearest == n, (n, seen, expected[n], expected[nearest])
        assert distance(seen, expected[n]) < 30, (n, seen, expected[n])


def assert_telegram_photo(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
    assert len(data) <= PHOTO_MAX_BYTES
    assert w + h <= PHOTO_MAX_SIDES
    assert max(w, h) <= PHOTO_MAX_RATIO * min(w, h)


@pytest.mark.parametrize(
    ("command", "columns"),
    [("/seq 2 16:9 a fox", 1), ("/seq 6 1:1 a fox", 3), ("/seq 15 9:16 a fox", 5)],
)
async def test_the_sheet_shows_every_panel_in_order_without_runcomfy(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    command: str,
    columns: int,
) -> None:
    runcomfy.script_next(JobScript(size=None))  # the requested ratio, 1024 px on the long side
    job = await finished(telegram, bot, command)
    requests = len(runcomfy.calls)

    answer = await answered(telegram, press(telegram, job, JobAction.SHEET))
    assert answer["text"] == "Making the contact sheet…"
    (call,) = await telegram.wait_for(lambda: replies(telegram, job, "sendPhoto"))
    assert call.params["caption"] == f"🗂 Job #{job.id}: {job.count} images"
    sheet = uploaded(telegram, call)
    assert_telegram_photo(sheet)
    ratio = sheets.panel_ratio(job.size)
    assert sheets.grid(job.count, ratio).columns == columns
    assert_shows_every_panel(sheet, await kept(bot, job), ratio)
    assert len(runcomfy.calls) == requests  # nothing fetched again, nothing billed
    assert runcomfy.count("submit") == 1
    assert_clean(telegram, runcomfy)


async def test_the_zip_holds_every_original_in_order_and_the_prompt(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    job = await finished(telegram, bot, "/seq 12 1:1 seed=7 a fox in the snow")
    requests = len(runcomfy.calls)
    answer = await answered(telegram, press(telegram, job, JobAction.ZIP))
    assert answer["text"] == "Packing the original files…"
    (call,) = await telegram.wait_for(lambda: replies(telegram, job, "sendDocument"))
    assert call.params["caption"] == f"📦 Job #{job.id}: 12 images"
    assert call.response["result"]["document"]["file_name"] == f"seq-{job.id}.zip"
    with zipfile.ZipFile(io.BytesIO(uploaded(telegram, call))) as archive:
        names = archive.namelist()
        assert names == [f"{n:02d}.jpg" for n in range(1, 13)] + ["prompt.txt"]
        originals = await kept(bot, job)
        assert [archive.read(f"{n:02d}.jpg") for n in range(1, 13)] == originals
        prompt = archive.read("prompt.txt").decode()
    assert "Prompt: a fox in the snow" in prompt
    assert "Images: 12 · ratio 1:1 · mode fast · seed 7" in prompt
    assert f"Request: {job.request_id}" in prompt and job.request_id
    assert len(runcomfy.calls) == requests
    assert_clean(telegram, runcomfy)


async def test_a_zip_over_the_limit_comes_in_parts(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    job = await finished(telegram, bot, "/seq 5 a fox")
    originals = await kept(bot, job)
    limit = sum(len(d) for d in originals) // 2 + 2000
    bot.runner.delivery.files.zip_part_bytes = limit
    await answered(telegram, press(telegram, job, JobAction.ZIP))

    def all_parts() -> list[Call] | None:
        calls = replies(telegram, job, "sendDocument")
        last = calls[-1].params["caption"] if calls else ""
        return calls if last.endswith(f"part {len(calls)} of {len(calls)}") else None

    calls = await telegram.wait_for(all_parts)
    parts = len(calls)
    assert parts >= 2
    names, contents = [], []
    for number, call in enumerate(calls, start=1):
        assert call.params["caption"] == (f"📦 Job #{job.id}: 5 images, part {number} of {parts}")
        data = uploaded(telegram, call)
        assert len(data) <= limit
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.namelist()[-1] == "prompt.txt"
            names += archive.namelist()[:-1]
            contents += [archive.read(n) for n in archive.namelist()[:-1]]
    assert names == ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg"]
    assert contents == originals


@pytest.mark.parametrize(
    ("action", "sending", "busy", "method"),
    [
        (
            JobAction.SHEET,
            "Making the contact sheet…",
            "The contact sheet is being made or was sent above.",
            "sendPhoto",
        ),
        (
            JobAction.ZIP,
            "Packing the original files…",
            "The ZIP is being sent or was sent above.",
            "sendDocument",
        ),
    ],
)
async def test_quick_taps_send_one_sheet_or_zip(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    action: JobAction,
    sending: str,
    busy: str,
    method: str,
) -> None:
    job = await finished(telegram, bot, "/seq 3 a fox")
    taps = [press(telegram, job, action) for _ in range(6)]
    answers = [(await answered(telegram, tap))["text"] for tap in taps]
    assert answers.count(sending) == 1 and answers.count(busy) == 5
    await telegram.wait_for(lambda: replies(telegram, job, method))
    # A while after it was sent, a tap still sends nothing; Originals is a button of its own.
    later = await answered(telegram, press(telegram, job, action))
    assert later["text"] == busy
    originals = await answered(telegram, press(telegram, job, JobAction.ORIGINALS))
    assert originals["text"] == "Sending the original files…"
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)
    assert len(replies(telegram, job, method)) == 1
    assert_clean(telegram, runcomfy)


@pytest.mark.parametrize("action", [JobAction.SHEET, JobAction.ZIP])
async def test_files_no_longer_kept_are_said(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot, action: JobAction
) -> None:
    job = await finished(telegram, bot, "/seq 2 a fox")
    shutil.rmtree(bot.runner.delivery.originals.folder)
    requests = len(runcomfy.calls)
    gone = f"The original files of job #{job.id} are no longer kept."

    def said() -> list[str]:
        return [c.params["text"] for c in replies(telegram, job, "sendMessage")]

    # Nothing went out, so the next tap tries again, and is answered again.
    for times in (1, 2):
        await answered(telegram, press(telegram, job, action))
        await telegram.wait_for(lambda times=times: said().count(gone) == times)
    assert replies(telegram, job, "sendPhoto") == replies(telegram, job, "sendDocument") == []
    assert len(runcomfy.calls) == requests


async def test_sheet_and_zip_work_after_a_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    first = await bots.start()
    job = await finished(telegram, first, "/seq 4 16:9 a fox")
    await bots.stop(first)
    second = await bots.start()
    requests = len(runcomfy.calls)
    assert (await answered(telegram, press(telegram, job, JobAction.SHEET)))["text"] == (
        "Making the contact sheet…"
    )
    assert (await answered(telegram, press(telegram, job, JobAction.ZIP)))["text"] == (
        "Packing the original files…"
    )
    (photo,) = await telegram.wait_for(lambda: replies(telegram, job, "sendPhoto"))
    (document,) = await telegram.wait_for(lambda: replies(telegram, job, "sendDocument"))
    assert_shows_every_panel(
        uploaded(telegram, photo), await kept(second, job), sheets.panel_ratio(job.size)
    )
    with zipfile.ZipFile(io.BytesIO(uploaded(telegram, document))) as archive:
        assert archive.namelist() == ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "prompt.txt"]
    assert len(runcomfy.calls) == requests
    assert_clean(telegram, runcomfy)


async def test_a_russian_speaker_gets_russian_labels_and_captions(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    ivan = {"id": 777000, "is_bot": False, "first_name": "Иван", "language_code": "ru"}
    telegram.send_text("/seq 3 a fox", chat_id=ivan["id"], from_user=ivan)
    job = await until_final(telegram, bot)
    assert [label for label, _ in telegram.buttons(*key(job))][3:] == ["🗂 Лист", "📦 ZIP"]
    folder = bot.runner.delivery.originals.folder / str(job.id)
    await telegram.wait_for(lambda: len(list(folder.glob("[0-9]*"))) == 3)
    tap = telegram.press_button(key(job), f"v1:sheet:{job.id}", from_user=ivan)
    assert (await answered(telegram, tap))["text"] == "Собираю контактный лист…"
    (call,) = await telegram.wait_for(lambda: replies(telegram, job, "sendPhoto"))
    assert call.params["caption"] == f"🗂 Задание №{job.id}: 3 изображения"
