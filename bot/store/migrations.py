"""The database's schema, one sqlite-utils migration per change, applied in order at start."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("seqbot")


@migrations()
def m001_jobs(db: sqlite_utils.Database) -> None:
    """The jobs table."""
    db.table("jobs").create(
        {
            "id": int,
            "chat_id": int,
            "user_id": int,
            "user_name": str,
            "message_id": int,
            "thread_id": int,
            "chat_type": str,
            "status_message_id": int,
            "count": int,
            "size": str,
            "mode": str,
            "seed": int,
            "prompt": str,
            "text": str,
            "status": str,
            "request_id": str,
            "queue_position": int,
            "cancel_requested": int,
            "status_shown": str,  # the status text and keyboard last shown
            "error": str,
            "image_urls": str,  # JSON list
            "plan": str,  # JSON: the delivery units, fixed once computed
            "delivered": str,  # JSON list of delivered unit indexes
            "delivered_images": int,
            "cost": float,
            "created_at": float,
            "submitted_at": float,
            "started_at": float,
            "finished_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"chat_id", "message_id", "count", "size", "mode", "prompt", "text", "status"},
        defaults={"cancel_requested": 0, "delivered_images": 0},
    )
    # One Telegram message never makes two jobs (updates can be delivered again).
    db.table("jobs").create_index(["chat_id", "message_id"], unique=True)
    db.table("jobs").create_index(["status"])


@migrations()
def m002_usage_indexes(db: sqlite_utils.Database) -> None:
    """Indexes for quotas, /usage and /jobs."""
    db.table("jobs").create_index(["user_id", "created_at"])
    db.table("jobs").create_index(["chat_id", "created_at"])


@migrations()
def m003_completed_at(db: sqlite_utils.Database) -> None:
    """When RunComfy was first seen done: with started_at, how long generating took."""
    db.table("jobs").add_column("completed_at", float)
    db.table("jobs").create_index(["count", "mode", "completed_at"])


@migrations()
def m004_followups_and_settings(db: sqlite_utils.Database) -> None:
    """Follow-up buttons (Again / Originals / Details), languages, and per-chat defaults."""
    jobs = db.table("jobs")
    jobs.add_column("lang", str)
    jobs.add_column("actions_message_id", int)
    jobs.add_column("originals", str)  # JSON: image index -> Telegram file_id of the document
    db.table("chat_settings").create(
        {"chat_id": int, "count": int, "size": str, "mode": str, "updated_at": float},
        pk="chat_id",
    )


@migrations()
def m005_requester_and_unknown_submits(db: sqlite_utils.Database) -> None:
    """Who a job counts against (a channel or group posting as itself is not Channel_Bot), and
    submits whose outcome is unknown (they may have been billed, so they count)."""
    jobs = db.table("jobs")
    jobs.add_column("requester_id", int)
    jobs.add_column("submit_unknown", int, not_null_default=0)
    db.execute("UPDATE jobs SET requester_id = user_id")
    jobs.create_index(["requester_id", "created_at"])


@migrations()
def m006_panels(db: sqlite_utils.Database) -> None:
    """A script's panels, one per image: each image's caption."""
    db.table("jobs").add_column("panels", str)  # JSON: the panels' texts, in order


@migrations()
def m007_photo_file_ids(db: sqlite_utils.Database) -> None:
    """The Telegram file_ids of the photos delivered, for /show to send them again."""
    db.table("jobs").add_column("photos", str)  # JSON: image index -> file_id of the photo


@migrations()
def m008_payments(db: sqlite_utils.Database) -> None:
    """Telegram Stars: invoices sent, payments received (once each), credits, job reservations."""
    db.table("invoices").create(
        {
            "payload": str,  # unguessable (secrets.token_urlsafe): the invoice's order id
            "requester_id": int,  # whose credits it buys
            "user_id": int,  # who may pay it
            "images": int,
            "stars": int,
            "created_at": float,
            "expires_at": float,
        },
        pk="payload",
        not_null={"requester_id", "user_id", "images", "stars", "created_at", "expires_at"},
    )
    db.table("payments").create(
        {
            "charge_id": str,  # telegram_payment_charge_id: a payment is credited once
            "provider_charge_id": str,
            "payload": str,
            "requester_id": int,
            "user_id": int,
            "images": int,
            "stars": int,
            "paid_at": float,
            "refunded_at": float,
        },
        pk="charge_id",
        not_null={"requester_id", "images", "stars", "paid_at"},
    )
    db.table("payments").create_index(["requester_id", "paid_at"])
    db.table("payments").create_index(["paid_at"])
    db.table("credits").create(
        {"requester_id": int, "balance": int, "updated_at": float},
        pk="requester_id",
        not_null={"balance"},
    )
    db.table("reservations").create(
        {
            "job_id": int,
            "requester_id": int,
            "paid": int,  # credits taken from the balance
            "free": int,  # free images of the day used
            "state": str,  # reserved, spent, returned
            "created_at": float,
            "updated_at": float,
        },
        pk="job_id",
        not_null={"requester_id", "paid", "free", "state", "created_at"},
    )
    db.table("reservations").create_index(["requester_id", "created_at"])


@migrations()
def m009_money(db: sqlite_utils.Database) -> None:
    """Refunds Telegram has not confirmed yet, when each invoice was last sent (a repeated tap
    reuses it), and an index to prune expired invoices."""
    payments = db.table("payments")
    # NULL: not refunded; 'pending': credits taken, Telegram's answer not known yet; 'done'.
    payments.add_column("refund_state", str)
    payments.add_column("refund_asked_at", float)
    db.execute("UPDATE payments SET refund_state = 'done' WHERE refunded_at IS NOT NULL")
    invoices = db.table("invoices")
    invoices.add_column("sent_at", float)  # NULL: not (successfully) sent
    db.execute("UPDATE invoices SET sent_at = created_at")
    invoices.create_index(["user_id", "requester_id", "images"])
    invoices.create_index(["expires_at"])
    db.table("payments").create_index(["payload"])


@migrations()
def m010_references(db: sqlite_utils.Database) -> None:
    """Reference images of a job (edit-sequential): their ids, sizes and where they came from."""
    db.table("jobs").add_column("refs", str)  # JSON list of models.Reference


@migrations()
def m011_image_keys(db: sqlite_utils.Database) -> None:
    """How Telegram knows the bot's delivered images, for a reply to one: its message id and the
    file's unique id (a file_id may differ each time Telegram hands the same file out)."""
    db.table("jobs").add_column(
        "image_keys", str
    )  # JSON {"m:<message id>" | "u:<unique id>": index}


@migrations()
def m012_cast(db: sqlite_utils.Database) -> None:
    """Saved characters (/cast): a row per character, its images as BLOBs (kept with the
    database: in every backup, owner-only, never pruned with the originals)."""
    db.table("cast_members").create(
        {
            "id": int,
            "owner_id": int,
            "key": str,  # the name casefolded
            "name": str,
            "draft": int,  # 1: new images waiting for Replace / Keep
            "created_at": float,
        },
        pk="id",
        not_null={"owner_id", "key", "name", "draft", "created_at"},
        defaults={"draft": 0},
    )
    # One saved character per name and owner; drafts stand beside it until answered.
    db.execute(
        "CREATE UNIQUE INDEX idx_cast_members_owner_key ON cast_members (owner_id, key) "
        "WHERE draft = 0"
    )
    db.table("cast_members").create_index(["owner_id", "draft"])
    db.table("cast_images").create(
        {
            "member_id": int,
            "position": int,
            "data": bytes,
            "width": int,
            "height": int,
            "chat_id": int,
            "message_id": int,
        },
        pk=("member_id", "position"),
        not_null={"data", "width", "height", "chat_id", "message_id"},
    )


@migrations()
def m013_story(db: sqlite_utils.Database) -> None:
    """➡️ Continue and ✏️ Redo (issue 21): which job a job continues or redoes a panel of, and
    the questions ("What happens next?") waiting for their answer."""
    jobs = db.table("jobs")
    jobs.add_column("continues", int)
    jobs.add_column("story", int)
    jobs.add_column("episode", int)
    jobs.add_column("redo_of", int)
    jobs.add_column("redo_panel", int)
    jobs.add_column("redo_version", int)
    jobs.create_index(["redo_of"])
    db.table("story_prompts").create(
        {
            "chat_id": int,
            "message_id": int,  # the bot's question, which the answer replies to
            "job_id": int,
            "user_id": int,  # who tapped: only their answer counts
            "panel": int,  # ✏️ Redo: the panel (0-based); NULL: ➡️ Continue
            "created_at": float,
        },
        pk=("chat_id", "message_id"),
        not_null={"job_id", "user_id", "created_at"},
    )
    db.table("story_prompts").create_index(["created_at"])


@migrations()
def m014_studio(db: sqlite_utils.Database) -> None:
    """The studio: a job hidden from it, and each delivered panel's small WebP thumbnail (kept
    with the row, not with the originals the size cap removes)."""
    db.table("jobs").add_column("hidden", int, not_null_default=0)
    db.table("thumbs").create(
        {"job_id": int, "idx": int, "data": bytes, "width": int, "height": int},
        pk=("job_id", "idx"),
        not_null={"data", "width", "height"},
    )
    db.table("jobs").create_index(["requester_id", "hidden", "id"])


@migrations()
def m015_studio_people(db: sqlite_utils.Database) -> None:
    """Who has opened the studio: their panels' thumbnails are made at delivery (others' only
    when the studio first shows them, so the bot does no image work nobody looks at)."""
    db.table("studio_people").create({"person_id": int, "first_seen": float}, pk="person_id")
