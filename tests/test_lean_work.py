"""Less CPU per job (issue 20's whole-process CPU item): status edits whose answer is not read
into a ``Message``, and one worker hand-off per result image. Through the real Application and
the loopback fakes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from telegram import Message

from bot.models import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import assert_clean, status_history, until_final


async def test_status_edits_are_made_without_reading_the_answer_into_a_message(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    de_json = Message.de_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Message], data: Any, bot: Any = None) -> Message | None:
        if isinstance(data, dict):
            parsed.append(str(data.get("text", "")))
        return de_json(cls, data, bot)  # type: ignore[no-any-return]

    monkeypatch.setattr(Message, "de_json", classmethod(counting))
    telegram.send_text("/seq 4 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE and job.delivered_images == 4
    shown = status_history(telegram, job)
    # The status moved through its phases (every edit made), and ended as it should.
    assert len(shown) >= 3 and shown[-1].startswith("✅ Done: 4 images")
    assert len(telegram.calls_to("editMessageText", ok_only=True)) >= 2
    # Only the first text (the sendMessage that posted it) was read into a Message: the edits'
    # answers, which carry the edited texts, were only checked.
    assert not [text for text in parsed if text in shown[1:]], parsed
    assert shown[0] in parsed
    assert_clean(telegram, runcomfy)


async def test_each_result_image_is_checked_and_kept_in_one_worker_hand_off(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed: list[str] = []
    to_thread = asyncio.to_thread

    async def counting(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        handed.append(getattr(func, "__name__", repr(func)))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    telegram.send_text("/seq 4 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE and job.delivered_images == 4
    # Checking an image and writing it to disk: one hand-off each, where there were two.
    image_work = [name for name in handed if name in {"inspect", "_save", "_check_and_keep"}]
    assert image_work == ["_check_and_keep"] * 4, handed
    kept = bot.runner.delivery.originals.folder / str(job.id)
    assert sorted(f.name for f in kept.iterdir()) == ["0", "1", "2", "3"]
    assert_clean(telegram, runcomfy)


async def test_an_image_the_disk_will_not_keep_is_still_delivered(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    originals = bot.runner.delivery.originals
    save = originals.save_here

    def full_disk(job_id: int, index: int, data: bytes) -> None:
        if index == 1:
            raise OSError(28, "No space left on device")
        save(job_id, index, data)

    monkeypatch.setattr(originals, "save_here", full_disk)
    with caplog.at_level(logging.INFO):
        telegram.send_text("/seq 3 a fox")
        job = await until_final(telegram, bot)
    assert job.status == Status.DONE and job.delivered_images == 3 and job.error is None
    assert len(telegram.delivered_media) == 3
    assert "job 1: image 2 not kept on disk" in caplog.text
    kept = originals.folder / str(job.id)
    assert sorted(f.name for f in kept.iterdir()) == ["0", "2"]
    assert_clean(telegram, runcomfy)


async def test_a_delivery_quicker_than_the_delay_shows_no_sending(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # The delay is far longer than any delivery here: no "Sending" edit between the album and
    # "Done", however loaded the machine.
    bot = await bots.start(SENDING_EDIT_DELAY_SECONDS="30")
    telegram.send_text("/seq 2 a fox")
    quick = await until_final(telegram, bot)
    firsts = [line.split("\n")[0] for line in status_history(telegram, quick)]
    assert quick.status == Status.DONE and firsts[-1].startswith("✅ Done: 2 images")
    assert not [f for f in firsts if f.startswith("📤")], firsts
    assert_clean(telegram, runcomfy)


async def test_a_delivery_still_under_way_after_the_delay_shows_sending(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # Telegram takes 1.5 s over the album, the delay is 0.2 s: the status says what is going on.
    bot = await bots.start(SENDING_EDIT_DELAY_SECONDS="0.2")
    telegram.delay_next("sendMediaGroup", 1.5)
    telegram.send_text("/seq 3 a hare")
    slow = await until_final(telegram, bot)
    firsts = [line.split("\n")[0] for line in status_history(telegram, slow)]
    assert slow.status == Status.DONE and slow.delivered_images == 3
    assert firsts[-2:] == ["📤 Sending 3 images…", firsts[-1]], firsts
    assert firsts[-1].startswith("✅ Done: 3 images")
    assert_clean(telegram, runcomfy)
