"""What counts toward quotas and caps: jobs that may still be at RunComfy, images billed, spend."""

from __future__ import annotations

from typing import Any

from bot.models import FINAL, Usage
from bot.store.base import StoreBase

# Images count against quotas once they reach RunComfy (or are on their way, or may have: a submit
# without an answer), unless the job was cancelled while queued; a job refused before submit is free.
_BILLED = (
    "((request_id IS NOT NULL AND status != 'cancelled') OR status IN ('new', 'submitting') "
    "OR submit_unknown = 1)"
)


class UsageStore(StoreBase):
    """Read-only questions about spend: quotas, /usage, concurrency caps."""

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

    def chat_images(self, chat_id: int, since: float) -> int:
        """Images the chat's jobs requested (billed, or perhaps billed) since ``since``, whoever
        asked."""
        row = self.db.execute(
            "SELECT coalesce(sum(count), 0) FROM jobs "
            f"WHERE chat_id = ? AND created_at >= ? AND {_BILLED}",
            [chat_id, since],
        ).fetchone()
        return int(row[0])

    def usage_by_chat(self, since: float) -> list[tuple[int, int, int, float]]:
        """Per chat since ``since``: (chat id, jobs, images, cost), busiest first."""
        rows = self.db.execute(
            f"SELECT chat_id, count(*), coalesce(sum(count), 0), coalesce(sum(cost), 0) "
            f"FROM jobs WHERE created_at >= ? AND {_BILLED} "
            "GROUP BY chat_id ORDER BY 3 DESC, 1",
            [since],
        ).fetchall()
        return [(int(c), int(j), int(i), float(x)) for c, j, i, x in rows]
