"""The poll schedule (pure): within budget, sparse when nothing can happen, dense when it may."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from bot import schedule
from bot.flood import PriorityRateLimiter
from bot.schedule import Window, budget, next_delay, window_of


def test_window_needs_history_and_takes_the_10th_to_95th_percentile() -> None:
    assert window_of([10.0, 11.0, 12.0]) is None
    window = window_of([float(x) for x in range(10, 31)])
    assert window == Window(earliest=12.0, latest=29.0)


def test_queued_far_back_polls_sparsely() -> None:
    common = {"interval": 2.0, "elapsed": 0.0, "polls": 1, "running_for": None, "window": None}
    assert next_delay(queue_position=1, **common) == 2.0  # type: ignore[arg-type]
    assert next_delay(queue_position=6, **common) == 6.0  # type: ignore[arg-type]
    assert next_delay(queue_position=500, **common) == 10.0  # type: ignore[arg-type]


def test_without_history_it_is_the_plain_interval() -> None:
    assert (
        next_delay(
            interval=2.0, elapsed=30.0, polls=10, running_for=5.0, queue_position=None, window=None
        )
        == 2.0
    )


def test_sleeps_until_similar_jobs_could_finish_then_polls_densely() -> None:
    window = Window(earliest=14.0, latest=18.0)
    common = {"interval": 2.0, "queue_position": None, "window": window}
    # 1 s into generating: nothing before 14 - 0.5 s; sleep (at most 5 intervals), then the rest.
    assert next_delay(elapsed=5.0, polls=3, running_for=1.0, **common) == 10.0  # type: ignore[arg-type]
    assert next_delay(elapsed=5.0, polls=3, running_for=5.0, **common) == 8.5  # type: ignore[arg-type]
    # In the window: what the budget allows until its end (5.5 s, 7.75 polls), spread evenly.
    assert next_delay(elapsed=20.0, polls=8, running_for=13.0, **common) == 5.5 / 7.75  # type: ignore[arg-type]
    # ... but never more often than every quarter interval.
    assert next_delay(elapsed=60.0, polls=8, running_for=17.0, **common) == 0.5  # type: ignore[arg-type]
    # Later than every similar job: the plain interval again.
    assert next_delay(elapsed=40.0, polls=15, running_for=21.0, **common) == 2.0  # type: ignore[arg-type]


def test_budget_is_never_exceeded() -> None:
    window = Window(earliest=5.0, latest=30.0)
    delay = next_delay(
        interval=2.0, elapsed=10.0, polls=8, running_for=6.0, queue_position=None, window=window
    )
    # 8 polls made; the 9th is allowed once the budget (t/2 + 3) reaches 9 plus the one held
    # back for finding the job done: at t = 14.
    assert delay == 4.0


def simulate(
    queue: float, generate: float, window: Window | None, interval: float = 2.0
) -> tuple[int, float, float]:
    """Poll a job that queues ``queue`` s then generates ``generate`` s, as ``PollStep.poll``
    does: (polls, overhead, generating time as the bot records it).

    The bot sees generating begin between two polls and takes the middle; it records the end
    when it sees it.
    """
    t, polls, started, last_queued = schedule.first_delay(interval, 0.0), 0, None, None
    while True:
        polls += 1
        if t >= queue + generate:
            began = started if started is not None else t
            return polls, t - (queue + generate), t - began
        position = None
        if t >= queue:
            if started is None:
                started = (last_queued + t) / 2 if last_queued is not None else t
        else:
            position, last_queued = int((queue - t) / 2) + 1, t
        t += next_delay(
            interval=interval,
            elapsed=t,
            polls=polls,
            running_for=None if started is None else t - started,
            queue_position=position,
            window=window if started is not None else None,
        )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def test_simulated_jobs_stay_within_budget_and_deliver_sooner_than_fixed_polling() -> None:
    rng = random.Random(7)
    window = window_of([rng.uniform(14, 19) for _ in range(50)])
    overheads = []
    for _ in range(500):
        queue, generate = rng.uniform(0, 10), rng.uniform(14, 19)
        polls, overhead, _ = simulate(queue, generate, window)
        assert polls <= budget(queue + generate, 2.0)
        overheads.append(overhead)
    # Fixed 2 s polling would give about 1.0 and 1.9 here.
    assert percentile(overheads, 0.5) <= 0.5
    assert percentile(overheads, 0.95) <= 1.5
    assert schedule.DENSE_FRACTION * 2.0 == 0.5


def test_a_model_like_stream_learns_its_own_window_and_finds_jobs_done_soon() -> None:
    """The shape of ``bench/run.py --mode steady``: queued 0-4 s, generating 2 s + 1.8 s per
    image with a 15 % lognormal spread; the window is learnt from what the bot recorded."""
    rng = random.Random(3)
    history: dict[int, list[float]] = {}
    overheads = []
    for n in range(400):
        count = (2, 4, 6, 4)[n % 4]
        queue, generate = rng.uniform(0, 4), (2 + 1.8 * count) * rng.lognormvariate(0, 0.15)
        seen = history.setdefault(count, [])
        polls, overhead, recorded = simulate(queue, generate, window_of(seen[-50:]))
        assert polls <= budget(queue + generate, 2.0)
        seen.append(recorded)
        if n >= 60:  # after the warm-up, as the benchmark counts
            overheads.append(overhead)
    # With the window at the 5th-95th percentile +-1 s and a poll at once: 0.51 and 1.01 s.
    assert percentile(overheads, 0.5) <= 0.45
    assert percentile(overheads, 0.95) <= 1.3


def requester(
    limiter: PriorityRateLimiter, order: list[str]
) -> Callable[[str, str], asyncio.Task[bool]]:
    """Start requests through ``limiter``; each adds its name to ``order`` when it is sent."""

    def request(name: str, endpoint: str) -> asyncio.Task[bool]:
        async def call(*_: object) -> bool:
            order.append(name)
            return True

        return asyncio.create_task(
            limiter.process_request(call, (), {}, endpoint, {"chat_id": 1}, None)
        )

    return request


async def test_messages_get_telegram_slots_before_edits_that_asked_earlier() -> None:
    """The bot's rate limiter lets replies and albums go before status edits."""
    # Two requests at once, then one every 0.1 s.
    # No private chat pace here: only the overall budget is the limit.
    limiter = PriorityRateLimiter(
        max_retries=0, overall_max_rate=2, overall_time_period=0.2, private_burst=0
    )
    await limiter.initialize()
    order: list[str] = []
    request = requester(limiter, order)

    first = [request(f"fill {n}", "sendMessage") for n in range(2)]
    await asyncio.gather(*first)  # the bucket is full now
    queued = [
        request("edit 1", "editMessageText"),
        request("album", "sendMediaGroup"),
        request("edit 2", "editMessageText"),
        request("reply", "sendMessage"),
    ]
    await asyncio.sleep(0)  # every request has asked for its slot
    assert limiter.waiting == 4  # what the status board calls Telegram's backlog
    await asyncio.gather(*queued)
    assert order == ["fill 0", "fill 1", "album", "reply", "edit 1", "edit 2"]
    assert limiter.waiting == 0
    await limiter.shutdown()


async def test_an_edit_waits_for_messages_only_so_long() -> None:
    """Under a backlog that never clears, an edit (a final state, mostly) still goes, late."""
    # One request every 0.4 s; an edit ranks as if it had asked 0.4 s later than it did.
    limiter = PriorityRateLimiter(
        max_retries=0,
        overall_max_rate=1,
        overall_time_period=0.4,
        edit_max_wait=0.4,
        private_burst=0,
    )
    await limiter.initialize()
    order: list[str] = []
    request = requester(limiter, order)

    await request("fill", "sendMessage")
    edit = request("edit", "editMessageText")  # ranks at +0.4 s
    early = request("early album", "sendMediaGroup")  # ranks at +0: before the edit
    # On purpose: this album asks 0.6 s in, after the edit has waited its 0.4 s and before the
    # slot at 0.8 s, which the edit and this album both want.
    await asyncio.sleep(0.6)
    late = request("late album", "sendMediaGroup")
    await asyncio.gather(edit, early, late)
    assert order == ["fill", "early album", "edit", "late album"]
    await limiter.shutdown()
