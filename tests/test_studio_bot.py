"""How the studio opens from the chat: /studio, /start studio, the 🖼 Studio button on each
follow-up, and the private chats' menu button; through the real Application and the fake."""

from __future__ import annotations

import json

from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import answered, followups, help_sent, menu_set, refs_env, reply_to
from tests.studio_helpers import PUBLIC, run_job, start_studio

GROUP = -1001234567890
APP = PUBLIC + "/app/"


def markup(telegram: FakeTelegram, update: dict) -> list[list[dict]]:
    message_id = update["message"]["message_id"]
    chat_id = update["message"]["chat"]["id"]
    for call in telegram.calls_to("sendMessage", ok_only=True):
        replied = call.params.get("reply_parameters", {}).get("message_id")
        if replied == message_id and call.params["chat_id"] == chat_id:
            keyboard: list[list[dict]] = call.params["reply_markup"]["inline_keyboard"]
            return keyboard
    raise AssertionError("no reply")


async def help_of(telegram: FakeTelegram) -> str:
    """The bot's answer to a /help sent now in Ada's private chat (its first there)."""
    telegram.send_text("/help")
    return await help_sent(telegram, ADA_ID)


async def test_studio_in_private_is_a_web_app_button_and_in_a_group_a_link_to_private(
    bots: Bots, telegram: FakeTelegram
) -> None:
    studio = await start_studio(bots)
    username = studio.bot.app.bot.username
    try:
        private = telegram.send_text("/studio")
        assert "studio" in await reply_to(telegram, private)
        ((button,),) = markup(telegram, private)
        assert button["web_app"] == {"url": APP} and "url" not in button
        group = telegram.send_text(f"/studio@{username}", chat_id=GROUP, user_id=ADA_ID)
        assert "private chat" in await reply_to(telegram, group)
        ((link,),) = markup(telegram, group)
        assert link["url"] == f"https://t.me/{username}?start=studio" and "web_app" not in link
        started = telegram.send_text("/start studio")
        text = await reply_to(telegram, started)
        assert text == "🖼 Your series, in the studio:"  # not the help as well
        ((button,),) = markup(telegram, started)
        assert button["web_app"] == {"url": APP}
        ru = telegram.send_text("/studio", chat_id=777000111, from_user={
            "id": 777000111, "is_bot": False, "first_name": "Ivan", "language_code": "ru"})  # fmt: skip
        assert await reply_to(telegram, ru) == "🖼 Ваши серии — в студии:"
        assert telegram.errors == []
    finally:
        await studio.close()
    helps = [
        c
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params["text"].startswith("Hi! I turn")
    ]
    assert helps == []


async def test_every_follow_up_has_a_studio_button_private_web_app_group_link(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    username = studio.bot.app.bot.username
    try:
        await run_job(telegram, studio.bot, "/seq 1 1:1 a lemon")
        await run_job(telegram, studio.bot, "/seq 1 1:1 a lime", chat_id=GROUP, user_id=ADA_ID)
        private, group = followups(telegram)
        private_row = private.params["reply_markup"]["inline_keyboard"][1]
        assert private_row[-1] == {"text": "🖼 Studio", "web_app": {"url": APP}}
        group_row = group.params["reply_markup"]["inline_keyboard"][1]
        assert group_row[-1] == {
            "text": "🖼 Studio",
            "url": f"https://t.me/{username}?start=studio",
        }
        # ✏️ Redo panel's choice and ↩️ Back put the follow-up's buttons back whole.
        chat, message = private.params["chat_id"], private.response["result"]["message_id"]
        job_id = int(private.params["text"].split("#")[1].split(" ")[0])
        with_studio = telegram.buttons(chat, message)
        assert ("🖼 Studio", "") in with_studio
        await answered(telegram, telegram.press_button((chat, message), f"v1:redo:{job_id}"))
        await telegram.wait_for(  # the panel buttons in their place
            lambda: ("1", f"v1:redo:{job_id}:1") in telegram.buttons(chat, message)
        )
        await answered(telegram, telegram.press_button((chat, message), f"v1:back:{job_id}"))
        await telegram.wait_for(lambda: telegram.buttons(chat, message) == with_studio)
        assert telegram.errors == []
    finally:
        await studio.close()


async def test_the_menu_button_opens_the_studio_and_studio_is_in_the_command_menu(
    bots: Bots, telegram: FakeTelegram
) -> None:
    studio = await start_studio(bots)
    try:
        await menu_set(studio.bot)
        assert telegram.menu_buttons == {
            None: {"type": "web_app", "text": "Studio", "web_app": {"url": APP}}
        }
        assert "studio" in [c["command"] for c in telegram.commands]
        assert "/studio opens your series as a gallery" in await help_of(telegram)
    finally:
        await studio.close()


async def test_without_an_https_public_url_there_is_no_studio_button_anywhere(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    bots.env.update(refs_env(bots.env))  # PUBLIC_URL http://127.0.0.1 (a local run)
    bot = await bots.start()
    await menu_set(bot)
    assert telegram.menu_buttons == {}
    assert "studio" not in [c["command"] for c in telegram.commands]
    await run_job(telegram, bot, "/seq 1 1:1 a plum")
    (followup,) = followups(telegram)
    assert "web_app" not in json.dumps(followup.params["reply_markup"])
    assert "Studio" not in json.dumps(followup.params["reply_markup"])
    message = telegram.send_text("/studio")
    assert await reply_to(telegram, message) == "The studio is not set up on this bot."
    assert "/studio" not in await help_of(telegram)
    assert telegram.errors == []


async def test_the_fake_refuses_web_app_buttons_in_groups(telegram: FakeTelegram) -> None:
    import httpx

    button = {"text": "x", "web_app": {"url": "https://example.org/app/"}}
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{telegram.base_url}{telegram.token}/sendMessage",
            json={"chat_id": GROUP, "text": "hi", "reply_markup": {"inline_keyboard": [[button]]}},
        )
    assert answer.status_code == 400 and "BUTTON_TYPE_INVALID" in answer.text
