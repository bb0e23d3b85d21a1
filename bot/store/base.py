"""The store's one connection, its transaction helper, and what a refused write means."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from bot.errors import StoreBusyError
from bot.store.migrations import migrations

log = logging.getLogger(__name__)

# On the event loop's path a locked database must not stall every job: wait this long, then keep
# the change in memory and write it later (Store.flush). Migrations at start-up may wait longer.
BUSY_TIMEOUT_MS = 100
STARTUP_BUSY_TIMEOUT_MS = 5000
BUSY = "The bot is busy for a moment and nothing was started. Please try again."
# What SQLite says when the failure may go away (a lock, a full disk, a read-only file, an I/O error).
_TRANSIENT = ("locked", "busy", "full", "disk i/o", "readonly", "unable to open")


def transient(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a moment (worth trying again) rather than for good."""
    return any(marker in str(exc).lower() for marker in _TRANSIENT)


@contextlib.contextmanager
def busy_is_user_error() -> Iterator[None]:
    """Turn a transient refusal into StoreBusyError: the write cannot wait, the user may retry."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not transient(exc):
            raise
        log.warning("database refused a write (the user is asked to try again): %s", exc)
        raise StoreBusyError(BUSY, detail=str(exc)) from None


class StoreBase:
    """The connection every part of the store shares. Migrations run when it is opened."""

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
        # Deleted rows are overwritten with zeros: a removed character's images (/cast remove)
        # do not linger in free pages of the file or of its backups.
        self.db.execute("PRAGMA secure_delete=ON")
        migrations.apply(self.db)
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

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
