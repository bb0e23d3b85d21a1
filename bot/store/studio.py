"""The studio's part of the database: a person's series page by page, jobs hidden from it, and
the panels' thumbnails (small WebP BLOBs, kept as long as the job's row)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bot.models import Job
from bot.store.base import StoreBase, busy_is_user_error


class StudioStore(StoreBase):
    """Reads for the studio's pages; its two writes (thumbnails, hide)."""

    if TYPE_CHECKING:  # JobStore's, in the composed Store: rows with waiting changes laid over

        def _jobs(self, sql: str, params: list[Any]) -> list[Job]: ...

    def series_page(self, requester_id: int, before: int | None, limit: int) -> list[Job]:
        """The requester's jobs not hidden, newest first, older than job ``before`` if given."""
        return self._jobs(
            # A redone panel (story) is shown within its set, not as a series of its own.
            "SELECT * FROM jobs WHERE requester_id = ? AND hidden = 0 AND redo_of IS NULL "
            "AND id < ? ORDER BY id DESC LIMIT ?",
            [requester_id, before if before is not None else 2**63 - 1, limit],
        )

    def studio_person_seen(self, person_id: int, now: float) -> bool:
        """Remember that ``person_id`` opened the studio; False if SQLite refused for a moment
        (asked again at their next request)."""
        try:
            with self.db.conn:
                self.db.execute(
                    "INSERT OR IGNORE INTO studio_people (person_id, first_seen) VALUES (?, ?)",
                    [person_id, now],
                )
        except sqlite3.OperationalError:
            return False
        return True

    def uses_studio(self, person_id: int) -> bool:
        """Whether ``person_id`` has ever opened the studio."""
        row = self.db.execute(
            "SELECT 1 FROM studio_people WHERE person_id = ?", [person_id]
        ).fetchone()
        return row is not None

    def hidden(self, job_id: int) -> bool:
        """Whether the job was hidden from the studio."""
        row = self.db.execute("SELECT hidden FROM jobs WHERE id = ?", [job_id]).fetchone()
        return bool(row and row[0])

    def hide(self, job_id: int) -> list[int]:
        """Hide the job (and its redone panels) from the studio for good; their thumbnails go.
        Returns the ids hidden. Raises StoreBusyError."""
        with busy_is_user_error(), self.db.conn:
            ids = [job_id] + [
                row[0] for row in self.db.execute("SELECT id FROM jobs WHERE redo_of = ?", [job_id])
            ]
            marks = ", ".join("?" for _ in ids)
            self.db.execute(f"UPDATE jobs SET hidden = 1 WHERE id IN ({marks})", ids)
            self.db.execute(f"DELETE FROM thumbs WHERE job_id IN ({marks})", ids)
        return ids

    def save_thumbs(self, job_id: int, thumbs: Iterable[tuple[int, bytes, int, int]]) -> bool:
        """Keep (index, WebP, width, height) of the job's panels; False if SQLite refused for a
        moment (the thumbnails are made again the next time they are asked for)."""
        rows = [
            {"job_id": job_id, "idx": i, "data": data, "width": w, "height": h}
            for i, data, w, h in thumbs
        ]
        try:
            with self.db.conn:
                self.db.table("thumbs").insert_all(rows, replace=True)
        except sqlite3.OperationalError:
            return False
        return True

    def thumb(self, job_id: int, index: int) -> bytes | None:
        """One panel's thumbnail (WebP), if made."""
        row = self.db.execute(
            "SELECT data FROM thumbs WHERE job_id = ? AND idx = ?", [job_id, index]
        ).fetchone()
        return bytes(row[0]) if row else None

    def thumb_indexes(self, job_ids: list[int]) -> dict[int, list[int]]:
        """Per job, the panels that have a thumbnail, in order."""
        if not job_ids:
            return {}
        marks = ", ".join("?" for _ in job_ids)
        found: dict[int, list[int]] = {}
        for job_id, index in self.db.execute(
            f"SELECT job_id, idx FROM thumbs WHERE job_id IN ({marks}) ORDER BY job_id, idx",
            job_ids,
        ):
            found.setdefault(job_id, []).append(index)
        return found
