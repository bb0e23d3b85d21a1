"""SQLite via sqlite-utils: the single record of every job."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Migrations

from bot.command import ChatDefaults

migrations = Migrations("seqbot")


@migrations()
def m001_jobs(db: sqlite_utils.Database) -> None:
    """The jobs table."""
    db.table("jobs").create(
        {
            "id": int,
            "chat_id": int,
            "user_id": int,
            "user_name": str,
            "message_id": int,
            "thread_id": int,
            "chat_type": str,
            "status_message_id": int,
            "count": int,
            "size": str,
            "mode": str,
            "seed": int,
            "prompt": str,
            "text": str,
            "status": str,
            "request_id": str,
            "queue_position": int,
            "cancel_requested": int,
            "status_shown": str,  # the status text and keyboard last shown
            "error": str,
            "image_urls": str,  # JSON list
            "plan": str,  # JSON: the delivery units, fixed once computed
            "delivered": str,  # JSON list of delivered unit indexes
            "delivered_images": int,
            "cost": float,
            "created_at": float,
            "submitted_at": float,
            "started_at": float,
            "finished_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"chat_id", "message_id", "count", "size", "mode", "prompt", "text", "status"},
        defaults={"cancel_requested": 0, "delivered_images": 0},
    )
    # One Telegram message never makes two jobs (updates can be delivered again).
    db.table("jobs").create_index(["chat_id", "message_id"], unique=True)
    db.table("jobs").create_index(["status"])


@migrations()
def m002_usage_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for quotas, /usage and /jobs."""
    db.table("jobs").create_index(["user_id", "created_at"])
    db.table("jobs").create_index(["chat_id", "created_at"])


@migrations()
def m003_completed_at(db: sqlite_utils.Database) -> None:
    """When RunComfy was first seen done: with started_at, how long generating took."""
    db.table("jobs").add_column("completed_at", float)
    db.table("jobs").create_index(["count", "mode", "completed_at"])


@migrations()
def m004_followups_and_settings(db: sqlite_utils.Database) -> None:
    """Follow-up buttons (Again / Originals / Details), languages, and per-chat defaults."""
    jobs = db.table("jobs")
    jobs.add_column("lang", str)
    jobs.add_column("actions_message_id", int)
    jobs.add_column("originals", str)  # JSON: image index -> Telegram file_id of the document
    db.table("chat_settings").create(
        {"chat_id": int, "count": int, "size": str, "mode": str, "updated_at": float},
        pk="chat_id",
    )


class Status(StrEnum):
    """Where a job is in its life."""

    NEW = "new"  # row written, RunComfy not called yet
    SUBMITTING = "submitting"  # the submit POST is (or was) in flight
    QUEUED = "queued"
    RUNNING = "running"
    SENDING = "sending"  # RunComfy finished; delivering to Telegram
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


FINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})
CANCELLABLE = frozenset({Status.NEW, Status.SUBMITTING, Status.QUEUED})


@dataclass
class Job:
    """One row of ``jobs``."""

    id: int
    chat_id: int
    message_id: int
    count: int
    size: str
    mode: str
    prompt: str
    text: str
    status: Status
    user_id: int | None = None
    user_name: str | None = None
    thread_id: int | None = None
    chat_type: str | None = None
    status_message_id: int | None = None
    seed: int | None = None
    request_id: str | None = None
    queue_position: int | None = None
    cancel_requested: int = 0
    status_shown: str | None = None
    error: str | None = None
    image_urls: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] | None = None
    delivered: list[int] = field(default_factory=list)
    delivered_images: int = 0
    cost: float | None = None
    created_at: float = 0.0
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    completed_at: float | None = None
    updated_at: float | None = None
    lang: str | None = None
    actions_message_id: int | None = None
    originals: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """True once nothing more will happen to the job."""
        return self.status in FINAL


_JSON_FIELDS = ("image_urls", "plan", "delivered", "originals")
_JOB_FIELDS = {f.name for f in fields(Job)}


# Images count against quotas once they reach RunComfy (or are on their way), unless the job was
# cancelled while queued; a job refused before submit costs nothing.
_BILLED = "((request_id IS NOT NULL AND status != 'cancelled') OR status IN ('new', 'submitting'))"


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
    data["status"] = Status(data["status"])
    return Job(**data)


class Store:
    """Jobs in SQLite. Migrations run when the store is opened."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite_utils.Database(path)
        # WAL keeps the single writer from blocking readers; NORMAL is durable enough with WAL.
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(self.db)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def create_job(
        self,
        *,
        chat_id: int,
        message_id: int,
        count: int,
        size: str,
        mode: str,
        seed: int | None,
        prompt: str,
        text: str,
        user_id: int | None,
        user_name: str | None,
        thread_id: int | None,
        chat_type: str | None,
        lang: str | None = None,
    ) -> Job | None:
        """Write a new job; ``None`` if this message already made one."""
        now = time.time()
        row = {
            "chat_id": chat_id,
            "message_id": message_id,
            "count": count,
            "size": size,
            "mode": mode,
            "seed": seed,
            "prompt": prompt,
            "text": text,
            "user_id": user_id,
            "user_name": user_name,
            "thread_id": thread_id,
            "chat_type": chat_type,
            "lang": lang,
            "status": Status.NEW.value,
            "created_at": now,
            "updated_at": now,
        }
        with self.db.conn:
            cursor = self.db.execute(
                f"INSERT OR IGNORE INTO jobs ({', '.join(row)}) "
                f"VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
        if cursor.rowcount == 0:
            return None
        job = self.get(int(cursor.lastrowid or 0))
        assert job is not None
        return job

    def job_for_message(self, chat_id: int, message_id: int) -> Job | None:
        """The job a Telegram message already made, if any."""
        rows = list(
            self.db.query(
                "SELECT * FROM jobs WHERE chat_id = ? AND message_id = ?", [chat_id, message_id]
            )
        )
        return _from_row(rows[0]) if rows else None

    def get(self, job_id: int) -> Job | None:
        """The job with this id, if any."""
        rows = list(self.db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
        return _from_row(rows[0]) if rows else None

    def update(self, job: Job, **changes: Any) -> Job:
        """Write ``changes`` to the job's row and to ``job`` itself."""
        changes["updated_at"] = time.time()
        row: dict[str, Any] = {}
        for name, value in changes.items():
            setattr(job, name, value)
            if name in _JSON_FIELDS and value is not None:
                value = json.dumps(value)
            elif isinstance(value, Status):
                value = value.value
            row[name] = value
        with self.db.conn:
            self.db.table("jobs").update(job.id, row)
        return job

    def unfinished(self) -> list[Job]:
        """Every job that has not reached a final state, oldest first."""
        final = [s.value for s in FINAL]
        rows = self.db.query(
            f"SELECT * FROM jobs WHERE status NOT IN ({', '.join('?' for _ in final)}) ORDER BY id",
            final,
        )
        return [_from_row(r) for r in rows]

    def active_jobs(self, *, user_id: int | None = None, chat_id: int | None = None) -> int:
        """How many unfinished jobs the user (or the chat) has."""
        final = [s.value for s in FINAL]
        where = f"status NOT IN ({', '.join('?' for _ in final)})"
        params: list[Any] = list(final)
        if user_id is not None:
            where += " AND user_id = ?"
            params.append(user_id)
        if chat_id is not None:
            where += " AND chat_id = ?"
            params.append(chat_id)
        return int(
            self.db.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()[0]
        )

    def usage(self, user_id: int, since: float) -> tuple[int, float]:
        """Images requested (billed) and their recorded cost in USD, since ``since``."""
        row = self.db.execute(
            f"SELECT coalesce(sum(count), 0), coalesce(sum(cost), 0) FROM jobs "
            f"WHERE user_id = ? AND created_at >= ? AND {_BILLED}",
            [user_id, since],
        ).fetchone()
        return int(row[0]), float(row[1])

    def usage_by_chat(self, since: float) -> list[tuple[int, int, int, float]]:
        """Per chat since ``since``: (chat id, jobs, images, cost), busiest first."""
        rows = self.db.execute(
            f"SELECT chat_id, count(*), coalesce(sum(count), 0), coalesce(sum(cost), 0) "
            f"FROM jobs WHERE created_at >= ? AND {_BILLED} "
            "GROUP BY chat_id ORDER BY 3 DESC, 1",
            [since],
        ).fetchall()
        return [(int(c), int(j), int(i), float(x)) for c, j, i, x in rows]

    def recent(self, chat_id: int, limit: int = 10) -> list[Job]:
        """The chat's latest jobs, newest first."""
        rows = self.db.query(
            "SELECT * FROM jobs WHERE chat_id = ? ORDER BY id DESC LIMIT ?", [chat_id, limit]
        )
        return [_from_row(r) for r in rows]

    def latest_cancellable(self, chat_id: int, user_id: int) -> Job | None:
        """The user's newest job in this chat that can still be cancelled."""
        states = [s.value for s in CANCELLABLE]
        rows = list(
            self.db.query(
                f"SELECT * FROM jobs WHERE chat_id = ? AND user_id = ? "
                f"AND status IN ({', '.join('?' for _ in states)}) ORDER BY id DESC LIMIT 1",
                [chat_id, user_id, *states],
            )
        )
        return _from_row(rows[0]) if rows else None

    def generation_times(self, count: int, mode: str, limit: int = 50) -> list[float]:
        """Seconds the latest finished jobs of this count and mode spent generating."""
        rows = self.db.execute(
            "SELECT completed_at - started_at FROM jobs WHERE count = ? AND mode = ? "
            "AND completed_at IS NOT NULL AND started_at IS NOT NULL "
            "ORDER BY completed_at DESC LIMIT ?",
            [count, mode, limit],
        ).fetchall()
        return [float(r[0]) for r in rows if r[0] is not None and r[0] >= 0]

    def chat_defaults(self, chat_id: int) -> ChatDefaults:
        """The chat's /settings (each None where the chat kept the bot's default)."""
        rows = list(self.db.query("SELECT * FROM chat_settings WHERE chat_id = ?", [chat_id]))
        if not rows:
            return ChatDefaults()
        row = rows[0]
        return ChatDefaults(count=row["count"], size=row["size"], mode=row["mode"])

    def set_chat_defaults(self, chat_id: int, defaults: ChatDefaults) -> None:
        """Store the chat's defaults; all None removes them."""
        with self.db.conn:
            if defaults == ChatDefaults():
                self.db.execute("DELETE FROM chat_settings WHERE chat_id = ?", [chat_id])
                return
            self.db.table("chat_settings").upsert(
                {
                    "chat_id": chat_id,
                    "count": defaults.count,
                    "size": defaults.size,
                    "mode": defaults.mode,
                    "updated_at": time.time(),
                },
                pk="chat_id",
            )
