"""Saved characters (/cast): each person's (or chat identity's) named images.

Every call takes the owner: a character is found, listed, replaced or removed only by whoever
saved it, so an id from a button or the Mini App reaches nobody else's. The images are BLOBs in
the database: in every ``python -m bot backup``, readable by the bot's user only, and gone the
moment their row is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.errors import RefusedError
from bot.models import CastImage, CastMember
from bot.store.base import StoreBase, busy_is_user_error

# New images for a name already taken wait this long for Replace or Keep, then are dropped.
DRAFT_SECONDS = 24 * 3600


class CastFull(RefusedError):
    """The owner has as many characters as CAST_MAX_PER_PERSON allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            "You have {limit} saved characters, the most allowed. "
            "Remove one first (/cast shows them).",
            limit=limit,
        )


def _member(row: dict[str, Any]) -> CastMember:
    return CastMember(
        id=row["id"],
        owner_id=row["owner_id"],
        name=row["name"],
        key=row["key"],
        images=row["images"],
        created_at=row["created_at"],
        draft=bool(row["draft"]),
    )


_SELECT = (
    "SELECT m.*, (SELECT COUNT(*) FROM cast_images i WHERE i.member_id = m.id) AS images "
    "FROM cast_members m "
)


class CastStore(StoreBase):
    """Characters by owner: list, find, save (asking before a replacement), remove."""

    def cast_list(self, owner_id: int) -> list[CastMember]:
        """The owner's saved characters, by name."""
        rows = self.db.query(
            _SELECT + "WHERE m.owner_id = ? AND m.draft = 0 ORDER BY m.key, m.id", [owner_id]
        )
        return [_member(r) for r in rows]

    def cast_get(self, owner_id: int, member_id: int) -> CastMember | None:
        """The owner's character (or draft) with this id; None when it is not theirs or gone."""
        rows = list(
            self.db.query(_SELECT + "WHERE m.id = ? AND m.owner_id = ?", [member_id, owner_id])
        )
        return _member(rows[0]) if rows else None

    def cast_owner(self, member_id: int) -> int | None:
        """Whose character (or draft) this id is: for telling a tapper it is not theirs."""
        rows = list(self.db.query("SELECT owner_id FROM cast_members WHERE id = ?", [member_id]))
        return int(rows[0]["owner_id"]) if rows else None

    def cast_by_key(self, owner_id: int, key: str) -> CastMember | None:
        """The owner's saved character of this name (``cast.key``)."""
        rows = list(
            self.db.query(
                _SELECT + "WHERE m.owner_id = ? AND m.key = ? AND m.draft = 0", [owner_id, key]
            )
        )
        return _member(rows[0]) if rows else None

    def cast_images(self, owner_id: int, member_id: int) -> list[CastImage]:
        """The character's images in order (empty when it is not the owner's)."""
        rows = self.db.query(
            "SELECT i.* FROM cast_images i JOIN cast_members m ON m.id = i.member_id "
            "WHERE i.member_id = ? AND m.owner_id = ? ORDER BY i.position",
            [member_id, owner_id],
        )
        return [
            CastImage(r["data"], r["width"], r["height"], r["chat_id"], r["message_id"])
            for r in rows
        ]

    def cast_save(
        self,
        owner_id: int,
        name: str,
        key: str,
        images: Sequence[CastImage],
        *,
        cap: int,
        now: float | None = None,
    ) -> tuple[CastMember, CastMember | None]:
        """Save a character. With the name free: saved, ``(member, None)``. With it taken: the
        images are kept as a draft, ``(draft, existing)``, until :meth:`cast_replace` or
        :meth:`cast_discard` (an earlier draft of the same name is dropped: the latest question
        counts). Raises CastFull (nothing written) at ``cap``, StoreBusyError."""
        now = time.time() if now is None else now
        with busy_is_user_error(), self._transaction():
            # An earlier question about this name, and any left unanswered for a day: gone. (At
            # most one draft per name taken: never more than the cap per owner.)
            stale = (
                "SELECT id FROM cast_members WHERE draft = 1 "
                "AND ((owner_id = ? AND key = ?) OR created_at < ?)"
            )
            params = [owner_id, key, now - DRAFT_SECONDS]
            self.db.execute(f"DELETE FROM cast_images WHERE member_id IN ({stale})", params)
            self.db.execute(f"DELETE FROM cast_members WHERE id IN ({stale})", params)
            existing = self.cast_by_key(owner_id, key)
            if existing is None and self._cast_count(owner_id) >= cap:
                raise CastFull(cap)
            cursor = self.db.execute(
                "INSERT INTO cast_members (owner_id, key, name, draft, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [owner_id, key, name, int(existing is not None), now],
            )
            member_id = int(cursor.lastrowid or 0)
            self._insert_images(member_id, images)
        member = self.cast_get(owner_id, member_id)
        assert member is not None
        return member, existing

    def _insert_images(self, member_id: int, images: Sequence[CastImage]) -> None:
        for position, image in enumerate(images):
            self.db.execute(
                "INSERT INTO cast_images (member_id, position, data, width, height, chat_id, "
                "message_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    member_id,
                    position,
                    image.data,
                    image.width,
                    image.height,
                    image.chat_id,
                    image.message_id,
                ],
            )

    def _cast_count(self, owner_id: int) -> int:
        rows = self.db.query(
            "SELECT COUNT(*) AS n FROM cast_members WHERE owner_id = ? AND draft = 0", [owner_id]
        )
        return int(next(iter(rows))["n"])

    def cast_replace(self, owner_id: int, draft_id: int, *, cap: int) -> CastMember | None:
        """The draft becomes the character of its name, the old one's images deleted; None when
        the draft is gone (answered already, or expired). Raises CastFull when the old one was
        removed meanwhile (the draft is then a new character) and the owner is at ``cap``;
        StoreBusyError."""
        with busy_is_user_error(), self._transaction():
            draft = self.cast_get(owner_id, draft_id)
            if draft is None or not draft.draft:
                return None
            old = self.cast_by_key(owner_id, draft.key)
            if old is not None:
                self._delete(old.id)
            elif self._cast_count(owner_id) >= cap:
                raise CastFull(cap)
            self.db.execute("UPDATE cast_members SET draft = 0 WHERE id = ?", [draft_id])
        return self.cast_get(owner_id, draft_id)

    def cast_discard(self, owner_id: int, draft_id: int) -> bool:
        """Drop a draft (Keep): whether there was one."""
        with busy_is_user_error(), self._transaction():
            draft = self.cast_get(owner_id, draft_id)
            if draft is None or not draft.draft:
                return False
            self._delete(draft_id)
        return True

    def cast_remove(self, owner_id: int, member_id: int) -> CastMember | None:
        """Delete the owner's saved character and its images at once; the removed one, or None
        when it was not theirs or already gone. Raises StoreBusyError."""
        with busy_is_user_error(), self._transaction():
            member = self.cast_get(owner_id, member_id)
            if member is None or member.draft:
                return None
            self._delete(member_id)
        return member

    def _delete(self, member_id: int) -> None:
        self.db.execute("DELETE FROM cast_images WHERE member_id = ?", [member_id])
        self.db.execute("DELETE FROM cast_members WHERE id = ?", [member_id])
