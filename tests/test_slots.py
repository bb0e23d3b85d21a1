"""Rate limits that hand out slots by rank: what matters most goes first, within the budget."""

from __future__ import annotations

import asyncio

from bot.runcomfy import RunComfyClient
from bot.slots import RankedBucket
from tests.conftest import RC_TOKEN
from tests.fakes.runcomfy_api import FakeRunComfy


async def test_a_full_bucket_hands_slots_out_by_rank_not_by_arrival() -> None:
    bucket = RankedBucket(capacity=1, rate=20)
    order: list[str] = []

    async def ask(name: str, later: float) -> None:
        await bucket.acquire(later)
        order.append(name)

    await ask("first", 0.0)  # the bucket is full now
    asked = [
        asyncio.create_task(ask("far back", 1.0)),
        asyncio.create_task(ask("in between", 0.5)),
        asyncio.create_task(ask("at the front", 0.0)),
    ]
    await asyncio.sleep(0)
    assert bucket.waiting == 3
    await asyncio.gather(*asked)
    assert order == ["first", "at the front", "in between", "far back"]
    assert bucket.waiting == 0
    await bucket.close()


async def test_no_window_gets_more_than_the_bucket_and_its_refill() -> None:
    bucket = RankedBucket(capacity=2, rate=40)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def ask(later: float) -> None:
        await bucket.acquire(later)
        times.append(loop.time())

    await asyncio.gather(*(ask(later=n % 3 * 0.1) for n in range(30)))
    times.sort()
    # In any quarter second: the 2 in the bucket and the 10 it refills, never more.
    most = max(sum(1 for t in times if start <= t < start + 0.25) for start in times)
    assert most <= 12
    assert times[-1] - times[0] >= (30 - 2) / 40 * 0.95  # and the budget is spent, not exceeded
    await bucket.close()


async def test_a_caller_that_gives_up_takes_no_slot() -> None:
    bucket = RankedBucket(capacity=1, rate=5)
    await bucket.acquire()
    gives_up = asyncio.create_task(bucket.acquire())
    waits = asyncio.create_task(bucket.acquire(later=1.0))
    await asyncio.sleep(0)
    gives_up.cancel()
    await asyncio.sleep(0)
    assert bucket.waiting == 1
    await asyncio.wait_for(waits, 2)
    assert bucket.waiting == 0
    await bucket.close()


async def test_runcomfy_polls_of_jobs_far_back_in_the_queue_wait_for_the_others(
    runcomfy: FakeRunComfy,
) -> None:
    """With thousands queued, a running job's poll must not wait behind all of theirs."""
    client = RunComfyClient(base_url=runcomfy.base_url, token=RC_TOKEN, timeout=2, max_rate=20)
    payload = {"text": "Generate 2 images of a fox.", "sequential_image_generation_options": 2}
    try:
        far = (await client.submit(payload)).request_id
        near = (await client.submit(payload)).request_id
        polls = [asyncio.create_task(client.status(far, place=5000)) for _ in range(6)]
        polls.append(asyncio.create_task(client.status(near)))
        await asyncio.gather(*polls)
    finally:
        await client.aclose()
    asked = [c.request_id for c in runcomfy.calls if c.endpoint == "status"]
    assert sorted(asked) == sorted([near] + [far] * 6)
    # First, or second if the bucket had refilled by the time the first far poll asked.
    assert asked.index(near) <= 1
