"""Each person's pace on the studio's API: a token bucket per person (pure; the clock is given)."""

from __future__ import annotations

import math

MAX_PEOPLE = 10_000  # buckets kept; full ones are dropped first (they carry no debt)


class RateLimit:
    """``rate`` requests a second, ``burst`` at once, per person."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[int, tuple[float, float]] = {}  # person -> (tokens, at)

    def take(self, person: int, now: float) -> float:
        """0 when the request may go ahead (one token taken); else the seconds until it may."""
        tokens, at = self._buckets.get(person, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[person] = (tokens - 1.0, now)
            self._trim(now)
            return 0.0
        self._buckets[person] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _trim(self, now: float) -> None:
        if len(self._buckets) <= MAX_PEOPLE:
            return
        # A bucket full again by now is the same as no bucket: those go.
        full = math.ceil(self.burst / self.rate)
        for person, (_, at) in list(self._buckets.items()):
            if now - at >= full:
                del self._buckets[person]
        while len(self._buckets) > MAX_PEOPLE:  # all busy: the oldest go
            del self._buckets[next(iter(self._buckets))]
