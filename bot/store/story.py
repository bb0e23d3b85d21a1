"""➡️ Continue and ✏️ Redo (issue 21): the questions waiting for their answer, and the versions
of a job's panels."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.models import Job, Status
from bot.store.base import StoreBase, busy_is_user_error

# A question nobody answered within this long is forgotten (an answer then gets no job).
PROMPT_KEEP_SECONDS = 7 * 86400


@dataclass(frozen=True)
class StoryPrompt:
    """A question the bot asked (its message), whose answer by ``user_id`` makes a job."""

    chat_id: int
    message_id: int
    job_id: int
    user_id: int
    panel: int | None  # ✏️ Redo: the panel (0-based); None: ➡️ Continue
    created_at: float


class StoryStore(StoreBase):
    """The story's questions, and each panel's versions (redo jobs record ``redo_of``)."""

    if TYPE_CHECKING:  # JobStore's, in the composed Store: rows with waiting changes laid over

        def _jobs(self, sql: str, params: list[Any]) -> list[Job]: ...

    def remember_prompt(
        self, chat_id: int, message_id: int, *, job_id: int, user_id: int, panel: int | None
    ) -> None:
        """Keep a question until answered (across restarts); older ones are dropped."""
        now = time.time()
        with busy_is_user_error(), self.db.conn:
            self.db.execute(
                "DELETE FROM story_prompts WHERE created_at < ?", [now - PROMPT_KEEP_SECONDS]
            )
            self.db.execute(
                "INSERT OR REPLACE INTO story_prompts "
                "(chat_id, message_id, job_id, user_id, panel, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [chat_id, message_id, job_id, user_id, panel, now],
            )

    def story_prompt(self, chat_id: int, message_id: int) -> StoryPrompt | None:
        """The question the bot asked as this message, if it waits for an answer."""
        rows = list(
            self.db.query(
                "SELECT * FROM story_prompts WHERE chat_id = ? AND message_id = ? "
                "AND created_at >= ?",
                [chat_id, message_id, time.time() - PROMPT_KEEP_SECONDS],
            )
        )
        return StoryPrompt(**rows[0]) if rows else None

    def take_prompt(self, chat_id: int, message_id: int) -> bool:
        """Take the question for its answer: True once (a second answer, even at the same
        moment, gets False). Raises StoreBusyError."""
        with busy_is_user_error(), self.db.conn:
            cursor = self.db.execute(
                "DELETE FROM story_prompts WHERE chat_id = ? AND message_id = ?",
                [chat_id, message_id],
            )
        return bool(cursor.rowcount)

    def redos(self, job_id: int) -> list[Job]:
        """Every redo of one of the job's panels, oldest first."""
        return self._jobs("SELECT * FROM jobs WHERE redo_of = ? ORDER BY id", [job_id])

    def latest_versions(self, job_id: int) -> dict[int, Job]:
        """Panel index -> its latest delivered redo (the newest done one)."""
        latest: dict[int, Job] = {}
        for redo in self.redos(job_id):
            if redo.status == Status.DONE and redo.redo_panel is not None:
                latest[redo.redo_panel] = redo
        return latest

    def next_version(self, job_id: int, panel: int) -> int:
        """The version number a new redo of the panel gets: 2 for the first, then on (failed
        and cancelled redos give theirs up)."""
        used = [
            r.redo_version or 2
            for r in self.redos(job_id)
            if r.redo_panel == panel
            and r.status not in (Status.FAILED, Status.CANCELLED)
            and r.status != Status.TIMED_OUT
        ]
        return max(used, default=1) + 1
