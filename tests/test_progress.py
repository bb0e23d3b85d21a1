"""Progress you can read: a bar and the time left from history, the wait from the queue's pace."""

from __future__ import annotations

import time

from bot import render, schedule
from bot.models import Origin, SeqRequest
from bot.schedule import Estimate, Window
from bot.store import Status
from tests.conftest import RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import assert_clean, status_history, until_final
from tests.test_render import make_job

OTHER_CHAT = 555


# ---- the pure helpers ---------------------------------------------------------------------------


def test_window_knows_the_median_and_compares_as_before() -> None:
    window = schedule.window_of([float(x) for x in range(10, 31)])
    assert window is not None and window.expected == 20.0
    assert window == Window(earliest=12.0, latest=29.0)
    assert Window(earliest=10.0, latest=30.0).expected == 20.0  # no median: the middle


def test_the_clock_behind_an_estimate_moves_in_ten_second_steps() -> None:
    assert [schedule.coarse(s) for s in (-3.0, 0.0, 9.9, 10.0, 19.9, 61.0)] == [
        0.0, 0.0, 0.0, 10.0, 10.0, 60.0
    ]  # fmt: skip


def test_seconds_left_counts_on_the_usual_time_and_gives_up_past_the_slowest() -> None:
    window = Window(earliest=10.0, latest=40.0, typical=30.0)
    assert schedule.seconds_left(window, 0.0) == 30.0
    assert schedule.seconds_left(window, 20.0) == 10.0
    assert schedule.seconds_left(window, 35.0) == 0.0  # late, but similar jobs took this long
    assert schedule.seconds_left(window, 40.5) is None  # slower than nearly all: no promise


def test_bar_fills_with_the_share_done() -> None:
    assert schedule.bar(0.0) == "░░░░░░░░"
    assert schedule.bar(0.5) == "▓▓▓▓░░░░"
    assert schedule.bar(0.99) == "▓▓▓▓▓▓▓░"
    assert schedule.bar(1.7) == "▓▓▓▓▓▓▓▓"
    assert schedule.bar(-1.0) == "░░░░░░░░"
    assert schedule.bar(0.5, cells=4) == "▓▓░░"


def test_queue_wait_needs_the_queue_to_move() -> None:
    assert schedule.queue_wait([], 100.0) is None
    assert schedule.queue_wait([(0.0, 5)], 100.0) is None
    # Two places in 20 s: 10 s a place, 4 places left.
    seen = [(0.0, 6), (20.0, 4)]
    assert schedule.queue_wait(seen, 20.0) == 40.0
    assert schedule.queue_wait(seen, 29.9) == 40.0  # the same text until a step has passed
    assert schedule.queue_wait(seen, 30.0) == 30.0
    assert schedule.queue_wait(seen, 50.0) == 10.0
    assert schedule.queue_wait(seen, 60.0) is None  # overdue: only the place is said
    assert schedule.queue_wait([(0.0, 2), (1.0, 1)], 1.0) is None  # under one step: not worth it


# ---- the texts ----------------------------------------------------------------------------------


def test_generating_shows_a_bar_and_the_time_left_with_history() -> None:
    window = Window(earliest=10.0, latest=40.0, typical=30.0)
    running = make_job(status=Status.RUNNING, started_at=1000.0)

    def line(now: float) -> str:
        return render.status_text(running, now=now, estimate=Estimate(window=window)).split("\n")[0]

    assert line(1001.0) == "🎨 Generating ░░░░░░░░ about 30 s left"
    assert line(1012.0) == "🎨 Generating ▓▓░░░░░░ about 20 s left"
    assert line(1019.9) == line(1012.0)  # within one 10-second step nothing changes: no edit
    assert line(1035.0) == "🎨 Generating ▓▓▓▓▓▓▓▓ almost done"
    assert line(1055.0) == "🎨 Generating… 0:50"  # past every similar job: no estimate
    long = Window(earliest=60.0, latest=400.0, typical=200.0)
    text = render.status_text(running, now=1000.0, estimate=Estimate(window=long))
    assert text.startswith("🎨 Generating ░░░░░░░░ about 3 min left")


def test_generating_without_history_is_as_before() -> None:
    running = make_job(status=Status.RUNNING, started_at=1000.0)
    for estimate in (None, Estimate(), Estimate(window=None)):
        text = render.status_text(running, now=1042.0, estimate=estimate)
        assert text.startswith("🎨 Generating… 0:40")


def test_queued_shows_the_wait_once_known() -> None:
    queued = make_job(queue_position=3)
    assert render.status_text(queued, estimate=Estimate()).startswith("⏳ Queued (position 3)…")
    assert render.status_text(queued, estimate=Estimate(queue_wait=37.0)).startswith(
        "⏳ Queued (position 3, about 40 s to wait)…"
    )
    assert render.status_text(queued, estimate=Estimate(queue_wait=125.0)).startswith(
        "⏳ Queued (position 3, about 2 min to wait)…"
    )
    unplaced = make_job(queue_position=None)
    assert render.status_text(unplaced, estimate=Estimate(queue_wait=37.0)).startswith("⏳ Queued…")


def test_progress_texts_in_russian() -> None:
    window = Window(earliest=10.0, latest=40.0, typical=30.0)
    running = make_job(status=Status.RUNNING, started_at=1000.0, lang="ru")
    text = render.status_text(running, now=1012.0, estimate=Estimate(window=window))
    assert text.startswith("🎨 Генерация ▓▓░░░░░░ осталось около 20 с")
    queued = make_job(queue_position=3, lang="ru")
    text = render.status_text(queued, estimate=Estimate(queue_wait=125.0))
    assert text.startswith("⏳ В очереди (место 3, ждать около 2 мин)…")


# ---- through the real Application ---------------------------------------------------------------


def seed_history(bot: RunningBot, count: int, seconds: float, jobs: int = 5) -> None:
    """Finished jobs of ``count`` images (fast mode) that generated for ``seconds`` each."""
    store, now = bot.store, time.time()
    for n in range(jobs):
        request = SeqRequest(
            count=count, size="2048:2048 (1:1)", mode="fast", seed=None, prompt="x", text="x"
        )
        origin = Origin(
            chat_id=OTHER_CHAT,
            message_id=count * 100 + n,
            user_id=OTHER_CHAT,
            requester_id=OTHER_CHAT,
            user_name=None,
            thread_id=None,
            chat_type="private",
        )
        job = store.create_job(request, origin)
        assert job is not None
        start = now - 600 + n
        store.update(job, status=Status.DONE, started_at=start, completed_at=start + seconds)


async def test_with_history_the_status_shows_a_bar_and_the_time_left(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    seed_history(bot, count=2, seconds=45.0)
    runcomfy.script_next(JobScript(queued_polls=1, running_polls=2))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot, 6)
    assert job.status == Status.DONE
    lines = [h.split("\n")[0] for h in status_history(telegram, job)]
    assert "🎨 Generating ░░░░░░░░ about 45 s left" in lines
    assert not any(line.startswith("🎨 Generating…") for line in lines)
    assert_clean(telegram, runcomfy)


async def test_without_history_the_status_promises_no_time(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    seed_history(bot, count=2, seconds=45.0, jobs=4)  # one short of an estimate
    seed_history(bot, count=3, seconds=45.0)  # another count says nothing about this one
    runcomfy.script_next(JobScript(queued_polls=2, running_polls=2))
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot, 10)
    history = status_history(telegram, job)
    assert "🎨 Generating… 0:00" in [h.split("\n")[0] for h in history]
    assert not any("left" in h or "▓" in h or "░" in h or "to wait" in h for h in history)


async def test_once_the_queue_moves_the_status_says_the_wait(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    # A place every 2 s, from place 7: once place 6 is seen, about 6 × 2 s are left.
    runcomfy.script_next(JobScript(queued_seconds=14.0, running_seconds=0.1))
    telegram.send_text("/seq 2 a fox")

    def shown() -> list[str]:
        job = bot.store.get(1)
        if job is None or job.status_message_id is None:
            return []
        return [h.split("\n")[0] for h in telegram.history[(job.chat_id, job.status_message_id)]]

    waits = await telegram.wait_for(lambda: [line for line in shown() if "to wait" in line])
    assert waits[0] == "⏳ Queued (position 6, about 10 s to wait)…"
    # Before the queue moved, only the place was said.
    assert shown()[: shown().index(waits[0])][-1] == "⏳ Queued (position 7)…"
    telegram.send_text("/cancel")
    assert (await until_final(telegram, bot)).status == Status.CANCELLED


async def test_a_queue_that_moves_back_starts_the_count_afresh(bot: RunningBot) -> None:
    estimates, now = bot.runner.estimates, time.time()
    estimates.saw_place(7, 6, now - 20)
    estimates.saw_place(7, 6, now - 15)  # the same place again: first seen is kept
    estimates.saw_place(7, 4, now)
    queued = make_job(id=7, queue_position=4)
    assert estimates.estimate(queued) == Estimate(queue_wait=40.0)
    estimates.saw_place(7, 5, now)  # moved back: nothing known about its pace any more
    assert estimates.estimate(queued) == Estimate(queue_wait=None)
    estimates.saw_place(7, None, now)
    assert estimates.queue_seen[7] == []
