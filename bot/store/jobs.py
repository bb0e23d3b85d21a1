"""The record of every job: written before anything is submitted, changes that SQLite refuses for
a moment kept in memory and written later, and what a restart resumes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from bot.models import (
    CANCELLABLE,
    FINAL,
    DeliveryUnit,
    Job,
    Origin,
    Reference,
    SeqRequest,
    Status,
    UnitKind,
)
from bot.store.base import StoreBase, busy_is_user_error, transient
from bot.store.payments import (
    Reserve,
    Settlement,
    reserve_credits,
    settle_reservation,
    settlement,
)

log = logging.getLogger(__name__)

_RETRY_FIRST, _RETRY_MOST = 0.1, 2.0  # seconds between tries to write waiting changes

_JSON_FIELDS = ("image_urls", "plan", "delivered", "originals", "photos", "panels", "refs")
_JOB_FIELDS = {f.name for f in dataclasses.fields(Job)}


def _column_value(name: str, value: Any) -> Any:
    if name == "plan" and value is not None:
        return json.dumps([{"kind": u.kind.value, "items": list(u.items)} for u in value])
    if name == "refs" and value is not None:
        return json.dumps([r if isinstance(r, dict) else dataclasses.asdict(r) for r in value])
    if name in _JSON_FIELDS and value is not None:
        return json.dumps(value)
    if isinstance(value, Status):
        return value.value
    return value


def _from_row(row: dict[str, Any]) -> Job:
    data = {k: v for k, v in row.items() if k in _JOB_FIELDS}
    for name in _JSON_FIELDS:
        raw = data.get(name)
        if raw is None:
            data.pop(name, None)
            if name == "plan":
                data[name] = None
        else:
            data[name] = json.loads(raw)
    if data.get("plan") is not None:
        data["plan"] = [
            DeliveryUnit(UnitKind(unit["kind"]), tuple(unit["items"])) for unit in data["plan"]
        ]
    if "refs" in data:
        data["refs"] = [Reference(**ref) for ref in data["refs"]]
    data["status"] = Status(data["status"])
    return Job(**data)


class JobStore(StoreBase):
    """Jobs in SQLite.

    A job update that SQLite refuses for a moment (another process holds the lock, the disk is
    full) is kept in memory, shown by every read of this store, and written by :meth:`flush`:
    the event loop never waits on the lock for long, and no change (a request id above all) is
    dropped.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # Job id -> column values (as stored) not yet written, in the order they were made.
        self.pending: dict[int, dict[str, Any]] = {}
        # Job id -> where its reservation belongs, when SQLite refused to settle it (retried).
        self.settling: dict[int, Settlement] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = _RETRY_FIRST
        self._written = asyncio.Event()  # set whenever waiting changes reach the disk

    def close(self) -> None:
        """Write what waits in memory if SQLite lets us, then close the connection."""
        if self._retry is not None:
            self._retry.cancel()
        if not self.flush():
            for job_id, row in self.pending.items():
                # The last place these changes exist: a request id here is a job RunComfy bills.
                log.error("job %d: changes could not be saved before stopping: %s", job_id, row)
            for job_id, target in self.settling.items():
                # Not lost: the next start settles every finished job's credits again.
                log.warning("job %d: credits not yet %s; settled at the next start", job_id, target)
        self.db.close()

    def create_job(
        self, request: SeqRequest, origin: Origin, *, reserve: Reserve | None = None
    ) -> Job | None:
        """Write a new job; ``None`` if this message already made one.

        With ``reserve`` (payments on) the job's credits are reserved in the same transaction:
        free images of the day first, then the balance; NotEnoughCredits (nothing written) when
        they do not suffice.

        Raises StoreBusyError when SQLite cannot take it now: a job must be on disk before it
        is submitted, so this write cannot wait in memory.
        """
        now = time.time()
        row = {
            **{k: _column_value(k, v) for k, v in dataclasses.asdict(request).items()},
            **dataclasses.asdict(origin),
            "status": Status.NEW.value,
            "created_at": now,
            "updated_at": now,
        }
        with busy_is_user_error(), self._transaction() if reserve is not None else self.db.conn:
            cursor = self.db.execute(
                f"INSERT OR IGNORE INTO jobs ({', '.join(row)}) "
                f"VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            if reserve is not None and cursor.rowcount:
                reserve_credits(self.db, int(cursor.lastrowid or 0), request.count, reserve, now)
        if cursor.rowcount == 0:
            return None
        job = self.get(int(cursor.lastrowid or 0))
        assert job is not None
        return job

    def _jobs(self, sql: str, params: list[Any]) -> list[Job]:
        """Jobs read by ``sql``, with changes not yet written laid over them."""
        return [
            _from_row({**row, **self.pending.get(row["id"], {})})
            for row in self.db.query(sql, params)
        ]

    def job_for_message(self, chat_id: int, message_id: int) -> Job | None:
        """The job a Telegram message already made, if any."""
        jobs = self._jobs(
            "SELECT * FROM jobs WHERE chat_id = ? AND message_id = ?", [chat_id, message_id]
        )
        return jobs[0] if jobs else None

    def job_image(self, chat_id: int, file_id: str) -> tuple[int, int] | None:
        """(job id, image index) of the bot's own image in ``chat_id`` that Telegram knows as
        ``file_id`` (a photo or an original sent as a file), the newest job first."""
        rows = self.db.query(
            "SELECT id, photos, originals FROM jobs WHERE chat_id = ? AND ("
            "EXISTS (SELECT 1 FROM json_each(jobs.photos) WHERE value = ?) OR "
            "EXISTS (SELECT 1 FROM json_each(jobs.originals) WHERE value = ?)"
            ") ORDER BY id DESC LIMIT 1",
            [chat_id, file_id, file_id],
        )
        for row in rows:
            for column in ("photos", "originals"):
                for index, known in json.loads(row[column] or "{}").items():
                    if known == file_id and str(index).isdigit():
                        return int(row["id"]), int(index)
        return None

    def get(self, job_id: int) -> Job | None:
        """The job with this id, if any."""
        jobs = self._jobs("SELECT * FROM jobs WHERE id = ?", [job_id])
        return jobs[0] if jobs else None

    def update(self, job: Job, **changes: Any) -> bool:
        """Apply ``changes`` to ``job`` and write them; False if they wait in memory for now.

        Changes to a job with writes still waiting join them, so the order is kept.
        """
        changes["updated_at"] = time.time()
        for name, value in changes.items():
            setattr(job, name, value)
        row = {name: _column_value(name, value) for name, value in changes.items()}
        waiting = self.pending.get(job.id)
        if waiting is not None:
            waiting.update(row)
            return False
        if self._write(job.id, row):
            return True
        self.pending[job.id] = row
        self._retry_later()
        return False

    def _retry_later(self) -> None:
        """Try the waiting writes again soon, on the running event loop (if there is one)."""
        if self._retry is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._retry = loop.call_later(self._retry_delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if self.flush():
            self._retry_delay = _RETRY_FIRST
            return
        self._retry_delay = min(self._retry_delay * 2, _RETRY_MOST)
        self._retry_later()

    async def saved(self, job: Job) -> None:
        """Wait until every change to ``job`` is on disk."""
        while job.id in self.pending:
            self._written.clear()
            await self._written.wait()

    def _write(self, job_id: int, row: dict[str, Any]) -> bool:
        try:
            with self.db.conn:
                self.db.execute(
                    f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in row)} WHERE id = ?",
                    [*row.values(), job_id],
                )
        except sqlite3.OperationalError as exc:
            if not transient(exc):
                raise
            log.warning("database refused a write to job %d (kept, retried): %s", job_id, exc)
            return False
        return True

    def flush(self) -> bool:
        """Write the changes waiting in memory; True when none are left."""
        for job_id in list(self.pending):
            if not self._write(job_id, self.pending[job_id]):
                return False
            del self.pending[job_id]
            self._written.set()
            log.info("job %d: waiting changes written", job_id)
        for job_id in list(self.settling):
            if self._settle_now(job_id, self.settling[job_id]) is None:
                return False
            del self.settling[job_id]
            log.info("job %d: credits settled after a wait", job_id)
        return True

    def settle(self, job: Job) -> int | None:
        """Spend or return the job's reserved credits, as its state says (``settlement``).

        Returns the credits given back; None when SQLite refused for a moment: then the
        settlement waits in memory and is retried with the waiting job writes (and, should the
        process stop first, :meth:`reconcile_reservations` does it at the next start).
        """
        target = settlement(job)
        if target == Settlement.RESERVED:
            return 0
        if job.id not in self.settling:
            returned = self._settle_now(job.id, target)
            if returned is not None:
                return returned
        self.settling[job.id] = target
        self._retry_later()
        return None

    def _settle_now(self, job_id: int, target: Settlement) -> int | None:
        try:
            with self._transaction():
                return settle_reservation(self.db, job_id, target, time.time())
        except sqlite3.OperationalError as exc:
            if not transient(exc):
                raise
            log.warning("database refused to settle job %d's credits (retried): %s", job_id, exc)
            return None

    def reconcile_reservations(self) -> int:
        """At start: settle every job whose reservation does not match how far it got (a lock or
        a stop came between its end and its settlement). Returns how many were settled."""
        final = [s.value for s in FINAL]
        marks = ", ".join("?" for _ in final)
        jobs = self._jobs(
            "SELECT jobs.* FROM jobs JOIN reservations ON reservations.job_id = jobs.id "
            "WHERE (reservations.state = 'reserved' AND (jobs.request_id IS NOT NULL "
            f"OR (jobs.status IN ({marks}) AND jobs.submit_unknown = 0))) "
            "OR (reservations.state = 'spent' AND jobs.status = 'cancelled') ORDER BY jobs.id",
            final,
        )
        settled = 0
        for job in jobs:
            returned = self.settle(job)
            if returned is None:
                continue
            settled += 1
            log.info(
                "job %d: credits settled at start (%s, %d returned)",
                job.id,
                job.status.value,
                returned,
            )
        return settled

    def unfinished(self) -> list[Job]:
        """Every job that has not reached a final state, oldest first."""
        final = [s.value for s in FINAL]
        return self._jobs(
            f"SELECT * FROM jobs WHERE status NOT IN ({', '.join('?' for _ in final)}) ORDER BY id",
            final,
        )

    def recent(self, chat_id: int, limit: int = 10) -> list[Job]:
        """The chat's latest jobs, newest first."""
        return self._jobs(
            "SELECT * FROM jobs WHERE chat_id = ? ORDER BY id DESC LIMIT ?", [chat_id, limit]
        )

    def latest_cancellable(self, chat_id: int, requester_id: int) -> Job | None:
        """The requester's newest job in this chat that can still be cancelled."""
        states = [s.value for s in CANCELLABLE]
        jobs = self._jobs(
            f"SELECT * FROM jobs WHERE chat_id = ? AND requester_id = ? "
            f"AND status IN ({', '.join('?' for _ in states)}) ORDER BY id DESC LIMIT 1",
            [chat_id, requester_id, *states],
        )
        return jobs[0] if jobs else None

    def generation_times(self, count: int, mode: str, limit: int = 50) -> list[float]:
        """Seconds the latest finished jobs of this count and mode spent generating."""
        rows = self.db.execute(
            "SELECT completed_at - started_at FROM jobs WHERE count = ? AND mode = ? "
            "AND completed_at IS NOT NULL AND started_at IS NOT NULL "
            "ORDER BY completed_at DESC LIMIT ?",
            [count, mode, limit],
        ).fetchall()
        return [float(r[0]) for r in rows if r[0] is not None and r[0] >= 0]
