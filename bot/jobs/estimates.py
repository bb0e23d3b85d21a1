"""What a job's status may say about time, from what the poll loop and delivery have seen."""

from __future__ import annotations

import time

from bot import schedule
from bot.models import Job, Status
from bot.store import Store

_WINDOW_CACHE_SECONDS = 30.0


class Estimates:
    """The queue's pace per queued job, similar jobs' generation times, delivery retry ends."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._windows: dict[tuple[int, str], tuple[schedule.Window | None, float]] = {}
        # Per queued job: (when first seen, queue position), each time the position changed.
        self.queue_seen: dict[int, list[tuple[float, int]]] = {}
        # Jobs whose images meet network trouble at Telegram: until when they are retried.
        self.troubled: dict[int, float] = {}

    def estimate(self, job: Job) -> schedule.Estimate | None:
        """What the job's status may say about time: the queue's pace, or similar jobs' times."""
        if job.status == Status.QUEUED:
            wait = schedule.queue_wait(self.queue_seen.get(job.id, []), time.time())
            return schedule.Estimate(queue_wait=wait)
        if job.status == Status.RUNNING:
            return schedule.Estimate(window=self.window(job.count, job.mode))
        if job.status == Status.SENDING and job.id in self.troubled:
            return schedule.Estimate(retry_until=self.troubled[job.id])
        return None

    def saw_place(self, job_id: int, place: int | None, now: float) -> None:
        """Remember when each new queue position was first seen (a move back starts afresh)."""
        seen = self.queue_seen.setdefault(job_id, [])
        if place is None or (seen and place > seen[-1][1]):
            seen.clear()
        if place is not None and (not seen or place < seen[-1][1]):
            seen.append((now, place))

    def window(self, count: int, mode: str) -> schedule.Window | None:
        """When similar jobs finished generating; refreshed from SQLite every half minute."""
        key, now = (count, mode), time.monotonic()
        cached = self._windows.get(key)
        if cached is None or cached[1] < now:
            window = schedule.window_of(self.store.generation_times(count, mode))
            cached = self._windows[key] = (window, now + _WINDOW_CACHE_SECONDS)
        return cached[0]

    def forget(self, job_id: int) -> None:
        """The job's task ended: what was seen of it goes (a restart of its task starts afresh)."""
        self.queue_seen.pop(job_id, None)
        self.troubled.pop(job_id, None)
