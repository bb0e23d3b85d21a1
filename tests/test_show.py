"""/show: a job's images again from Telegram's copies, through the real Application."""

from __future__ import annotations

from bot.store import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.helpers import assert_clean, reply_to, until_final

ADA = 123456789
BOB = 222333444


def photo_ids(call: Call) -> list[str]:
    """The largest photo size of each message an album call returned."""
    return [m["photo"][-1]["file_id"] for m in call.response["result"]]


async def test_show_sends_the_same_file_ids_with_no_runcomfy_request_and_no_upload(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 4 a lighthouse through four seasons")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    delivered = photo_ids(album)
    assert job.photos == {str(i): fid for i, fid in enumerate(delivered)}
    runcomfy_calls = len(runcomfy.calls)

    command = telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)
    again = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert again.files == {}  # nothing uploaded
    assert [m["media"] for m in again.params["media"]] == delivered
    assert [m["type"] for m in again.params["media"]] == ["photo"] * 4
    assert again.params["media"][0]["caption"] == album.params["media"][0]["caption"]
    assert again.params["reply_parameters"]["message_id"] == command["message"]["message_id"]
    assert len(runcomfy.calls) == runcomfy_calls  # RunComfy was not asked anything
    assert_clean(telegram, runcomfy)


async def test_show_answers_one_line_for_another_chat_an_unknown_job_and_no_number(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 2 a fox")
    await until_final(telegram, bot)
    elsewhere = await reply_to(telegram, telegram.send_text("/show 1", chat_id=BOB))
    assert elsewhere == "There is no job 1 in this chat."
    unknown = await reply_to(telegram, telegram.send_text("/show 99"))
    assert unknown == "There is no job 99 in this chat."
    bare = await reply_to(telegram, telegram.send_text("/show"))
    assert bare == "Which job? For example /show 12 (the numbers are in /jobs)."
    assert len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 1  # only the delivery
    assert all("\n" not in text for text in (elsewhere, unknown, bare))


async def test_show_of_a_job_that_delivered_nothing_is_one_line(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(outcome="failed"))
    telegram.send_text("/seq 2 a fox")
    assert (await until_final(telegram, bot)).status == Status.FAILED
    answer = await reply_to(telegram, telegram.send_text("/show 1"))
    assert answer == "Job #1 has no delivered images to show."
    assert telegram.calls_to("sendMediaGroup") == []


async def test_show_of_a_job_still_running_is_one_line(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 2 a fox")
    await runcomfy.wait_for(lambda: runcomfy.count("submit") == 1)
    answer = await reply_to(telegram, telegram.send_text("/show #1"))
    assert answer == "Job #1 is not finished yet."


async def test_show_works_after_a_restart(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start()
    telegram.send_text("/seq 3 a fox")
    await until_final(telegram, bot)
    delivered = photo_ids(telegram.calls_to("sendMediaGroup", ok_only=True)[0])
    await bots.stop(bot)
    runcomfy_calls = len(runcomfy.calls)

    await bots.start()
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)
    again = telegram.calls_to("sendMediaGroup", ok_only=True)[-1]
    assert again.files == {}
    assert [m["media"] for m in again.params["media"]] == delivered
    assert len(runcomfy.calls) == runcomfy_calls


async def test_show_sends_photos_and_documents_as_they_were_planned(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    runcomfy.script_next(JobScript(bad_images={1: "huge"}))
    telegram.send_text("/seq 3 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    (document,) = telegram.calls_to("sendDocument", ok_only=True)
    document_id = document.response["result"]["document"]["file_id"]

    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendDocument", ok_only=True)) == 2)
    photos, again = (
        telegram.calls_to("sendMediaGroup", ok_only=True)[-1],
        telegram.calls_to("sendDocument", ok_only=True)[-1],
    )
    assert [m["media"] for m in photos.params["media"]] == [job.photos["0"], job.photos["2"]]
    assert photos.files == {} and again.files == {}
    assert again.params["document"] == document_id
    assert_clean(telegram, runcomfy)
