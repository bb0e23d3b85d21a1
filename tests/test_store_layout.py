"""The store is split by concern: a part per concern over one connection, no class too big to read."""

import ast
from pathlib import Path

from bot.store import Store
from bot.store.base import StoreBase
from bot.store.jobs import JobStore
from bot.store.payments import PaymentStore
from bot.store.settings import SettingsStore
from bot.store.usage import UsageStore

STORE = Path(__file__).parent.parent / "bot" / "store"
MOST_LINES = 350


def test_no_class_in_the_store_is_over_350_lines() -> None:
    sizes = {
        f"{path.name}:{node.name}": (node.end_lineno or node.lineno) - node.lineno + 1
        for path in sorted(STORE.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    assert "jobs.py:JobStore" in sizes and "payments.py:PaymentStore" in sizes
    assert {name: n for name, n in sizes.items() if n > MOST_LINES} == {}


def test_each_concern_is_its_own_part_over_one_connection(tmp_path: Path) -> None:
    assert Store.__mro__[1:6] == (JobStore, UsageStore, SettingsStore, PaymentStore, StoreBase)
    own = {part: set(vars(part)) - {"__doc__", "__module__"} for part in Store.__mro__[1:5]}
    assert "create_job" in own[JobStore] and "unfinished" in own[JobStore]
    assert "usage" in own[UsageStore] and "active_jobs" in own[UsageStore]
    assert "chat_defaults" in own[SettingsStore]
    assert "record_payment" in own[PaymentStore] and "balance" in own[PaymentStore]
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
        } <= tables
    finally:
        store.close()
