"""Telegram Stars in the store: invoices, payments, credits and the credits each job reserves.

Every change of a balance is one transaction with the row that explains it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.models import Job, Status
from bot.store.base import StoreBase, busy_is_user_error

log = logging.getLogger(__name__)

INVOICE_PRUNE_AFTER = 3600.0  # an expired invoice is kept this long (a payment may be in flight)


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
    refund_state: str | None = None  # None, "pending" (Telegram's answer not known) or "done"

    @property
    def refund_pending(self) -> bool:
        """Its credits are taken back, and whether Telegram returned the Stars is not known."""
        return self.refund_state == "pending"


_PAYMENT_COLUMNS = (
    "charge_id, requester_id, user_id, images, stars, paid_at, refunded_at, refund_state"
)


class InvoiceClaim(enum.Enum):
    """What a tap on a /buy pack does with the invoices the person already has."""

    RECENT = "recent"  # the same invoice was sent moments ago: send nothing
    REUSE = "reuse"  # an open invoice for the pack: send it again, no new row
    NEW = "new"  # a new invoice row: send it


class Settlement(enum.StrEnum):
    """The state a job's reservation should have, given how far the job got."""

    RESERVED = "reserved"  # not settled yet, or unclear (the submit may have been billed)
    SPENT = "spent"  # RunComfy took the job
    RETURNED = "returned"  # the job ended without RunComfy making it


def settlement(job: Job) -> Settlement:
    """Where the job's credits belong: returned when it ended without RunComfy making it
    (cancelled; refused or failed before the submit), spent once RunComfy has its request id,
    reserved while that is not known (an unclear submit: a bot admin decides)."""
    if job.status == Status.CANCELLED:
        return Settlement.RETURNED
    if job.request_id is not None:
        return Settlement.SPENT
    if job.status == Status.FAILED and not job.submit_unknown:
        return Settlement.RETURNED
    return Settlement.RESERVED


# Moves a reservation may make; nothing leaves "returned", and "spent" only goes back when the
# job turns out cancelled (RunComfy cancels a queued job without billing it).
_MOVES = {
    ("reserved", Settlement.SPENT),
    ("reserved", Settlement.RETURNED),
    ("spent", Settlement.RETURNED),
}


def settle_reservation(
    db: sqlite_utils.Database, job_id: int, target: Settlement, now: float
) -> int:
    """Inside a transaction: move the job's reservation to ``target`` if that is a move it may
    make; returns the credits given back to the balance (0 when nothing was returned)."""
    row = db.execute(
        "SELECT requester_id, paid, state FROM reservations WHERE job_id = ?", [job_id]
    ).fetchone()
    if row is None or (str(row[2]), target) not in _MOVES:
        return 0
    db.execute(
        "UPDATE reservations SET state = ?, updated_at = ? WHERE job_id = ?",
        [target.value, now, job_id],
    )
    if target != Settlement.RETURNED:
        return 0
    add_credits(db, int(row[0]), int(row[1]), now)
    return int(row[1])


def _record_args(paid: PaidUpdate) -> dict[str, Any]:
    return {
        "charge_id": paid.charge_id,
        "provider_charge_id": paid.provider_charge_id,
        "payload": paid.payload,
        "user_id": paid.user_id,
        "stars": paid.stars,
    }


def add_credits(db: sqlite_utils.Database, requester_id: int, images: int, now: float) -> None:
    """Inside a transaction: add ``images`` to the requester's balance."""
    db.execute(
        "INSERT INTO credits (requester_id, balance, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(requester_id) DO UPDATE SET balance = balance + excluded.balance, "
        "updated_at = excluded.updated_at",
        [requester_id, images, now],
    )


@dataclasses.dataclass(frozen=True)
class Invoice:
    """One row of ``invoices``."""

    payload: str
    requester_id: int
    user_id: int
    images: int
    stars: int
    expires_at: float


def reserve_credits(
    db: sqlite_utils.Database, job_id: int, count: int, reserve: Reserve, now: float
) -> None:
    """Inside the transaction that writes a new job: take free images first, then credits."""
    free = max(0, reserve.free_per_day - _free_used(db, reserve.requester_id, reserve.day_start))
    from_free = min(free, count)
    paid = count - from_free
    if paid:
        cursor = db.execute(
            "UPDATE credits SET balance = balance - ?, updated_at = ? "
            "WHERE requester_id = ? AND balance >= ?",
            [paid, now, reserve.requester_id, paid],
        )
        if cursor.rowcount == 0:
            raise NotEnoughCredits(count, free + _balance(db, reserve.requester_id))
    db.execute(
        "INSERT INTO reservations (job_id, requester_id, paid, free, state, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, 'reserved', ?, ?)",
        [job_id, reserve.requester_id, paid, from_free, now, now],
    )


def _balance(db: sqlite_utils.Database, requester_id: int) -> int:
    row = db.execute(
        "SELECT balance FROM credits WHERE requester_id = ?", [requester_id]
    ).fetchone()
    return int(row[0]) if row else 0


def _free_used(db: sqlite_utils.Database, requester_id: int, since: float) -> int:
    row = db.execute(
        "SELECT coalesce(sum(free), 0) FROM reservations "
        "WHERE requester_id = ? AND created_at >= ? AND state != 'returned'",
        [requester_id, since],
    ).fetchone()
    return int(row[0])


@dataclasses.dataclass(frozen=True)
class PaidUpdate:
    """A successful_payment as Telegram sent it: what :meth:`PaymentStore.record_payment` needs,
    and where to tell the buyer."""

    charge_id: str
    provider_charge_id: str | None
    payload: str
    user_id: int
    stars: int
    chat_id: int
    lang: str


class PaymentStore(StoreBase):
    """Invoices, payments (each credited once), credits and job reservations."""

    @property
    def journal_path(self) -> Path:
        """Payments SQLite could not take yet, one JSON line each, next to the database."""
        return self.path.with_name(self.path.name + ".unrecorded-payments")

    def journal_payment(self, paid: PaidUpdate) -> None:
        """Keep a payment SQLite refused in a file, so a stop before it is recorded does not lose
        it: :meth:`replay_journal` records it at the next start (once: keyed on the charge id)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        fd = os.open(self.journal_path, flags, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(dataclasses.asdict(paid)) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def replay_journal(self) -> tuple[list[tuple[PaidUpdate, bool, Payment]], int]:
        """Record every journalled payment (at start). Returns (the update, credited now, the
        payment) for each one recorded, and how many SQLite still refuses (they stay in the
        file, as does a line that cannot be read: the operator's to look at)."""
        try:
            lines = self.journal_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return [], 0
        done: list[tuple[PaidUpdate, bool, Payment]] = []
        left: list[str] = []
        waiting = 0
        for line in lines:
            try:
                paid = PaidUpdate(**json.loads(line))
            except (ValueError, TypeError):
                log.error("unreadable line in %s kept: %.200s", self.journal_path, line)
                left.append(line)
                continue
            try:
                credited, payment = self.record_payment(**_record_args(paid))
            except sqlite3.OperationalError as exc:
                log.warning("journalled payment %s still not recorded: %s", paid.charge_id, exc)
                left.append(line)
                waiting += 1
                continue
            done.append((paid, credited, payment))
        if left:
            tmp = self.journal_path.with_suffix(".tmp")
            tmp.write_text("".join(f"{line}\n" for line in left), encoding="utf-8")
            tmp.chmod(0o600)
            tmp.replace(self.journal_path)
        else:
            self.journal_path.unlink(missing_ok=True)
        return done, waiting

    def balance(self, requester_id: int) -> int:
        """The requester's credits not reserved by a job."""
        return _balance(self.db, requester_id)

    def free_used(self, requester_id: int, since: float) -> int:
        """Free images the requester's jobs took since ``since`` (returned ones do not count)."""
        return _free_used(self.db, requester_id, since)

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
        """Give back the credits a job still holds as reserved (an unclear submit), once: the
        number returned to the balance; 0 when they are spent, returned or were never held."""
        now = time.time()
        with self._transaction():
            row = self.db.execute(
                "SELECT requester_id, paid FROM reservations WHERE job_id = ? AND state = 'reserved'",
                [job_id],
            ).fetchone()
            if row is None:
                return 0
            self.db.execute(
                "UPDATE reservations SET state = 'returned', updated_at = ? WHERE job_id = ?",
                [now, job_id],
            )
            add_credits(self.db, int(row[0]), int(row[1]), now)
        return int(row[1])

    def claim_invoice(
        self, invoice: Invoice, *, now: float, window: float
    ) -> tuple[InvoiceClaim, Invoice]:
        """A tap on a pack, in one transaction: the open invoice (unexpired, unpaid) for the same
        person, requester, pack and price is reused, and not sent at all if it was sent less
        than ``window`` seconds ago; else ``invoice`` is stored. Expired invoices are pruned.
        Raises StoreBusyError."""
        with busy_is_user_error(), self._transaction():
            self.db.execute(
                "DELETE FROM invoices WHERE expires_at < ?", [now - INVOICE_PRUNE_AFTER]
            )
            row = self.db.execute(
                "SELECT payload, requester_id, user_id, images, stars, expires_at, sent_at "
                "FROM invoices WHERE user_id = ? AND requester_id = ? AND images = ? "
                "AND stars = ? AND expires_at > ? "
                "AND NOT EXISTS (SELECT 1 FROM payments WHERE payments.payload = invoices.payload) "
                "ORDER BY expires_at DESC LIMIT 1",
                [invoice.user_id, invoice.requester_id, invoice.images, invoice.stars, now],
            ).fetchone()
            if row is not None:
                found = Invoice(*row[:6])
                if row[6] is not None and row[6] > now - window:
                    return InvoiceClaim.RECENT, found
                self.db.execute(
                    "UPDATE invoices SET sent_at = ? WHERE payload = ?", [now, found.payload]
                )
                return InvoiceClaim.REUSE, found
            self.db.execute(
                "INSERT INTO invoices (payload, requester_id, user_id, images, stars, "
                "created_at, expires_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    invoice.payload,
                    invoice.requester_id,
                    invoice.user_id,
                    invoice.images,
                    invoice.stars,
                    now,
                    invoice.expires_at,
                    now,
                ],
            )
        return InvoiceClaim.NEW, invoice

    def invoice_unsent(self, payload: str) -> None:
        """Telegram did not take the invoice: the next tap sends it again at once."""
        with self.db.conn:
            self.db.execute("UPDATE invoices SET sent_at = NULL WHERE payload = ?", [payload])

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
                add_credits(self.db, requester, images, now)
        payment = self.payment(charge_id)
        assert payment is not None
        return credited, payment

    def payment(self, charge_id: str) -> Payment | None:
        """The payment with this Telegram charge id, if any."""
        row = self.db.execute(
            f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE charge_id = ?",
            [charge_id],
        ).fetchone()
        return Payment(*row) if row else None

    def payments_of(self, requester_id: int, limit: int = 5) -> list[Payment]:
        """The requester's latest payments, newest first."""
        rows = self.db.execute(
            f"SELECT {_PAYMENT_COLUMNS} FROM payments "
            "WHERE requester_id = ? ORDER BY paid_at DESC, rowid DESC LIMIT ?",
            [requester_id, limit],
        ).fetchall()
        return [Payment(*row) for row in rows]

    def take_refund(self, charge_id: str) -> Payment | None:
        """Take back the payment's credits and mark its refund pending, if they are all unused.

        A refund already pending is returned as it is (its credits are taken; ask Telegram
        again). None (nothing changed) if the payment is unknown, refunded, or its credits are
        partly spent or reserved. Telegram's answer then decides: :meth:`confirm_refund`, or
        :meth:`undo_refund` when it refuses for good.
        """
        now = time.time()
        with self._transaction():
            payment = self.payment(charge_id)
            if payment is None or payment.refund_state == "done":
                return None
            if payment.refund_pending:
                return payment
            cursor = self.db.execute(
                "UPDATE credits SET balance = balance - ?, updated_at = ? "
                "WHERE requester_id = ? AND balance >= ?",
                [payment.images, now, payment.requester_id, payment.images],
            )
            if payment.images and cursor.rowcount == 0:
                return None
            self.db.execute(
                "UPDATE payments SET refund_state = 'pending', refund_asked_at = ? "
                "WHERE charge_id = ?",
                [now, charge_id],
            )
        return dataclasses.replace(payment, refund_state="pending")

    def confirm_refund(self, charge_id: str) -> tuple[Payment | None, int]:
        """Telegram returned the Stars: the refund is done, once. Returns (the payment, credits
        removed now). A refund the bot did not start (Telegram's ``refunded_payment`` for a
        payment not pending) removes what is left of its credits, as far as the balance goes."""
        now = time.time()
        removed = 0
        with self._transaction():
            payment = self.payment(charge_id)
            if payment is None or payment.refund_state == "done":
                return payment, 0
            if not payment.refund_pending:
                removed = min(payment.images, _balance(self.db, payment.requester_id))
                self.db.execute(
                    "UPDATE credits SET balance = balance - ?, updated_at = ? "
                    "WHERE requester_id = ?",
                    [removed, now, payment.requester_id],
                )
                if removed < payment.images:
                    log.warning(
                        "payment %s refunded by Telegram with %d of its %d credits already used",
                        charge_id,
                        payment.images - removed,
                        payment.images,
                    )
            self.db.execute(
                "UPDATE payments SET refund_state = 'done', refunded_at = ? WHERE charge_id = ?",
                [now, charge_id],
            )
        return self.payment(charge_id), removed

    def undo_refund(self, charge_id: str) -> bool:
        """Telegram refused the refund for good: the payment stands and its credits come back.
        False (nothing changed) unless the refund was pending."""
        with self._transaction():
            cursor = self.db.execute(
                "UPDATE payments SET refund_state = NULL, refund_asked_at = NULL "
                "WHERE charge_id = ? AND refund_state = 'pending'",
                [charge_id],
            )
            if cursor.rowcount == 0:
                return False
            payment = self.payment(charge_id)
            assert payment is not None
            add_credits(self.db, payment.requester_id, payment.images, time.time())
        return True

    def pending_refunds(self) -> list[Payment]:
        """Refunds whose credits are taken and whose Stars Telegram has not confirmed returning."""
        rows = self.db.execute(
            f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE refund_state = 'pending' "
            "ORDER BY refund_asked_at"
        ).fetchall()
        return [Payment(*row) for row in rows]

    def stars_received(self, since: float) -> tuple[int, int]:
        """(Stars received, Stars refunded) for payments since ``since``."""
        row = self.db.execute(
            "SELECT coalesce(sum(stars), 0), "
            "coalesce(sum(CASE WHEN refunded_at IS NOT NULL THEN stars ELSE 0 END), 0) "
            "FROM payments WHERE paid_at >= ?",
            [since],
        ).fetchone()
        return int(row[0]), int(row[1])
