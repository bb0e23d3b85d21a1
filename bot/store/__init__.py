"""SQLite via sqlite-utils: the single record of every job, and of every credit.

One connection and one transaction helper (``base.py``), shared by a part per concern:

    Store
     ├── JobStore       jobs.py       the record of every job, waiting writes, what to resume
     ├── UsageStore     usage.py      what counts toward quotas and caps
     ├── SettingsStore  settings.py   per-chat defaults
     ├── StoryStore     story.py      ➡️ Continue's and ✏️ Redo's questions, panel versions
     ├── PaymentStore   payments.py   invoices, payments, credits, reservations
     ├── CastStore      cast.py       saved characters (/cast) and their images
     └── StudioStore    studio.py     the studio: series pages, hidden jobs, thumbnails
    migrations.py: the schema, in order (sqlite-utils)
"""

from __future__ import annotations

from bot.models import ChatDefaults, Job, Origin, SeqRequest, Status, Usage
from bot.store.base import BUSY_TIMEOUT_MS, STARTUP_BUSY_TIMEOUT_MS
from bot.store.cast import CastFull, CastStore
from bot.store.jobs import JobStore
from bot.store.migrations import migrations
from bot.store.payments import (
    Invoice,
    NotEnoughCredits,
    PaidUpdate,
    Payment,
    PaymentStore,
    Reserve,
)
from bot.store.settings import SettingsStore
from bot.store.story import StoryPrompt, StoryStore
from bot.store.studio import StudioStore
from bot.store.usage import UsageStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "STARTUP_BUSY_TIMEOUT_MS",
    "CastFull",
    "ChatDefaults",
    "Invoice",
    "Job",
    "NotEnoughCredits",
    "Origin",
    "PaidUpdate",
    "Payment",
    "Reserve",
    "SeqRequest",
    "Status",
    "Store",
    "StoryPrompt",
    "Usage",
    "migrations",
]


class Store(JobStore, UsageStore, SettingsStore, PaymentStore, StoryStore, CastStore, StudioStore):
    """The bot's database. Migrations run when it is opened."""
