"""Telegram Stars in the store: invoices, payments, credits and the credits each job reserves.

Every change of a balance is one transaction with the row that explains it.
"""

from __future__ import annotations

import dataclasses
import time

import sqlite_utils

from bot.store.base import StoreBase, busy_is_user_error


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


class PaymentStore(StoreBase):
    """Invoices, payments (each credited once), credits and job reservations."""

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
        with busy_is_user_error(), self.db.conn:
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
