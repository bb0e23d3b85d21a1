"""The files kept on disk (items 11 and 12 of issue 18): owner-only, capped, and Sheet/ZIP builds
that stay small whatever RunComfy sends. Through the real Application and the loopback fakes."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot import sheets
from bot.callbacks import JobAction
from bot.delivery import files as delivery_files
from bot.store import Job
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript, giant_png
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import answered, assert_clean, until_final
from tests.test_storyboard_files import finished, press, replies

MB = 1024 * 1024
ADA = 123456789  # the fake's default private chat


def mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def gone_said(telegram: FakeTelegram, job: Job) -> int:
    gone = f"The original files of job #{job.id} are no longer kept."
    return [c.params["text"] for c in replies(telegram, job, "sendMessage")].count(gone)


# ---- item 12: kept originals ------------------------------------------------------------------


async def test_kept_originals_are_readable_by_the_owner_only(
    telegram: FakeTelegram, bots: Bots, env: dict[str, str]
) -> None:
    # A folder an older version made with the default mode is tightened, too.
    folder = os.path.join(os.path.dirname(env["DATABASE_PATH"]), "originals")
    os.makedirs(folder, mode=0o755)
    os.chmod(folder, 0o755)
    bot = await bots.start()
    job = await finished(telegram, bot, "/seq 3 a fox")
    kept = bot.runner.delivery.originals.folder
    assert str(kept) == folder
    assert mode(kept) == 0o700
    assert mode(kept / str(job.id)) == 0o700
    files = sorted((kept / str(job.id)).iterdir())
    assert [f.name for f in files] == ["0", "1", "2"]
    assert {mode(f) for f in files} == {0o600}


async def test_the_oldest_jobs_files_go_first_past_the_cap(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(ORIGINALS_MAX_MB="1")
    runcomfy.default_script = JobScript(jpeg_bytes=200_000)  # 2 images: 400 kB a job
    jobs = [await finished(telegram, bot, f"/seq 2 fox number {n}") for n in (1, 2)]
    folder = bot.runner.delivery.originals.folder
    assert sorted(p.name for p in folder.glob("[0-9]*")) == ["1", "2"]  # 800 kB: under 1 MB

    telegram.send_text("/seq 2 fox number 3")  # 1.2 MB: job 1's files make room
    await telegram.wait_for(lambda: not (folder / "1").exists())
    await telegram.wait_for(lambda: len(list((folder / "3").glob("[0-9]"))) == 2)
    assert sorted(p.name for p in folder.glob("[0-9]*")) == ["2", "3"]
    assert bot.runner.delivery.originals.total_bytes <= MB

    # Job 1's buttons say so; job 2's still work.
    oldest = jobs[0]
    for action in (JobAction.SHEET, JobAction.ZIP, JobAction.ORIGINALS):
        await answered(telegram, press(telegram, oldest, action))
    await telegram.wait_for(lambda: gone_said(telegram, oldest) == 3)
    assert replies(telegram, oldest, "sendPhoto") == replies(telegram, oldest, "sendDocument") == []
    await answered(telegram, press(telegram, jobs[1], JobAction.SHEET))
    await telegram.wait_for(lambda: replies(telegram, jobs[1], "sendPhoto"))
    assert_clean(telegram, runcomfy)


async def test_a_restarted_bot_counts_the_files_already_kept(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    first = await bots.start(ORIGINALS_MAX_MB="1")
    runcomfy.default_script = JobScript(jpeg_bytes=300_000)
    await finished(telegram, first, "/seq 2 fox number 1")
    await bots.stop(first)
    second: RunningBot = await bots.start(ORIGINALS_MAX_MB="1")
    folder = second.runner.delivery.originals.folder
    telegram.send_text("/seq 2 fox number 2")
    await telegram.wait_for(lambda: not (folder / "1").exists())
    await telegram.wait_for(lambda: len(list((folder / "2").glob("[0-9]"))) == 2)


# ---- item 11: sheets and ZIPs ------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """The most the process's resident memory grew above its level at the start, sampled every
    few milliseconds in a thread (``[bytes]`` once the block ends)."""
    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss() - base)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


async def test_results_far_beyond_the_size_asked_for_or_not_jpeg_png_webp_are_refused(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await asyncio.to_thread(giant_png)  # made before measuring: the fake shares the process
    runcomfy.script_next(JobScript(bad_images={1: "giant", 2: "gif"}))
    with peak_growth() as grew:
        telegram.send_text("/seq 3 16:9 a fox")
        job = await until_final(telegram, bot)
        assert job.error is not None
        assert "image 2: the image was far larger than asked for" in job.error
        assert "image 3: the image was not a JPEG, PNG or WebP" in job.error
        assert job.delivered_images == 1
        await telegram.wait_for(lambda: job.actions_message_id is not None)
        await answered(telegram, press(telegram, job, JobAction.SHEET))
        await telegram.wait_for(lambda: replies(telegram, job, "sendPhoto"))
    assert grew[0] < 60 * MB, grew[0] / MB
    assert telegram.calls_to("sendDocument") == []  # the giant was not sent as a file either


async def test_a_kept_file_far_beyond_the_size_asked_for_makes_no_sheet(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    giant = await asyncio.to_thread(giant_png)
    job = await finished(telegram, bot, "/seq 2 16:9 a fox")
    # As a file an older version kept, or one changed on the disk: checked again before decoding.
    (bot.runner.delivery.originals.folder / str(job.id) / "1").write_bytes(giant)
    with peak_growth() as grew:
        await answered(telegram, press(telegram, job, JobAction.SHEET))
        refused = (
            f"No contact sheet of job #{job.id}: image 2: the image was far larger than asked for."
        )
        await telegram.wait_for(
            lambda: refused in [c.params["text"] for c in replies(telegram, job, "sendMessage")]
        )
    assert grew[0] < 60 * MB, grew[0] / MB
    assert replies(telegram, job, "sendPhoto") == []
    # The ZIP stores files as they are: nothing is decoded, and it goes out.
    await answered(telegram, press(telegram, job, JobAction.ZIP))
    await telegram.wait_for(lambda: replies(telegram, job, "sendDocument"))


@pytest.mark.parametrize("waiting", [True, False])
async def test_only_two_sheets_or_zips_are_made_at_once(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    monkeypatch: pytest.MonkeyPatch,
    waiting: bool,
) -> None:
    if not waiting:
        monkeypatch.setattr(delivery_files, "BUILDS_WAITING", 0)
    jobs = [await finished(telegram, bot, f"/seq 2 fox number {n}") for n in (1, 2, 3)]
    building, most = [0], [0]
    real = sheets.contact_sheet

    def counted(*args: object, **kwargs: object) -> bytes:
        building[0] += 1
        most[0] = max(most[0], building[0])
        try:
            return real(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            building[0] -= 1

    monkeypatch.setattr(sheets, "contact_sheet", counted)
    # Each upload takes a while: the first two hold their turns meanwhile.
    telegram.delay_next("sendPhoto", 0.5, times=2)
    telegram.delay_next("sendDocument", 0.5, times=2)
    taps = [
        press(telegram, jobs[0], JobAction.SHEET),
        press(telegram, jobs[1], JobAction.ZIP),
        press(telegram, jobs[2], JobAction.SHEET),
    ]
    answers = [(await answered(telegram, tap))["text"] for tap in taps]
    assert answers[:2] == ["Making the contact sheet…", "Packing the original files…"]
    if waiting:
        assert answers[2] == "Another sheet or ZIP is being made: yours follows in a moment."
    else:
        assert answers[2] == "Many sheets and ZIPs are being made right now: try again in a minute."
    await telegram.wait_for(lambda: replies(telegram, jobs[0], "sendPhoto"))
    await telegram.wait_for(lambda: replies(telegram, jobs[1], "sendDocument"))
    if not waiting:  # nothing was made for the third tap: the next one makes it
        await asyncio.sleep(0.1)
        assert replies(telegram, jobs[2], "sendPhoto") == []
        again = await answered(telegram, press(telegram, jobs[2], JobAction.SHEET))
        assert again["text"] == "Making the contact sheet…"
    await telegram.wait_for(lambda: replies(telegram, jobs[2], "sendPhoto"))
    assert most[0] <= 2
    assert_clean(telegram, runcomfy)


async def test_files_of_a_job_not_yet_delivered_outlast_the_cap(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(
        ORIGINALS_MAX_MB="1", TELEGRAM_RETRY_MAX_SECONDS="0.1", DELIVERY_DEADLINE_SECONDS="60"
    )
    runcomfy.default_script = JobScript(jpeg_bytes=300_000)  # 2 images: 600 kB a job
    folder = bot.runner.delivery.originals.folder
    other = 5550001234  # another person's private chat, where Telegram works

    def kept(job_id: int) -> int:
        return len(list((folder / str(job_id)).glob("[0-9]")))

    # Job 1's album keeps failing (Telegram trouble in its chat): it waits, its files pinned.
    telegram.fail_next(
        "sendMediaGroup", status=500, description="Internal", times=10**6, chat_id=ADA
    )
    telegram.send_text("/seq 2 fox number 1")
    await telegram.wait_for(lambda: kept(1) == 2)
    for n in (2, 3):  # 1.8 MB in all: the cap takes job 2's files, never job 1's
        telegram.send_text(f"/seq 2 fox number {n}", chat_id=other, user_id=other)
        await until_final(telegram, bot, n)
        await telegram.wait_for(lambda n=n: kept(n) == 2)
    await telegram.wait_for(lambda: kept(2) == 0)
    assert kept(1) == 2 and kept(3) == 2
    job = bot.store.get(1)
    assert job is not None and not job.final

    telegram.recover()  # job 1 is delivered from its kept files; then the cap may take them
    done = await until_final(telegram, bot, 1)
    assert done.delivered_images == 2
    telegram.send_text("/seq 2 fox number 4", chat_id=other, user_id=other)
    await telegram.wait_for(lambda: kept(1) == 0)
    await telegram.wait_for(lambda: kept(4) == 2)
    assert bot.runner.delivery.originals.total_bytes <= MB
