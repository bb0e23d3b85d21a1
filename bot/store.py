"""SQLite via sqlite-utils: the single record of every job."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Migrations

from bot.errors import StoreBusyError
from bot.models import (
    CANCELLABLE,
    FINAL,
    ChatDefaults,
    DeliveryUnit,
    Job,
    Origin,
    SeqRequest,
    Status,
    UnitKind,
    Usage,
)

log = logging.getLogger(__name__)

migrations = Migrations("seqbot")

# On the event loop's path a locked database must not stall every job: wait this long, then keep
# the change in memory and write it later (Store.flush). Migrations at start-up may wait longer.
BUSY_TIMEOUT_MS = 100
STARTUP_BUSY_TIMEOUT_MS = 5000
_BUSY = "The bot is busy for a moment and nothing was started. Please try again."
_RETRY_FIRST, _RETRY_MOST = 0.1, 2.0  # seconds between tries to write waiting changes
# What SQLite says when the failure may go away (a lock, a full disk, a read-only file, an I/O error).
_TRANSIENT = ("locked", "busy", "full", "disk i/o", "readonly", "unable to open")


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


@migrations()
def m005_requester_and_unknown_submits(db: sqlite_utils.Database) -> None:
    """Who a job counts against (a channel or group posting as itself is not Channel_Bot), and
    submits whose outcome is unknown (they may have been billed, so they count)."""
    jobs = db.table("jobs")
    jobs.add_column("requester_id", int)
    jobs.add_column("submit_unknown", int, not_null_default=0)
    db.execute("UPDATE jobs SET requester_id = user_id")
    jobs.create_index(["requester_id", "created_at"])


@migrations()
def m006_panels(db: sqlite_utils.Database) -> None:
    """A script's panels, one per image: each image's caption."""
    db.table("jobs").add_column("panels", str)  # JSON: the panels' texts, in order


@migrations()
def m007_photo_file_ids(db: sqlite_utils.Database) -> None:
    """The Telegram file_ids of the photos delivered, for /show to send them again."""
    db.table("jobs").add_column("photos", str)  # JSON: image index -> file_id of the photo


@migrations()
def m008_payments(db: sqlite_utils.Database) -> None:
    """Telegram Stars: invoices sent, payments received (once each), credits, job reservations."""
    db.table("invoices").create(
        {
            "payload": str,  # unguessable (secrets.token_urlsafe): the invoice's order id
            "requester_id": int,  # whose credits it buys
            "user_id": int,  # who may pay it
            "images": int,
            "stars": int,
            "created_at": float,
            "expires_at": float,
        },
        pk="payload",
        not_null={"requester_id", "user_id", "images", "stars", "created_at", "expires_at"},
    )
    db.table("payments").create(
        {
            "charge_id": str,  # telegram_payment_charge_id: a payment is credited once
            "provider_charge_id": str,
            "payload": str,
            "requester_id": int,
            "user_id": int,
            "images": int,
            "stars": int,
            "paid_at": float,
            "refunded_at": float,
        },
        pk="charge_id",
        not_null={"requester_id", "images", "stars", "paid_at"},
    )
    db.table("payments").create_index(["requester_id", "paid_at"])
    db.table("payments").create_index(["paid_at"])
    db.table("credits").create(
        {"requester_id": int, "balance": int, "updated_at": float},
        pk="requester_id",
        not_null={"balance"},
    )
    db.table("reservations").create(
        {
            "job_id": int,
            "requester_id": int,
            "paid": int,  # credits taken from the balance
            "free": int,  # free images of the day used
            "state": str,  # reserved, spent, returned
            "created_at": float,
            "updated_at": float,
        },
        pk="job_id",
        not_null={"requester_id", "paid", "free", "state", "created_at"},
    )
    db.table("reservations").create_index(["requester_id", "created_at"])


_JSON_FIELDS = ("image_urls", "plan", "delivered", "originals", "photos", "panels")
_JOB_FIELDS = {f.name for f in dataclasses.fields(Job)}


# Images count against quotas once they reach RunComfy (or are on their way, or may have: a submit
# without an answer), unless the job was cancelled while queued; a job refused before submit is free.
_BILLED = (
    "((request_id IS NOT NULL AND status != 'cancelled') OR status IN ('new', 'submitting') "
    "OR submit_unknown = 1)"
)


@dataclasses.dataclass(frozen=True)
class Reserve:
    """How a new job's credits are reserved: whose, and how many free images a day they get."""

    requester_id: int
    free_per_day: int
    day_start: float  # midnight UTC today: free images used since then count


class NotEnoughCredits(Exception):
    """A job needs more credits than the requester has (free images left plus the balance)."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {needed}, has {available}")
        self.needed, self.available = needed, available


@dataclasses.dataclass(frozen=True)
class Payment:
    """One row of ``payments``."""

    charge_id: str
    requester_id: int
    user_id: int | None
    images: int
    stars: int
    paid_at: float
    refunded_at: float | None


@dataclasses.dataclass(frozen=True)
class Invoice:
    """One row of ``invoices``."""

    payload: str
    requester_id: int
    user_id: int
    images: int
    stars: int
    expires_at: float


def _transient(exc: sqlite3.OperationalError) -> bool:
    return any(marker in str(exc).lower() for marker in _TRANSIENT)


def _column_value(name: str, value: Any) -> Any:
    if name == "plan" and value is not None:
        return json.dumps([{"kind": u.kind.value, "items": list(u.items)} for u in value])
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
    data["status"] = Status(data["status"])
    return Job(**data)


class Store:
    """Jobs in SQLite. Migrations run when the store is opened.

    A job update that SQLite refuses for a moment (another process holds the lock, the disk is
    full) is kept in memory, shown by every read of this store, and written by :meth:`flush`:
    the event loop never waits on the lock for long, and no change (a request id above all) is
    dropped.
    """

    def __init__(self, path: Path) -> None:
        # Owner only: prompts, chats and costs. The modes apply when these are created here;
        # SQLite gives the -wal and -shm files the database file's mode.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        self.path = path
        self.db = sqlite_utils.Database(
            sqlite3.connect(path, timeout=STARTUP_BUSY_TIMEOUT_MS / 1000)
        )
        # WAL keeps the single writer from blocking readers; NORMAL is durable enough with WAL.
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(self.db)
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Job id -> column values (as stored) not yet written, in the order they were made.
        self.pending: dict[int, dict[str, Any]] = {}
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
        try:
            with self._transaction() if reserve is not None else self.db.conn:
                cursor = self.db.execute(
                    f"INSERT OR IGNORE INTO jobs ({', '.join(row)}) "
                    f"VALUES ({', '.join('?' for _ in row)})",
                    list(row.values()),
                )
                if reserve is not None and cursor.rowcount:
                    self._reserve(int(cursor.lastrowid or 0), request.count, reserve, now)
        except sqlite3.OperationalError as exc:
            if not _transient(exc):
                raise
            log.warning("database refused a new job: %s", exc)
            raise StoreBusyError(_BUSY, detail=str(exc)) from None
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
            if not _transient(exc):
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
        return True

    def unfinished(self) -> list[Job]:
        """Every job that has not reached a final state, oldest first."""
        final = [s.value for s in FINAL]
        return self._jobs(
            f"SELECT * FROM jobs WHERE status NOT IN ({', '.join('?' for _ in final)}) ORDER BY id",
            final,
        )

    def active_jobs(
        self,
        *,
        requester_id: int | None = None,
        chat_id: int | None = None,
        unknown_since: float = 0.0,
    ) -> int:
        """How many jobs of the requester (or the chat) may still be at RunComfy.

        That is every unfinished job, and every job whose submit went unanswered after
        ``unknown_since`` (RunComfy may be making it).
        """
        final = [s.value for s in FINAL]
        where = (
            f"(status NOT IN ({', '.join('?' for _ in final)}) "
            "OR (submit_unknown = 1 AND created_at >= ?))"
        )
        params: list[Any] = [*final, unknown_since]
        if requester_id is not None:
            where += " AND requester_id = ?"
            params.append(requester_id)
        if chat_id is not None:
            where += " AND chat_id = ?"
            params.append(chat_id)
        return int(
            self.db.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()[0]
        )

    def usage(self, requester_id: int, since: float) -> Usage:
        """Images requested (billed, or perhaps billed) and their recorded cost, since ``since``."""
        row = self.db.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(cost), 0), "
            "coalesce(sum(CASE WHEN submit_unknown = 1 THEN count ELSE 0 END), 0) FROM jobs "
            f"WHERE requester_id = ? AND created_at >= ? AND {_BILLED}",
            [requester_id, since],
        ).fetchone()
        return Usage(images=int(row[0]), cost=float(row[1]), unknown=int(row[2]))

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

    def chat_defaults(self, chat_id: int) -> ChatDefaults:
        """The chat's /settings (each None where the chat kept the bot's default)."""
        rows = list(self.db.query("SELECT * FROM chat_settings WHERE chat_id = ?", [chat_id]))
        if not rows:
            return ChatDefaults()
        row = rows[0]
        return ChatDefaults(count=row["count"], size=row["size"], mode=row["mode"])

    def set_chat_defaults(self, chat_id: int, defaults: ChatDefaults) -> None:
        """Store the chat's defaults; all None removes them. Raises StoreBusyError."""
        try:
            self._set_chat_defaults(chat_id, defaults)
        except sqlite3.OperationalError as exc:
            if not _transient(exc):
                raise
            raise StoreBusyError(_BUSY, detail=str(exc)) from None

    def _set_chat_defaults(self, chat_id: int, defaults: ChatDefaults) -> None:
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

    # ---- Telegram Stars: invoices, payments, credits, reservations -----------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction, the write lock taken at its start (``BEGIN IMMEDIATE``): what it reads
        no other process changes before it commits. (``db.execute`` outside one commits each
        statement by itself.)"""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _reserve(self, job_id: int, count: int, reserve: Reserve, now: float) -> None:
        """Inside create_job's transaction: take free images first, then credits."""
        free = max(
            0, reserve.free_per_day - self.free_used(reserve.requester_id, reserve.day_start)
        )
        from_free = min(free, count)
        paid = count - from_free
        if paid:
            cursor = self.db.execute(
                "UPDATE credits SET balance = balance - ?, updated_at = ? "
                "WHERE requester_id = ? AND balance >= ?",
                [paid, now, reserve.requester_id, paid],
            )
            if cursor.rowcount == 0:
                raise NotEnoughCredits(count, free + self.balance(reserve.requester_id))
        self.db.execute(
            "INSERT INTO reservations (job_id, requester_id, paid, free, state, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, 'reserved', ?, ?)",
            [job_id, reserve.requester_id, paid, from_free, now, now],
        )

    def balance(self, requester_id: int) -> int:
        """The requester's credits not reserved by a job."""
        row = self.db.execute(
            "SELECT balance FROM credits WHERE requester_id = ?", [requester_id]
        ).fetchone()
        return int(row[0]) if row else 0

    def free_used(self, requester_id: int, since: float) -> int:
        """Free images the requester's jobs took since ``since`` (returned ones do not count)."""
        row = self.db.execute(
            "SELECT coalesce(sum(free), 0) FROM reservations "
            "WHERE requester_id = ? AND created_at >= ? AND state != 'returned'",
            [requester_id, since],
        ).fetchone()
        return int(row[0])

    def reserved(self, requester_id: int) -> int:
        """Credits held by the requester's jobs that are not settled yet."""
        row = self.db.execute(
            "SELECT coalesce(sum(paid), 0) FROM reservations "
            "WHERE requester_id = ? AND state = 'reserved'",
            [requester_id],
        ).fetchone()
        return int(row[0])

    def reservation(self, job_id: int) -> tuple[str, int, int] | None:
        """(state, paid, free) of the job's reservation, if it has one."""
        row = self.db.execute(
            "SELECT state, paid, free FROM reservations WHERE job_id = ?", [job_id]
        ).fetchone()
        return (str(row[0]), int(row[1]), int(row[2])) if row else None

    def spend_reservation(self, job_id: int) -> bool:
        """RunComfy took the job: its credits are spent. True if this changed anything."""
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE reservations SET state = 'spent', updated_at = ? "
                "WHERE job_id = ? AND state = 'reserved'",
                [time.time(), job_id],
            )
        return cursor.rowcount > 0

    def return_reservation(self, job_id: int) -> int:
        """Give a job's credits back (once): the number of credits returned to the balance."""
        now = time.time()
        with self._transaction():
            row = self.db.execute(
                "SELECT requester_id, paid FROM reservations "
                "WHERE job_id = ? AND state != 'returned'",
                [job_id],
            ).fetchone()
            if row is None:
                return 0
            self.db.execute(
                "UPDATE reservations SET state = 'returned', updated_at = ? WHERE job_id = ?",
                [now, job_id],
            )
            self._add_credits(int(row[0]), int(row[1]), now)
        return int(row[1])

    def _add_credits(self, requester_id: int, images: int, now: float) -> None:
        self.db.execute(
            "INSERT INTO credits (requester_id, balance, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(requester_id) DO UPDATE SET balance = balance + excluded.balance, "
            "updated_at = excluded.updated_at",
            [requester_id, images, now],
        )

    def add_invoice(self, invoice: Invoice) -> None:
        """Remember an invoice before it is sent. Raises StoreBusyError."""
        try:
            with self.db.conn:
                self.db.execute(
                    "INSERT INTO invoices (payload, requester_id, user_id, images, stars, "
                    "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        invoice.payload,
                        invoice.requester_id,
                        invoice.user_id,
                        invoice.images,
                        invoice.stars,
                        time.time(),
                        invoice.expires_at,
                    ],
                )
        except sqlite3.OperationalError as exc:
            if not _transient(exc):
                raise
            raise StoreBusyError(_BUSY, detail=str(exc)) from None

    def invoice(self, payload: str) -> Invoice | None:
        """The invoice with this payload, if the bot sent it."""
        row = self.db.execute(
            "SELECT payload, requester_id, user_id, images, stars, expires_at FROM invoices "
            "WHERE payload = ?",
            [payload],
        ).fetchone()
        return Invoice(*row) if row else None

    def record_payment(
        self,
        *,
        charge_id: str,
        provider_charge_id: str | None,
        payload: str,
        user_id: int,
        stars: int,
    ) -> tuple[bool, Payment]:
        """Record a successful payment and add its credits, both at most once per charge id.

        One transaction: a second call with the same charge id (a repeated update, a restart,
        another process) changes nothing. Returns (credited now, the payment).
        """
        now = time.time()
        with self._transaction():
            invoice = self.invoice(payload)
            requester = invoice.requester_id if invoice else user_id
            images = invoice.images if invoice else 0
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO payments (charge_id, provider_charge_id, payload, "
                "requester_id, user_id, images, stars, paid_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [charge_id, provider_charge_id, payload, requester, user_id, images, stars, now],
            )
            credited = cursor.rowcount > 0
            if credited and images:
                self._add_credits(requester, images, now)
        payment = self.payment(charge_id)
        assert payment is not None
        return credited, payment

    def payment(self, charge_id: str) -> Payment | None:
        """The payment with this Telegram charge id, if any."""
        row = self.db.execute(
            "SELECT charge_id, requester_id, user_id, images, stars, paid_at, refunded_at "
            "FROM payments WHERE charge_id = ?",
            [charge_id],
        ).fetchone()
        return Payment(*row) if row else None

    def payments_of(self, requester_id: int, limit: int = 5) -> list[Payment]:
        """The requester's latest payments, newest first."""
        rows = self.db.execute(
            "SELECT charge_id, requester_id, user_id, images, stars, paid_at, refunded_at "
            "FROM payments WHERE requester_id = ? ORDER BY paid_at DESC, rowid DESC LIMIT ?",
            [requester_id, limit],
        ).fetchall()
        return [Payment(*row) for row in rows]

    def take_refund(self, charge_id: str) -> Payment | None:
        """Mark the payment refunded and remove its credits, if they are all still unused.

        None (nothing changed) if the payment is unknown, already refunded, or its credits are
        partly spent or reserved. :meth:`undo_refund` puts them back if Telegram refuses.
        """
        now = time.time()
        with self._transaction():
            payment = self.payment(charge_id)
            if payment is None or payment.refunded_at is not None:
                return None
            cursor = self.db.execute(
                "UPDATE credits SET balance = balance - ?, updated_at = ? "
                "WHERE requester_id = ? AND balance >= ?",
                [payment.images, now, payment.requester_id, payment.images],
            )
            if payment.images and cursor.rowcount == 0:
                return None
            self.db.execute(
                "UPDATE payments SET refunded_at = ? WHERE charge_id = ?", [now, charge_id]
            )
        return dataclasses.replace(payment, refunded_at=now)

    def undo_refund(self, payment: Payment) -> None:
        """Telegram refused the refund: the payment stands and its credits come back."""
        with self._transaction():
            self.db.execute(
                "UPDATE payments SET refunded_at = NULL WHERE charge_id = ?", [payment.charge_id]
            )
            self._add_credits(payment.requester_id, payment.images, time.time())

    def stars_received(self, since: float) -> tuple[int, int]:
        """(Stars received, Stars refunded) for payments since ``since``."""
        row = self.db.execute(
            "SELECT coalesce(sum(stars), 0), "
            "coalesce(sum(CASE WHEN refunded_at IS NOT NULL THEN stars ELSE 0 END), 0) "
            "FROM payments WHERE paid_at >= ?",
            [since],
        ).fetchone()
        return int(row[0]), int(row[1])
