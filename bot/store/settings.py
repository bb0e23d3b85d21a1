"""Per-chat defaults (/settings)."""

from __future__ import annotations

import time

from bot.models import ChatDefaults
from bot.store.base import StoreBase, busy_is_user_error


class SettingsStore(StoreBase):
    """Each chat's /settings: count, size and mode, or None for the bot's default."""

    def chat_defaults(self, chat_id: int) -> ChatDefaults:
        """The chat's /settings (each None where the chat kept the bot's default)."""
        rows = list(self.db.query("SELECT * FROM chat_settings WHERE chat_id = ?", [chat_id]))
        if not rows:
            return ChatDefaults()
        row = rows[0]
        return ChatDefaults(count=row["count"], size=row["size"], mode=row["mode"])

    def set_chat_defaults(self, chat_id: int, defaults: ChatDefaults) -> None:
        """Store the chat's defaults; all None removes them. Raises StoreBusyError."""
        with busy_is_user_error():
            self._set_chat_defaults(chat_id, defaults)

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
