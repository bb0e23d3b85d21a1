"""The store is split by concern: a part per concern over one connection (sizes: test_layout.py)."""

from pathlib import Path

from bot.store import Store
from bot.store.base import StoreBase
from bot.store.cast import CastStore
from bot.store.jobs import JobStore
from bot.store.payments import PaymentStore
from bot.store.settings import SettingsStore
from bot.store.story import StoryStore
from bot.store.studio import StudioStore
from bot.store.usage import UsageStore


def test_each_concern_is_its_own_part_over_one_connection(tmp_path: Path) -> None:
    assert Store.__mro__[1:9] == (
        JobStore,
        UsageStore,
        SettingsStore,
        PaymentStore,
        StoryStore,
        CastStore,
        StudioStore,
        StoreBase,
    )
    own = {part: set(vars(part)) - {"__doc__", "__module__"} for part in Store.__mro__[1:8]}
    assert "create_job" in own[JobStore] and "unfinished" in own[JobStore]
    assert "usage" in own[UsageStore] and "active_jobs" in own[UsageStore]
    assert "chat_defaults" in own[SettingsStore]
    assert "record_payment" in own[PaymentStore] and "balance" in own[PaymentStore]
    assert "cast_list" in own[CastStore] and "cast_remove" in own[CastStore]
    assert "take_prompt" in own[StoryStore] and "latest_versions" in own[StoryStore]
    assert "series_page" in own[StudioStore] and "save_thumbs" in own[StudioStore]
    # No public call is defined twice (a part shadowing another's would be a silent split).
    names = [name for methods in own.values() for name in methods if not name.startswith("_")]
    assert len(names) == len(set(names))

    store = Store(tmp_path / "seqbot.db")
    try:
        tables = set(store.db.table_names())
        assert {
            "jobs",
            "chat_settings",
            "invoices",
            "payments",
            "credits",
            "reservations",
            "cast_members",
            "cast_images",
            "story_prompts",
            "thumbs",
        } <= tables
    finally:
        store.close()
