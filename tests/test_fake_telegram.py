"""Self-tests of the fake Telegram Bot API server, driven by a real python-telegram-bot Bot."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter

from tests.fakes.telegram_api import ADA_ID, FakeTelegram

UPDATES_DIR = Path(__file__).parent / "data" / "updates"
GROUP = -1001234567890


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d.title(), callback_data=d) for d in data]])


async def test_get_me(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (7012345678, "SeqImageBot", True)
    assert fake.calls_to("getme", ok_only=True)
    assert not fake.errors


async def test_send_message_with_keyboard_then_edit(bot: Bot, fake: FakeTelegram) -> None:
    msg = await bot.send_message(GROUP, "Generating… job 1", reply_markup=keyboard("cancel:1"))
    assert msg.chat.type == "supergroup" and msg.from_user and msg.from_user.is_bot
    assert fake.buttons(GROUP, msg.message_id) == [("Cancel:1", "cancel:1")]
    edited = await bot.edit_message_text("Done", chat_id=GROUP, message_id=msg.message_id)
    assert isinstance(edited, type(msg)) and edited.text == "Done" and edited.reply_markup is None
    assert fake.history[(GROUP, msg.message_id)] == ["Generating… job 1", "Done"]
    assert fake.buttons(GROUP, msg.message_id) == []
    assert [c.method for c in fake.calls] == ["getMe", "sendMessage", "editMessageText"]
    assert not fake.errors


async def test_identical_edit_is_refused_and_recorded(bot: Bot, fake: FakeTelegram) -> None:
    msg = await bot.send_message(ADA_ID, "Working", reply_markup=keyboard("cancel:2"))
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "Working", chat_id=ADA_ID, message_id=msg.message_id, reply_markup=keyboard("cancel:2")
        )
    assert len(fake.errors) == 1 and "not modified" in fake.errors[0]
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=ADA_ID, message_id=999)


async def test_callback_data_over_64_bytes_is_refused(bot: Bot, fake: FakeTelegram) -> None:
    data = "a" * 63 + "é"  # 64 characters, 65 bytes
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(ADA_ID, "hi", reply_markup=keyboard(data))
    assert fake.errors and "65 bytes" in fake.errors[0]
    assert not fake.messages


async def test_media_group_of_uploaded_photos(bot: Bot, fake: FakeTelegram) -> None:
    media = [
        InputMediaPhoto(jpeg(640, 480), caption="first"),
        InputMediaPhoto(jpeg(300, 500)),
    ]
    sent = await bot.send_media_group(ADA_ID, media)
    assert len(sent) == 2
    assert sent[0].media_group_id and sent[0].media_group_id == sent[1].media_group_id
    assert (sent[0].photo[-1].width, sent[0].photo[-1].height) == (640, 480)
    assert (sent[1].photo[-1].width, sent[1].photo[-1].height) == (300, 500)
    assert sent[0].caption == "first"
    assert [d["kind"] for d in fake.delivered_media] == ["photo", "photo"]
    uploads = list(fake.calls[-1].files.values())
    assert [d["bytes"] for d in fake.delivered_media] == [len(b) for b in uploads]
    assert fake.calls[-1].params["media"][0]["media"].startswith("attach://")
    assert not fake.errors


@pytest.mark.parametrize("count", [1, 11])
async def test_album_size_limits(bot: Bot, fake: FakeTelegram, count: int) -> None:
    media = [InputMediaPhoto(f"https://example.org/{i}.jpg") for i in range(count)]
    with pytest.raises(BadRequest):
        await bot.send_media_group(ADA_ID, media)
    assert fake.errors and f"{count} items" in fake.errors[0]
    assert not fake.delivered_media


async def test_album_retry_after_with_partial_delivery(bot: Bot, fake: FakeTelegram) -> None:
    fake.album_retry_after_next(retry_after=5, delivered_before=1)
    media = [InputMediaPhoto(jpeg(64, 64)) for _ in range(3)]
    with pytest.raises(
        BadRequest, match=r'(?i)#2 with the error message "Too Many Requests: retry after 5"'
    ):
        await bot.send_media_group(ADA_ID, media)
    assert len(fake.delivered_media) == 1
    assert len(await bot.send_media_group(ADA_ID, media)) == 3


async def test_rate_limit_surfaces_as_retry_after(
    bot: Bot, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without PTB_TIMEDELTA, PTB 22 warns (PTBDeprecationWarning) while *constructing* RetryAfter,
    # which filterwarnings=error turns into a crash instead of RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    fake.rate_limit_next("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(ADA_ID, "hello")
    assert exc.value.retry_after == dtm.timedelta(seconds=7)
    assert fake.calls[-1].status == 429 and not fake.messages
    assert (await bot.send_message(ADA_ID, "hello")).text == "hello"


async def test_blocked_chat_and_server_error(bot: Bot, fake: FakeTelegram) -> None:
    fake.block_chat(ADA_ID)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(ADA_ID, "hello")
    fake.fail_server_next("sendMessage")
    with pytest.raises(Exception, match="502"):
        await bot.send_message(GROUP, "hello")


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    bad = Bot("123:WRONG", base_url=fake.base_url, base_file_url=fake.base_file_url)
    with pytest.raises(InvalidToken):
        await bad.get_me()
    await bad.shutdown()
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{fake.base_url}123:WRONG/getMe")
    assert r.status_code == 401
    assert r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_raw_json_requests_are_spec_checked(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}{fake.token}"
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{url}/sendmessage", json={"chat_id": 1, "text": "hi", "colour": 1})
        assert r.status_code == 400 and "colour" in r.json()["description"]
        r = await client.post(f"{url}/sendMessage", json={"chat_id": 1})
        assert r.status_code == 400 and "text" in r.json()["description"]
        r = await client.post(f"{url}/sendMediaGroup", json={"chat_id": 1, "media": [
            {"type": "photo", "media": "a"}, {"type": "photo", "media": "b", "size": 1}
        ], "reply_markup": {"inline_keyboard": []}})  # fmt: skip
        assert r.status_code == 400
        r = await client.get(f"{url}/noSuchMethod")
        assert r.status_code == 404 and r.json()["description"] == "Not Found: method not found"
        r = await client.get(f"{url}/sendMessage", params={"chat_id": "5", "text": "123"})
        assert r.json()["result"]["text"] == "123"
    assert len(fake.errors) == 4
    assert any("reply_markup" in e for e in fake.errors)
    assert any("media[1]: unknown field 'size' for InputMediaPhoto" in e for e in fake.errors)


async def test_callback_queries_and_answers(bot: Bot, fake: FakeTelegram) -> None:
    msg = await bot.send_message(GROUP, "Working", reply_markup=keyboard("cancel:9"))
    update = fake.press_button((GROUP, msg.message_id), "cancel:9")
    qid = update["callback_query"]["id"]
    assert await bot.answer_callback_query(qid, text="Cancelled")
    assert fake.callback_answers[qid]["text"] == "Cancelled"
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(qid)
    with pytest.raises(BadRequest):
        await bot.answer_callback_query("nope", text="x" * 201)
    assert len(fake.errors) == 2


async def test_chat_member_status(bot: Bot, fake: FakeTelegram) -> None:
    assert (await bot.get_chat_member(GROUP, ADA_ID)).status == "member"
    fake.set_member_status(GROUP, ADA_ID, "administrator")
    member = await bot.get_chat_member(GROUP, ADA_ID)
    assert member.status == "administrator" and member.user.first_name == "Ada"
    assert [m.user.id for m in await bot.get_chat_administrators(GROUP)] == [ADA_ID]
    assert not fake.errors


async def test_set_my_commands_limits(bot: Bot, fake: FakeTelegram) -> None:
    assert await bot.set_my_commands([("seq", "Generate a sequence of images")])
    assert fake.commands == [{"command": "seq", "description": "Generate a sequence of images"}]
    with pytest.raises(BadRequest):
        await bot.set_my_commands([("Seq-Images", "bad name")])
    assert len(fake.errors) == 1


async def test_get_updates_long_polls(bot: Bot, fake: FakeTelegram) -> None:
    assert await bot.get_updates(timeout=0) == ()
    fake.send_text("/seq 2 1:1 fox")
    first = await bot.get_updates(timeout=0)
    assert len(first) == 1 and first[0].message and first[0].message.text == "/seq 2 1:1 fox"
    polls = fake.polls_received
    waiting = asyncio.create_task(bot.get_updates(offset=first[0].update_id + 1, timeout=5))
    await fake.wait_for(lambda: fake.polls_received > polls)
    await asyncio.sleep(0.2)  # on purpose: the poll is held open while there is nothing to send
    assert not waiting.done()
    started = time.monotonic()
    fake.send_text("hello", chat_id=GROUP)
    second = await asyncio.wait_for(waiting, 0.5)
    assert time.monotonic() - started < 0.3
    assert [u.update_id for u in second] == [first[0].update_id + 1]
    assert second[0].effective_chat and second[0].effective_chat.id == GROUP


async def test_send_text_parses_with_ptb(bot: Bot, fake: FakeTelegram) -> None:
    sent = await bot.send_message(GROUP, "status")
    raw = fake.send_text("/seq@SeqImageBot 3 🦊 fox", chat_id=GROUP, message_thread_id=7,
                         reply_to_message_id=sent.message_id, push=False)  # fmt: skip
    update = Update.de_json(raw, bot)
    assert update.message and update.message.text == "/seq@SeqImageBot 3 🦊 fox"
    assert update.message.entities[0].length == len("/seq@SeqImageBot")
    assert update.message.is_topic_message and update.message.chat.is_forum
    assert update.message.reply_to_message and update.message.reply_to_message.text == "status"
    assert update.message.from_user and update.message.from_user.id == ADA_ID
    edited = Update.de_json(fake.send_text("/seq", edited=True, message_id=5, push=False), bot)
    assert edited.edited_message and edited.edited_message.edit_date


async def test_example_updates_can_be_pushed_and_fetched(bot: Bot, fake: FakeTelegram) -> None:
    files = [
        p for p in UPDATES_DIR.glob("*.json") if p.name != "official_webhook_guide_examples.json"
    ]
    examples = sorted((json.loads(p.read_text()) for p in files), key=lambda u: u["update_id"])
    for example in examples:
        fake.push_update(example)
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [e["update_id"] for e in examples]
    inaccessible = next(u for u in updates if u.update_id == 815196413)
    query = inaccessible.callback_query
    assert query and query.message and not query.message.is_accessible
    cancel = next(u for u in updates if u.update_id == 815196412)
    assert cancel.callback_query and await bot.answer_callback_query(cancel.callback_query.id)
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    assert not fake.errors


async def test_photos_albums_and_documents_users_send_can_be_fetched(
    fake: FakeTelegram, bot: Bot
) -> None:
    data = jpeg(640, 480)
    sent = fake.send_photo(data, "/seq 2 a fox")
    update = Update.de_json(sent, bot)
    assert update is not None and update.message is not None
    message = update.message
    assert message.caption == "/seq 2 a fox" and message.text is None
    assert message.caption_entities[0].type == "bot_command"
    assert (message.photo[-1].width, message.photo[-1].height) == (640, 480)
    file = await bot.get_file(message.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == data
    # python-telegram-bot makes file_path the whole URL, token included.
    assert file.file_path == f"{fake.base_file_url}{fake.token}/photos/file_0.jpg"
    assert fake.downloads == [("photos/file_0.jpg", 200)]

    album = fake.send_album([jpeg(64, 64), jpeg(32, 32)], "/seq 2 both", caption_on=1)
    groups = {u["message"]["media_group_id"] for u in album}
    assert len(groups) == 1 and "caption" not in album[0]["message"]
    assert album[1]["message"]["caption"] == "/seq 2 both"

    doc = fake.send_document(b"%PDF", mime_type="application/pdf", file_name="a.pdf")
    assert doc["message"]["document"]["mime_type"] == "application/pdf"
    assert "caption" not in doc["message"]


async def test_get_file_refuses_big_and_unknown_files_and_downloads_need_the_token(
    fake: FakeTelegram, bot: Bot
) -> None:
    big = fake.send_photo(jpeg(64, 64), size=21 * 1024 * 1024)
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(big["message"]["photo"][-1]["file_id"])
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("AgACAgUAAxkBAAUnothere")
    small = fake.send_photo(jpeg(64, 64))
    file = await bot.get_file(small["message"]["photo"][-1]["file_id"])
    base = fake.base_file_url
    async with httpx.AsyncClient() as client:
        path = str(file.file_path).rpartition(fake.token + "/")[2]
        right = await client.get(f"{base}{fake.token}/{path}")
        wrong = await client.get(f"{base}123:wrong/{path}")
        unknown = await client.get(f"{base}{fake.token}/photos/none.jpg")
    assert (right.status_code, wrong.status_code, unknown.status_code) == (200, 404, 404)
