"""The files kept on disk (items 11 and 12 of issue 18): owner-only, capped, and Sheet/ZIP builds
that stay small whatever RunComfy sends. Through the real Application and the loopback fakes."""

from __future__ import annotations

import os
import stat

from bot.callbacks import JobAction
from bot.store import Job
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import answered, assert_clean
from tests.test_storyboard_files import finished, press, replies

MB = 1024 * 1024


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
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]  # 800 kB: under 1 MB

    telegram.send_text("/seq 2 fox number 3")  # 1.2 MB: job 1's files make room
    await telegram.wait_for(lambda: not (folder / "1").exists())
    await telegram.wait_for(lambda: len(list((folder / "3").glob("[0-9]"))) == 2)
    assert sorted(p.name for p in folder.iterdir()) == ["2", "3"]
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
