"""When to ask RunComfy again (pure): sparse while nothing can happen, dense when it likely will.

Each job may spend about one status request per poll interval of its life, plus a few
(``elapsed / interval + EXTRA_POLLS``). Polling at that fixed rate makes images wait half an interval
on average after they are ready. Instead the budget is saved while the job sits far back in the queue
or has been generating for less time than similar jobs ever needed, and spent in quick polls around
the time similar jobs (same image count and mode) have finished before.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

EXTRA_POLLS = 3
DENSE_FRACTION = 0.25  # dense polls come every quarter interval
MAX_SLEEP_INTERVALS = 5.0  # never silent for longer: the status message should keep moving
RESERVE_POLLS = 1
# The window is where similar jobs finished, from the 10th to the 95th percentile: the fastest
# tenth are rare enough to wait for the window's opening, the slow tail is what p95 is made of.
WINDOW_LOW, WINDOW_HIGH = 0.10, 0.95
WINDOW_MARGIN = 0.25  # intervals of dense polling before and after the learnt window
FIRST_POLL_INTERVALS = 1.0  # a job RunComfy has just accepted has nothing to say for this long


@dataclass(frozen=True)
class Window:
    """When similar jobs finished generating, in seconds after they started."""

    earliest: float
    latest: float
    # The median: what the progress estimate counts on (the middle of the window if not given).
    typical: float | None = field(default=None, compare=False)

    @property
    def expected(self) -> float:
        """How long a similar job usually generates."""
        return self.typical if self.typical is not None else (self.earliest + self.latest) / 2


def budget(elapsed: float, interval: float) -> float:
    """How many status requests a job may have made ``elapsed`` seconds after submit."""
    return elapsed / interval + EXTRA_POLLS


def first_delay(interval: float, since_submit: float) -> float:
    """Seconds until a job's first status request (none for a job resumed long after submit)."""
    return max(0.0, interval * FIRST_POLL_INTERVALS - since_submit)


def window_of(durations: list[float]) -> Window | None:
    """The 10th to 95th percentile of past generation times, or None with too little history."""
    if len(durations) < 5:
        return None
    ordered = sorted(durations)
    low = ordered[int(WINDOW_LOW * (len(ordered) - 1))]
    high = ordered[round(WINDOW_HIGH * (len(ordered) - 1))]
    return Window(earliest=low, latest=high, typical=ordered[len(ordered) // 2])


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


# ---- progress the status message can promise (pure) -----------------------------------------

PROGRESS_STEP = 10.0  # the clock behind an estimate moves in these steps: one edit per step at most
BAR_CELLS = 8


@dataclass(frozen=True)
class Estimate:
    """What the status message may say about time: from history (generating) or the queue."""

    window: Window | None = None  # how long similar jobs generated (None: no history)
    queue_wait: float | None = None  # seconds until the job likely starts (None: not known)
    # Telegram is failing to take the images: they are retried until then (a time.time()).
    retry_until: float | None = None


def coarse(seconds: float) -> float:
    """``seconds`` down to whole ``PROGRESS_STEP``s, so a fast poll is not an edit per poll."""
    return max(0.0, seconds) // PROGRESS_STEP * PROGRESS_STEP


def seconds_left(window: Window, running_for: float) -> float | None:
    """Seconds until the job should be done, by similar jobs' usual time; 0 once past it.

    None once it has run longer than nearly every similar job did: then history supports no
    estimate at all.
    """
    if running_for > window.latest:
        return None
    return max(0.0, window.expected - running_for)


def bar(done: float, cells: int = BAR_CELLS) -> str:
    """``0.5`` -> ``▓▓▓▓░░░░``: the share done (0–1) as a short bar."""
    filled = min(cells, max(0, math.floor(done * cells)))
    return "▓" * filled + "░" * (cells - filled)


def queue_wait(seen: list[tuple[float, int]], now: float) -> float | None:
    """Seconds until a queued job likely starts, from the queue positions seen so far.

    ``seen``: (when first seen, position), in order. An estimate needs the queue to have moved
    (two positions over time); it is the pace so far applied to the places left, counted from
    when the current place was first seen. None without movement, once that time has passed
    (the queue stalled: nothing honest to promise), or when under one ``PROGRESS_STEP`` (the
    place says enough).
    """
    if len(seen) < 2:
        return None
    (first_at, first_place), (last_at, last_place) = seen[0], seen[-1]
    moved, took = first_place - last_place, last_at - first_at
    if moved <= 0 or took <= 0:
        return None
    left = last_place * took / moved - coarse(now - last_at)
    return left if left >= PROGRESS_STEP else None
