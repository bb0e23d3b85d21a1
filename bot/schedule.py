"""When to ask RunComfy again (pure): sparse while nothing can happen, dense when it likely will.

Each job may spend about one status request per poll interval of its life, plus a few
(``elapsed / interval + EXTRA_POLLS``). Polling at that fixed rate makes images wait half an interval
on average after they are ready. Instead the budget is saved while the job sits far back in the queue
or has been generating for less time than similar jobs ever needed, and spent in quick polls around
the time similar jobs (same image count and mode) have finished before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

EXTRA_POLLS = 3
DENSE_FRACTION = 0.25  # dense polls come every quarter interval
MAX_SLEEP_INTERVALS = 5.0  # never silent for longer: the status message should keep moving
RESERVE_POLLS = 1
WINDOW_MARGIN = 0.5  # intervals of dense polling before and after the learnt window


@dataclass(frozen=True)
class Window:
    """When similar jobs finished generating, in seconds after they started."""

    earliest: float
    latest: float


def budget(elapsed: float, interval: float) -> float:
    """How many status requests a job may have made ``elapsed`` seconds after submit."""
    return elapsed / interval + EXTRA_POLLS


def window_of(durations: list[float]) -> Window | None:
    """The 5th to 95th percentile of past generation times, or None with too little history."""
    if len(durations) < 5:
        return None
    ordered = sorted(durations)
    low = ordered[int(0.05 * (len(ordered) - 1))]
    high = ordered[round(0.95 * (len(ordered) - 1))]
    return Window(earliest=low, latest=high)


def next_delay(
    *,
    interval: float,
    elapsed: float,
    polls: int,
    running_for: float | None,
    queue_position: int | None,
    window: Window | None,
) -> float:
    """Seconds until the next status request.

    ``elapsed``: seconds since submit; ``polls``: status requests made so far; ``running_for``:
    seconds since the job was first seen generating (None while queued).
    """
    dense = interval * DENSE_FRACTION
    longest = interval * MAX_SLEEP_INTERVALS
    if running_for is None:
        # Far back in the queue nothing will happen soon: one poll per two places, at most 5.
        places = queue_position or 1
        return min(longest, interval * max(1.0, places / 2))
    if window is None:
        wanted = interval  # no history yet: the plain interval
    else:
        # A little early and a little late: the start of generating is known only roughly.
        opens = window.earliest - interval * WINDOW_MARGIN - running_for
        if opens > dense:
            return min(opens, longest)
        until_end = window.latest + interval * WINDOW_MARGIN - running_for
        if until_end <= 0:
            wanted = interval  # slower than every similar job: back to the plain pace
        else:
            # Spread what the budget allows by the window's end evenly over what is left of it.
            available = budget(elapsed + until_end, interval) - polls
            wanted = max(dense, until_end / available) if available >= 1 else interval
    # Spend no more than the budget allows: wait until it has grown enough, if need be.
    # One poll is held back: the one that finds the job done comes after it is done.
    spare = budget(elapsed + wanted, interval) - (polls + 1) - RESERVE_POLLS
    if spare >= 0:
        return wanted
    return min(longest, wanted - spare * interval)


MAX_BACKOFF = 30.0


def backoff(interval: float, failures: int) -> float:
    """The poll interval, backing off (capped, with jitter) while RunComfy keeps failing."""
    delay = min(interval * 2**failures, max(interval, MAX_BACKOFF))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
