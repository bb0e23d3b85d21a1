"""Texts and album plans (pure); callback data is in test_callbacks.py."""

from __future__ import annotations

import pytest

from bot import render
from bot.models import DeliveryUnit, Job, Status, UnitKind


def make_job(**changes: object) -> Job:
    fields: dict[str, object] = {
        "id": 12,
        "chat_id": 1,
        "message_id": 2,
        "count": 4,
        "size": "2560:1440 (16:9)",
        "mode": "fast",
        "prompt": "a lighthouse",
        "text": "Generate 4 images: a lighthouse",
        "status": Status.QUEUED,
        "created_at": 1000.0,
    }
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(0, []), (1, [1]), (2, [2]), (10, [10]), (11, [6, 5]), (12, [6, 6]), (15, [8, 7])],
)
def test_albums_are_balanced_and_never_of_one(n: int, sizes: list[int]) -> None:
    assert render.split_balanced(n) == sizes


def test_plan_keeps_photos_and_documents_apart() -> None:
    plan = render.delivery_plan([0, 1, 3], [2])
    assert plan == [
        DeliveryUnit(UnitKind.PHOTO, (0, 1, 3)),
        DeliveryUnit(UnitKind.DOCUMENT, (2,)),
    ]


def test_caption_fits_1024_utf16_units_with_emoji_prompt() -> None:
    job = make_job(prompt="🌊" * 900, seed=42)
    caption = render.caption(job)
    assert render.utf16_len(caption) <= render.CAPTION_LIMIT
    assert caption.endswith("4 images · 16:9 · fast · seed 42")
    assert "…" in caption


def test_status_texts_per_state() -> None:
    queued = make_job(queue_position=3)
    assert render.status_text(queued).startswith("⏳ Queued (position 3)…")
    assert render.status_keyboard(queued) is not None
    running = make_job(status=Status.RUNNING, started_at=1000.0)
    assert render.status_text(running, now=1042.0).startswith("🎨 Generating… 0:40")
    assert render.status_keyboard(running) is None
    done = make_job(
        status=Status.DONE,
        image_urls=["a", "b", "c"],
        delivered_images=3,
        submitted_at=1000.0,
        finished_at=1075.0,
    )
    text = render.status_text(done)
    assert text.startswith("✅ Done: 3 images in 1:15.")
    assert "returned 3 of the 4 images" in text
    failed = make_job(status=Status.FAILED, error="No balance.")
    assert render.status_text(failed).startswith("❌ Failed: No balance.")
    assert render.status_text(make_job(status=Status.CANCELLED)).startswith("🚫 Cancelled.")
    assert render.status_text(make_job(status=Status.TIMED_OUT)).startswith("⌛ Timed out")


def test_cancel_requested_hides_the_button() -> None:
    assert render.status_keyboard(make_job(cancel_requested=1)) is None


def test_a_cancel_not_yet_answered_by_runcomfy_says_cancelling() -> None:
    job = make_job(cancel_requested=1, queue_position=3)
    assert render.status_text(job).startswith("⏳ Cancelling…\n")
    job.lang = "ru"
    assert render.status_text(job).startswith("⏳ Отменяю…\n")
