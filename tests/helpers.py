"""Helpers shared by the flow tests: waiting for jobs, reading what the fakes saw."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

from PIL import Image

from bot.models import Origin, Reference, SeqRequest
from bot.originals import OriginalsCache
from bot.store import Job, Store
from tests.conftest import RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram


async def until_final(telegram: FakeTelegram, bot: RunningBot, job_id: int = 1) -> Job:
    """Wait for the job to reach a final state, and its task to end (the final status edit is
    made after the state is written), and return it."""

    def final() -> Job | None:
        job = bot.store.get(job_id)
        done = job is not None and job.final and not bot.runner.working_on(job_id)
        return job if done else None

    job: Job = await telegram.wait_for(final)
    return job


def status_history(telegram: FakeTelegram, job: Job) -> list[str]:
    """Every text the job's status message showed, first to last."""
    assert job.status_message_id is not None
    return telegram.history[(job.chat_id, job.status_message_id)]


def status_messages(telegram: FakeTelegram) -> list:
    """The status messages the bot posted (not replies, not the follow-ups under the images)."""
    return [
        c
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params["text"].startswith("⏳")
    ]


def followups(telegram: FakeTelegram) -> list:
    """The follow-up messages with the Again / Originals / Details buttons."""
    return [
        c
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if "again:" in json.dumps(c.params.get("reply_markup", {}))
    ]


def media(telegram: FakeTelegram, kind: str | None = None) -> list[dict]:
    return [m for m in telegram.delivered_media if kind is None or m["kind"] == kind]


def assert_clean(telegram: FakeTelegram, runcomfy: FakeRunComfy) -> None:
    """Neither fake saw a call that breaks its API's rules."""
    assert telegram.errors == [], telegram.errors
    assert [e for e in runcomfy.errors if not e.startswith("warning")] == []


async def menu_set(bot: RunningBot) -> None:
    """Wait until the command menu (set in the background at start-up) was taken in full."""
    menu = bot.services.menu
    assert menu is not None, "the bot has not started"
    assert await menu, "Telegram did not take the command menu"


async def answered(telegram: FakeTelegram, update: dict[str, Any]) -> dict[str, Any]:
    """Wait for the answer to a callback query update and return it."""
    query_id = update["callback_query"]["id"]
    await telegram.wait_for(lambda: query_id in telegram.callback_answers)
    answer: dict[str, Any] = telegram.callback_answers[query_id]
    return answer


async def help_sent(telegram: FakeTelegram, chat_id: int) -> str:
    """Wait for the /help text in the chat (a marker: updates before it were handled); the
    first one sent there."""
    call = await telegram.wait_for(
        lambda: next(
            (
                c
                for c in telegram.calls_to("sendMessage", ok_only=True)
                if c.params["chat_id"] == chat_id and c.params["text"].startswith("Hi! I turn")
            ),
            None,
        )
    )
    return str(call.params["text"])


async def zip_sent(telegram: FakeTelegram) -> bytes:
    """Wait for the first 📦 ZIP the bot sends and return its bytes."""
    call = await telegram.wait_for(
        lambda: next(
            (
                c
                for c in telegram.calls_to("sendDocument", ok_only=True)
                if c.params.get("caption", "").startswith("📦")
            ),
            None,
        )
    )
    return telegram.files[call.response["result"]["document"]["file_id"]]


async def reply_to(telegram: FakeTelegram, update: dict[str, Any]) -> str:
    """Wait for the bot's text reply to a message update and return its text."""
    message_id = update["message"]["message_id"]
    chat_id = update["message"]["chat"]["id"]

    def reply() -> str | None:
        for call in telegram.calls_to("sendMessage", ok_only=True):
            params = call.params
            if (
                params["chat_id"] == chat_id
                and params.get("reply_parameters", {}).get("message_id") == message_id
            ):
                return str(params["text"])
        return None

    text: str = await telegram.wait_for(reply)
    return text


# ---- reference images: jobs recorded as the intake records them --------------------------------

PREFIX = "/seqbot"  # PUBLIC_URL's path in the tests


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    """A small plain JPEG of one colour."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def record_job(
    env: dict[str, str],
    telegram: FakeTelegram,
    images: list[bytes],
    *,
    count: int = 2,
    keep_files: bool = True,
) -> tuple[Job, list[Reference]]:
    """A job with these reference images, written as the intake writes it (row, then files)."""
    message_id = telegram.send_text("(a photo)", push=False)["message"]["message_id"]
    refs = [
        Reference(f"ref{i:02d}-{'x' * 8}", "photo", ADA_ID, message_id, 96, 64, len(data))
        for i, data in enumerate(images)
    ]
    request = SeqRequest(
        count=count,
        size="2048:2048 (1:1)",
        mode="fast",
        seed=None,
        prompt="the cup in image 1",
        text=f"Generate {count} images: the cup in image 1 on a table.",
        refs=tuple(refs),
    )
    job = await write_job(env, request, message_id, images if keep_files else None)
    return job, refs


async def write_job(
    env: dict[str, str], request: SeqRequest, message_id: int, images: list[bytes] | None
) -> Job:
    """Ada's job of ``request`` (asked by ``message_id``), written as the intake writes it: the
    row, then (``images``: its references' bytes, in order) the pin and the files."""
    db = Path(env["DATABASE_PATH"])
    store = Store(db)
    try:
        origin = Origin(ADA_ID, message_id, ADA_ID, ADA_ID, "ada", None, "private")
        job = store.create_job(request, origin)
        assert job is not None
    finally:
        store.close()
    if images is not None:
        cache = OriginalsCache(db.parent / "originals")
        await cache.pin(job.id)  # as JobRunner._keep_refs does before it writes them
        for ref, data in zip(request.refs, images, strict=True):
            await cache.save_ref(job.id, ref.id, data)
    return job


def refs_env(env: dict[str, str], port: int | None = None) -> dict[str, str]:
    """The test environment with PUBLIC_URL (http on loopback, under ``PREFIX``) and WEB_PORT."""
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    return {**env, "PUBLIC_URL": f"http://127.0.0.1:{port}{PREFIX}", "WEB_PORT": str(port)}
