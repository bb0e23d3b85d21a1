"""Short memories of what was just answered, so that pressing the same thing again posts nothing.

Kept in memory only (a restart forgets them, which costs at most one more answer each) and
bounded: each map holds entries for a fixed time from when they were made and at most ``cap`` of
them, the oldest dropped first. Pure: the clock is passed in.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_CAP = 10_000


class Recent(Generic[K, V]):
    """A map whose entries expire ``ttl`` seconds after they were put; at most ``cap`` entries."""

    def __init__(
        self,
        ttl: float,
        *,
        cap: int = DEFAULT_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.cap = cap
        self.clock = clock
        # In the order they were put, which is the order they expire in (one ttl for all).
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def _expire(self) -> None:
        now = self.clock()
        while self._entries:
            key, (until, _) = next(iter(self._entries.items()))
            if until > now:
                break
            del self._entries[key]

    def get(self, key: K) -> V | None:
        """The value put under ``key`` less than ``ttl`` seconds ago, else None."""
        self._expire()
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``ttl`` seconds from now (the oldest entry goes when full)."""
        self._expire()
        self._entries.pop(key, None)
        self._entries[key] = (self.clock() + self.ttl, value)
        while len(self._entries) > self.cap:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key`` (what it guarded did not happen after all)."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)


@dataclass
class Shown:
    """Something a repeat would post again: where it went, and whether a repeat was told so."""

    reply_to: int  # the message the earlier answer replied to
    thread_id: int | None = None
    told: bool = False


@dataclass
class Repeats:
    """The bot's short memories: /show and ℹ️ Details per (chat, job); outsiders' refusals per chat."""

    window: float
    outsider_window: float
    clock: Callable[[], float] = time.monotonic
    shows: Recent[tuple[int, int], Shown] = field(init=False)
    details: Recent[tuple[int, int], Shown] = field(init=False)
    outsiders: Recent[int, bool] = field(init=False)

    def __post_init__(self) -> None:
        self.shows = Recent(self.window, clock=self.clock)
        self.details = Recent(self.window, clock=self.clock)
        self.outsiders = Recent(self.outsider_window, clock=self.clock)

    def refuse_outsider(self, chat_id: int) -> bool:
        """Whether an outsider in ``chat_id`` gets a refusal now: once per chat and window."""
        if self.outsiders.get(chat_id):
            return False
        self.outsiders.put(chat_id, True)
        return True
