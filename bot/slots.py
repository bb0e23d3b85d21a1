"""A rate limit that hands out its slots by rank, not by arrival (pure asyncio, no IO).

Telegram and RunComfy each give the bot a budget of requests a second, and some requests matter
more than others: an album more than a progress edit, finding a running job done more than
asking a job five thousand places back in the queue where it is now. Each request asks for a
slot with ``later``: it ranks as if it had asked that many seconds later than it did. So a
request with ``later=0`` goes before every request that asked less than ``later`` seconds before
it, and a request never waits longer than ``later`` for the ones that come after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools


class RankedBucket:
    """A leaky bucket: ``capacity`` slots at once, refilled at ``rate`` a second.

    In any second at most ``capacity + rate`` slots are handed out. Callers that give up
    (cancelled while waiting) take no slot.
    """

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._level = 0.0  # slots in use, leaking at ``rate`` a second
        self._at = 0.0
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self.waiting = 0  # requests waiting for a slot (asked often: kept, not counted)

    async def acquire(self, later: float = 0.0) -> None:
        """Wait for a slot, ranked as if asked ``later`` seconds from now."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._leak(now)
        if not self._queue and self._level + 1 <= self.capacity:
            self._level += 1
            return
        turn: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._queue, (now + later, next(self._order), turn))
        self.waiting += 1
        turn.add_done_callback(self._left)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._hand_out())
        await turn

    async def close(self) -> None:
        """Stop handing out slots (callers still waiting are cancelled with their tasks)."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def idle(self, now: float) -> bool:
        """Whether the bucket is as good as new at ``now``: nobody waits, every slot refilled."""
        self._leak(now)
        return not self._queue and self._level == 0.0

    def _left(self, _: asyncio.Future[None]) -> None:
        self.waiting -= 1

    def _leak(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._at) * self.rate)
        self._at = now

    async def _hand_out(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if self._queue[0][2].done():  # its caller gave up
                heapq.heappop(self._queue)
                continue
            self._leak(loop.time())
            if self._level + 1 > self.capacity:
                await asyncio.sleep((self._level + 1 - self.capacity) / self.rate)
                continue
            self._level += 1
            heapq.heappop(self._queue)[2].set_result(None)
