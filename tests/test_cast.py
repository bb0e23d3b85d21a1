"""Saved characters (/cast), through the real Application and the loopback fakes: saving (photo
caption, album, file, replies), the list with its sheet and buttons, replacing, removing, using
them in /seq (order, the naming text, limits, unknown names), the cap, other people's casts,
restarts and backups; and the pure rules (names, arguments, the naming text)."""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot import callbacks, cast, schema, sheets
from bot.__main__ import main as cli
from bot.callbacks import CastAction, CastButton
from bot.command import parse_seq, parse_seq_command
from bot.errors import InputError
from bot.store import Status, Store
from tests import test_refs_in as refs_in
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import answered, assert_clean, menu_set, reply_to, until_final
from tests.test_refs_in import centre, refs_on

BOB_ID = 987654321
CAROL_ID = 555000111


@pytest.fixture
async def bot(bots: Bots) -> RunningBot:
    return await bots.start(**refs_on())


def colour(name: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """test_refs_in's plain JPEG, smaller: a character's images need no size."""
    return refs_in.colour(name, size)


def dominant(data: bytes) -> int:
    """0, 1 or 2: which of red, green, blue the image's centre is."""
    c = centre(data)
    return max(range(3), key=lambda k: c[k])


def reply_call(telegram: FakeTelegram, update: dict[str, Any]) -> Any:
    """The bot's message (text or photo) replying to ``update``'s message, or None."""
    message = update["message"]
    for call in telegram.calls:
        if call.status != 200 or call.method not in ("sendMessage", "sendPhoto"):
            continue
        params = call.params
        reply = params.get("reply_parameters")
        if isinstance(reply, str):
            reply = json.loads(reply)
        if (
            int(params["chat_id"]) == message["chat"]["id"]
            and (reply or {}).get("message_id") == message["message_id"]
        ):
            return call
    return None


async def replied(telegram: FakeTelegram, update: dict[str, Any]) -> Any:
    call = await telegram.wait_for(lambda: reply_call(telegram, update))
    return call


def saved(bot: RunningBot, owner: int = ADA_ID) -> dict[str, list[bytes]]:
    store = bot.store
    return {
        m.name: [i.data for i in store.cast_images(owner, m.id)] for m in store.cast_list(owner)
    }


async def save(
    telegram: FakeTelegram, bot: RunningBot, name: str, colours: list[str], **kwargs: Any
) -> None:
    """Save a character from a photo (one colour) or an album (several) and wait for the reply."""
    caption = f"/cast add {name}"
    if len(colours) == 1:
        update = telegram.send_photo(colour(colours[0]), caption, **kwargs)
    else:
        update = telegram.send_album([colour(c) for c in colours], caption, **kwargs)[0]
    text = await reply_to(telegram, update)
    assert text.startswith("Saved "), text


def on_disk(bot: RunningBot, data: bytes) -> bool:
    """Whether any 32-byte piece of ``data`` is in the database's file (after a checkpoint)."""
    bot.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = bot.store.path
    raw = path.read_bytes() + path.with_name(path.name + "-wal").read_bytes()
    return any(data[i : i + 32] in raw for i in range(1000, len(data) - 32, 500))


def submits(runcomfy: FakeRunComfy) -> list[dict[str, Any]]:
    return [c.body for c in runcomfy.calls if c.endpoint == "submit"]


# ---- the pure rules ----------------------------------------------------------------------------


def test_names_any_alphabet_case_insensitive_and_bounded() -> None:
    assert cast.check_name("Анна_2") == "Анна_2"
    assert cast.key("ANNA") == cast.key("anna") == cast.key("Anna")
    assert cast.key("Анна") == cast.key("АННА")
    # NFC: "é" typed as e + combining accent is the same name as the composed one.
    assert cast.check_name("re\u0301my") == "rémy" and cast.key("re\u0301my") == cast.key("Rémy")
    assert cast.check_name("x" * 24) == "x" * 24
    for bad in ("x" * 25, "anna-b", "a.b", "😀", "a b"):
        with pytest.raises(InputError):
            cast.check_name(bad)


def test_cast_arguments() -> None:
    assert cast.parse_command("") == cast.CastCommand("list")
    assert cast.parse_command("add Anna") == cast.CastCommand("add", "Anna")
    assert cast.parse_command("remove rex") == cast.CastCommand("remove", "rex")
    assert cast.parse_command("what") == cast.CastCommand("help")
    with pytest.raises(InputError, match="one word"):
        cast.parse_command("add anna maria")
    with pytest.raises(InputError, match="Give the character a name"):
        cast.parse_command("add")


def test_cast_option_in_seq_any_order_and_checked() -> None:
    parsed = parse_seq_command("4 cast=anna,Rex 16:9 anna walks rex")
    assert parsed is not None
    assert parsed.cast == ("anna", "Rex")
    assert parsed.request.count == 4 and parsed.request.prompt == "anna walks rex"
    assert parsed.request.size == schema.SIZE_ALIASES["16:9"]
    with pytest.raises(InputError, match="twice"):
        parse_seq_command("cast=anna,ANNA a walk")
    with pytest.raises(InputError, match="only once"):
        parse_seq_command("cast=anna cast=rex a walk")
    with pytest.raises(InputError, match="1–24"):
        parse_seq_command("cast=anna,re-x a walk")
    # A caller that would drop the characters refuses them instead.
    with pytest.raises(InputError):
        parse_seq("cast=anna a walk")


def test_naming_text_and_its_room_in_the_600_characters() -> None:
    assert cast.naming_text([("anna", 1), ("rex", 1)]) == "Image 1 is anna. Image 2 is rex."
    assert cast.naming_text([("anna", 2), ("rex", 3)]) == (
        "Images 1 and 2 are anna. Images 3, 4 and 5 are rex."
    )
    text = "Generate 4 images: " + "x" * 500
    named = cast.with_naming(text, [("anna", 1)])
    assert named == f"Image 1 is anna. {text}"
    with pytest.raises(InputError, match="too long with its characters named"):
        cast.with_naming("y" * (schema.MAX_TEXT - 10), [("anna", 1)])


def test_cast_buttons_carry_ids_and_forged_data_reads_as_nothing() -> None:
    for action in CastAction:
        button = CastButton(action, 123456789012345678)
        data = callbacks.encode(button)
        assert callbacks.parse(data) == button and len(data.encode()) <= 64
    for forged in ("v1:cast:rm:0", "v1:cast:rm:01", "v1:cast:rm:anna", "v1:cast:zap:1", "v1:cast:"):
        assert callbacks.parse(forged) is None


# ---- saving ------------------------------------------------------------------------------------


async def test_save_from_a_photo_caption_cleaned_and_owner_only(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    update = telegram.send_photo(colour("red", (640, 480)), "/cast add Anna")
    text = await reply_to(telegram, update)
    assert text.startswith("Saved Anna (1 image).") and "cast=Anna" in text
    (member,) = bot.store.cast_list(ADA_ID)
    assert (member.name, member.key, member.images) == ("Anna", "anna", 1)
    (image,) = bot.store.cast_images(ADA_ID, member.id)
    assert (image.width, image.height) == (640, 480)
    assert image.message_id == update["message"]["message_id"]
    with Image.open(io.BytesIO(image.data)) as img:
        assert img.format == "JPEG" and len(img.getexif()) == 0
    assert bot.store.cast_list(BOB_ID) == [] and bot.store.cast_images(BOB_ID, member.id) == []
    assert runcomfy.count("submit") == 0 and bot.store.get(1) is None  # nothing billed
    assert_clean(telegram, runcomfy)


async def test_save_from_an_album_of_three_and_an_album_of_four_is_refused(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await save(telegram, bot, "rex", ["red", "lime", "blue"])
    assert [dominant(d) for d in saved(bot)["rex"]] == [0, 1, 2]  # album order

    # Kept for good: at most 2048 px on the long side.
    big = telegram.send_album([colour("red", (3000, 2000)), colour("blue")], "/cast add big")
    assert (await reply_to(telegram, big[0])).startswith("Saved big (2 images)")
    member = bot.store.cast_by_key(ADA_ID, "big")
    assert member is not None
    sizes = [(i.width, i.height) for i in bot.store.cast_images(ADA_ID, member.id)]
    assert sizes == [(2048, 1365), (320, 240)]

    items = telegram.send_album([colour("red")] * 4, "/cast add rex2")
    assert await reply_to(telegram, items[0]) == ("A character takes up to 3 images; you sent 4.")
    assert "rex2" not in saved(bot)


async def test_save_from_an_image_file_and_from_replies(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    png = io.BytesIO()
    Image.new("RGBA", (300, 200), (0, 0, 255, 255)).save(png, "PNG")
    doc = telegram.send_document(png.getvalue(), "/cast add blue_logo")
    assert (await reply_to(telegram, doc)).startswith("Saved blue_logo")
    # The same update delivered again (a webhook retry): no question, nothing changed.
    again = {**json.loads(json.dumps(doc)), "update_id": None}  # a new update id, same message
    telegram.push_update(again)
    await telegram.wait_for(
        lambda: len([c for c in telegram.calls_to("sendMessage") if "already" in c.params["text"]])
    )
    assert not any("Replace" in c.params["text"] for c in telegram.calls_to("sendMessage"))

    pic = telegram.send_photo(colour("lime"))  # no caption: nothing yet
    command = telegram.send_text(
        "/cast add greeny", reply_to_message_id=pic["message"]["message_id"]
    )
    assert (await reply_to(telegram, command)).startswith("Saved greeny")

    alone = telegram.send_text("/cast add nobody")  # a reply to nothing
    assert (await reply_to(telegram, alone)).startswith("Send a photo (or an album of up to 3")
    kept = saved(bot)
    assert sorted(kept) == ["blue_logo", "greeny"]
    assert dominant(kept["blue_logo"][0]) == 2 and dominant(kept["greeny"][0]) == 1


async def test_save_from_a_reply_to_the_bots_own_image_uses_the_kept_original(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    telegram.send_text("/seq 2 a red fox")
    done = await until_final(telegram, bot)
    assert done.status == Status.DONE
    (album,) = telegram.calls_to("sendMediaGroup", ok_only=True)
    second = album.response["result"][1]
    getfiles = len(telegram.calls_to("getFile"))

    command = telegram.send_text("/cast add fox", reply_to_message_id=second["message_id"])
    assert (await reply_to(telegram, command)).startswith("Saved fox (1 image)")

    (image,) = bot.store.cast_images(ADA_ID, bot.store.cast_list(ADA_ID)[0].id)
    original = await bot.runner.delivery.originals.load(done.id, 1)
    assert original is not None
    with Image.open(io.BytesIO(original)) as img:
        assert (image.width, image.height) == img.size
    assert len(telegram.calls_to("getFile")) == getfiles  # not Telegram's copy


# ---- the list, replacing, removing -------------------------------------------------------------


async def test_the_list_is_one_message_with_a_labelled_sheet_and_a_button_each(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    empty = telegram.send_text("/cast")
    assert (await reply_to(telegram, empty)).startswith("You have no saved characters yet.")
    await save(telegram, bot, "rex", ["blue"])
    await save(telegram, bot, "Anna", ["red", "lime"])

    listing = telegram.send_text("/cast")
    call = await replied(telegram, listing)
    assert call.method == "sendPhoto"
    caption = call.params["caption"]
    assert caption.splitlines()[:3] == [
        "Your characters (2 of 20):",
        "• Anna: 2 images",
        "• rex: 1 image",
    ]
    with Image.open(io.BytesIO(next(iter(call.files.values())))) as sheet:
        assert sheet.format == "JPEG" and max(sheet.size) <= 1280
    message_id = call.response["result"]["message_id"]
    ids = {m.name: m.id for m in bot.store.cast_list(ADA_ID)}
    assert telegram.buttons(ADA_ID, message_id) == [
        ("🗑 Anna", f"v1:cast:ask:{ids['Anna']}"),
        ("🗑 rex", f"v1:cast:ask:{ids['rex']}"),
    ]
    assert_clean(telegram, runcomfy)


async def test_saving_a_taken_name_asks_and_both_answers_work(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await save(telegram, bot, "anna", ["red"])

    again = telegram.send_album([colour("blue"), colour("blue")], "/cast add ANNA")
    question = await replied(telegram, again[0])
    assert question.params["text"] == (
        "You already have anna (1 image). Replace it with the new 2 images?"
    )
    qid = question.response["result"]["message_id"]
    (replace, keep) = telegram.buttons(ADA_ID, qid)
    assert replace[0] == "Replace" and keep[0] == "Keep the old one"
    assert [dominant(d) for d in saved(bot)["anna"]] == [0]  # nothing replaced yet

    answer = await answered(telegram, telegram.press_button((ADA_ID, qid), keep[1]))
    assert answer["text"] == "Kept."
    assert [dominant(d) for d in saved(bot)["anna"]] == [0]
    await telegram.wait_for(
        lambda: telegram.messages[(ADA_ID, qid)]["text"].startswith("Kept the saved anna;")
    )
    # The question is answered: its buttons are gone, and the old data does nothing.
    late = await answered(telegram, telegram.press_button((ADA_ID, qid), replace[1]))
    assert late["text"] == "This button no longer works."
    assert [dominant(d) for d in saved(bot)["anna"]] == [0]

    third = telegram.send_photo(colour("lime"), "/cast add Anna")
    question = await replied(telegram, third)
    qid = question.response["result"]["message_id"]
    (replace, _) = telegram.buttons(ADA_ID, qid)
    answer = await answered(telegram, telegram.press_button((ADA_ID, qid), replace[1]))
    assert answer["text"] == "Replaced."
    assert list(saved(bot)) == ["Anna"]  # one character, under its new spelling
    assert [dominant(d) for d in saved(bot)["Anna"]] == [1]
    assert len(bot.store.cast_list(ADA_ID)) == 1


async def test_remove_by_command_and_by_button_with_a_confirmation(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    noise = io.BytesIO()  # bytes found nowhere else in the file
    Image.frombytes("RGB", (200, 150), random.Random(7).randbytes(200 * 150 * 3)).save(
        noise, "JPEG"
    )
    first = telegram.send_photo(noise.getvalue(), "/cast add anna")
    assert (await reply_to(telegram, first)).startswith("Saved anna")
    await save(telegram, bot, "rex", ["blue"])
    await save(telegram, bot, "tom", ["lime"])
    ids = {m.name: m.id for m in bot.store.cast_list(ADA_ID)}
    anna = saved(bot)["anna"][0]
    assert on_disk(bot, anna)  # the probe finds what is there

    command = telegram.send_text("/cast remove ANNA")
    assert await reply_to(telegram, command) == "Removed anna; its images are deleted."
    assert bot.store.cast_images(ADA_ID, ids["anna"]) == []
    rows = bot.store.db.execute(
        "SELECT COUNT(*) FROM cast_images WHERE member_id = ?", [ids["anna"]]
    )
    assert rows.fetchone()[0] == 0
    # The bytes are gone from the file too, not left in its free pages (secure_delete: some
    # SQLite builds have it on by default, others not; the store asks for it).
    assert not on_disk(bot, anna)
    assert bot.store.db.execute("PRAGMA secure_delete").fetchone() == (1,)

    listing = await replied(telegram, telegram.send_text("/cast"))
    key = (ADA_ID, listing.response["result"]["message_id"])
    answer = await answered(telegram, telegram.press_button(key, f"v1:cast:ask:{ids['rex']}"))
    assert "text" not in answer or not answer["text"]
    await telegram.wait_for(lambda: ":rm:" in telegram.buttons(*key)[0][1])
    assert telegram.buttons(*key) == [
        ("Remove rex", f"v1:cast:rm:{ids['rex']}"),
        ("Cancel", f"v1:cast:back:{ids['rex']}"),
    ]
    assert "rex" in saved(bot)  # only asked
    await answered(telegram, telegram.press_button(key, f"v1:cast:back:{ids['rex']}"))
    await telegram.wait_for(lambda: "ask" in telegram.buttons(*key)[0][1])
    assert [d for _, d in telegram.buttons(*key)] == [
        f"v1:cast:ask:{ids['rex']}",
        f"v1:cast:ask:{ids['tom']}",
    ]
    await answered(telegram, telegram.press_button(key, f"v1:cast:ask:{ids['rex']}"))
    await telegram.wait_for(lambda: "rm" in telegram.buttons(*key)[0][1])
    answer = await answered(telegram, telegram.press_button(key, f"v1:cast:rm:{ids['rex']}"))
    assert answer["text"] == "Removed rex."
    assert list(saved(bot)) == ["tom"]
    await telegram.wait_for(lambda: "Removed rex" in telegram.messages[key]["caption"])
    assert telegram.messages[key]["caption"].endswith(
        "Removed rex; its images are deleted. /cast shows the rest."
    )
    assert telegram.buttons(*key) == [("🗑 tom", f"v1:cast:ask:{ids['tom']}")]
    # A second tap of the same confirmation: already gone, nothing else touched.
    answer = await answered(telegram, telegram.press_button(key, f"v1:cast:rm:{ids['rex']}"))
    assert answer["text"] == "This button no longer works."
    assert list(saved(bot)) == ["tom"]
    assert_clean(telegram, runcomfy)


# ---- using them in /seq ------------------------------------------------------------------------


async def test_seq_with_cast_puts_the_characters_first_then_the_photo_and_names_them(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await save(telegram, bot, "anna", ["red", "lime"])
    await save(telegram, bot, "rex", ["blue"])
    kept = saved(bot)

    attached = colour("white")
    telegram.send_photo(attached, "/seq 4 16:9 cast=Rex,anna anna walks rex through Paris at dawn")
    job = await until_final(telegram, bot)

    assert job.status == Status.DONE, job.error
    assert [(r.kind, r.name) for r in job.refs] == [
        ("cast", "rex"),
        ("cast", "anna"),
        ("cast", "anna"),
        ("photo", ""),
    ]
    (body,) = submits(runcomfy)
    assert body["text"] == (
        "Image 1 is rex. Images 2 and 3 are anna. "
        "Generate 4 images: anna walks rex through Paris at dawn"
    )
    assert len(body["images"]) == 4
    fetched = runcomfy.ref_fetches
    assert [f.url for f in fetched] == body["images"] and all(f.ok for f in fetched)
    bodies = [f.body for f in fetched]
    assert bodies[:3] == [kept["rex"][0], *kept["anna"]]  # exactly the saved images, in order
    assert centre(bodies[3])[0] > 200 and centre(bodies[3])[2] > 200  # the white photo last
    assert job.prompt == "anna walks rex through Paris at dawn"
    # Details names the characters, not the messages they were saved from.
    key = (ADA_ID, job.actions_message_id or 0)
    await answered(telegram, telegram.press_button(key, f"v1:info:{job.id}"))
    details = await reply_to(telegram, {"message": {"message_id": key[1], "chat": {"id": ADA_ID}}})
    photo = job.refs[3].message_id
    assert (
        "References: 4 reference images, from the characters rex, anna; "
        f"a photo in this chat (message {photo})"
    ) in details
    assert_clean(telegram, runcomfy)


async def test_text_seq_with_cast_only(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await save(telegram, bot, "anna", ["red"])
    telegram.send_text("/seq cast=anna 2 anna in the rain")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE, job.error
    (body,) = submits(runcomfy)
    assert body["text"] == "Image 1 is anna. Generate 2 images: anna in the rain"
    assert [f.body for f in runcomfy.ref_fetches] == saved(bot)["anna"]


@pytest.mark.parametrize(
    ("command", "attached", "answer"),
    [
        # 9 saved images and 2 attached: 11 references.
        (
            "/seq 2 cast=a,b,c the three",
            2,
            "At most 10 reference images can be used at once; you sent 11.",
        ),
        # 9 references leave room for 6 images.
        (
            "/seq 7 cast=a,b,c the three",
            0,
            "9 reference images leave room for at most 6 images; you asked for 7.",
        ),
        (
            "/seq 2 cast=a,zed,ghost the three",
            0,
            "You have no character named zed, ghost. Yours: a, b, c.",
        ),
    ],
)
async def test_limits_count_the_characters_images_and_unknown_names_are_refused(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    command: str,
    attached: int,
    answer: str,
) -> None:
    for name in "abc":
        await save(telegram, bot, name, ["red", "lime", "blue"])
    getfiles = len(telegram.calls_to("getFile"))
    if attached:
        update = telegram.send_album([colour("white")] * attached, command)[0]
    else:
        update = telegram.send_text(command)
    assert await reply_to(telegram, update) == answer
    assert bot.store.get(1) is None and runcomfy.count("submit") == 0  # nothing billed
    assert len(telegram.calls_to("getFile")) == getfiles  # nothing fetched either


async def test_the_cap_and_another_persons_cast_is_not_reachable(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(**refs_on(CAST_MAX_PER_PERSON="2"))
    await save(telegram, bot, "anna", ["red"])
    await save(telegram, bot, "rex", ["blue"])
    getfiles = len(telegram.calls_to("getFile"))
    third = telegram.send_photo(colour("lime"), "/cast add tom")
    assert await reply_to(telegram, third) == (
        "You have 2 saved characters, the most allowed. Remove one first (/cast shows them)."
    )
    assert len(telegram.calls_to("getFile")) == getfiles and len(saved(bot)) == 2
    # Replacing one is no new character: allowed at the cap.
    again = telegram.send_photo(colour("lime"), "/cast add rex")
    assert (await replied(telegram, again)).params["text"].startswith("You already have rex")

    anna = bot.store.cast_list(ADA_ID)[0]
    # Bob has no characters: Ada's are not his to use...
    bobs = telegram.send_text("/seq 2 cast=anna a walk", chat_id=BOB_ID)
    assert (await reply_to(telegram, bobs)).startswith(
        "You have no character named anna: you have none saved yet."
    )
    # ...nor to remove, by command or by forged button data on his own message.
    removal = telegram.send_text("/cast remove anna", chat_id=BOB_ID)
    assert (await reply_to(telegram, removal)).startswith("You have no character named anna")
    own = telegram.send_text("/cast", chat_id=BOB_ID)
    await reply_to(telegram, own)
    for action in ("rm", "ask", "rep", "keep"):
        forged = telegram.press_button(
            (BOB_ID, own["message"]["message_id"]), f"v1:cast:{action}:{anna.id}", user_id=BOB_ID
        )
        answer = await answered(telegram, forged)
        assert answer["text"] == "These are someone else's characters: only they can change them."
    assert sorted(saved(bot)) == ["anna", "rex"]
    assert bot.store.get(1) is None and runcomfy.count("submit") == 0


async def test_a_group_identity_has_its_own_cast_and_its_admins_manage_it(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    group = -1001234567890
    as_group = {"id": group, "type": "supergroup", "title": "Team"}
    update = telegram.send_photo(
        colour("red"), "/cast add mascot", chat_id=group, chat_type="supergroup",
        sender_chat=as_group,
    )  # fmt: skip
    assert (await reply_to(telegram, update)).startswith("Saved mascot")
    (mascot,) = bot.store.cast_list(group)
    assert bot.store.cast_list(ADA_ID) == []  # not the admin's own
    mine = telegram.send_text("/seq 2 cast=mascot a walk", chat_id=group, chat_type="supergroup")
    assert (await reply_to(telegram, mine)).startswith("You have no character named mascot")

    listing = telegram.send_text(
        "/cast", chat_id=group, chat_type="supergroup", sender_chat=as_group
    )
    key = (group, (await replied(telegram, listing)).response["result"]["message_id"])
    telegram.set_member_status(group, BOB_ID, "administrator")
    refused = await answered(  # a member who is no admin
        telegram, telegram.press_button(key, f"v1:cast:rm:{mascot.id}", user_id=CAROL_ID)
    )
    assert refused["text"] == "These are someone else's characters: only they can change them."
    assert bot.store.cast_list(group) == [mascot]
    done = await answered(
        telegram, telegram.press_button(key, f"v1:cast:rm:{mascot.id}", user_id=BOB_ID)
    )
    assert done["text"] == "Removed mascot."
    assert bot.store.cast_list(group) == []


async def test_help_and_the_command_menu_mention_cast(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await menu_set(bot)
    menus = telegram.calls_to("setMyCommands", ok_only=True)
    assert all("cast" in [c["command"] for c in call.params["commands"]] for call in menus)
    telegram.send_text("/help")
    call = await telegram.wait_for(
        lambda: next(iter(telegram.calls_to("sendMessage", ok_only=True)), None)
    )
    text = call.params["text"]
    assert text.startswith("Hi! I turn")
    assert "/cast add NAME" in text and "cast=anna,rex" in text


# ---- restarts and backups ----------------------------------------------------------------------


async def test_a_queued_job_with_cast_survives_a_restart_and_a_removal(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, env: dict[str, str]
) -> None:
    extra = refs_on()
    bot = await bots.start(**extra)
    await save(telegram, bot, "anna", ["red"])
    kept = saved(bot)["anna"]
    # RunComfy fetches the references when the job leaves its queue, seen at a poll: the polls
    # wait until the character is removed, after the restart.
    runcomfy.script_next(JobScript(fetch_refs="start"))
    runcomfy.hold("status")
    telegram.send_text("/seq 2 cast=anna anna at sea")
    await telegram.wait_for(lambda: (j := bot.store.get(1)) is not None and j.request_id)
    await save(telegram, bot, "rex", ["blue"])
    question = await replied(telegram, telegram.send_photo(colour("lime"), "/cast add rex"))
    qkey = (ADA_ID, question.response["result"]["message_id"])
    (replace, _) = telegram.buttons(*qkey)
    await bots.stop(bot)

    restarted = await bots.start(**extra)
    assert saved(restarted)["anna"] == kept  # the cast persists
    # A question asked before the restart is still answered.
    answer = await answered(telegram, telegram.press_button(qkey, replace[1]))
    assert answer["text"] == "Replaced."
    assert [dominant(d) for d in saved(restarted)["rex"]] == [1]
    removal = telegram.send_text("/cast remove anna")
    assert (await reply_to(telegram, removal)).startswith("Removed anna")
    assert runcomfy.ref_fetches == []
    runcomfy.release("status")
    job = await until_final(telegram, restarted)

    assert job.status == Status.DONE, job.error
    assert runcomfy.count("submit") == 1  # resumed, never resubmitted
    assert [f.body for f in runcomfy.ref_fetches] == kept  # the job's own copy, after removal
    assert_clean(telegram, runcomfy)


async def test_a_backup_restores_the_cast(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    bot: RunningBot,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await save(telegram, bot, "anna", ["red", "blue"])
    kept = saved(bot)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    target = tmp_path / "restore" / "seqbot.sqlite3"
    target.parent.mkdir()
    assert cli(["backup", str(target)]) == 0
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o600)

    copy = Store(target)
    try:
        (member,) = copy.cast_list(ADA_ID)
        assert member.name == "anna"
        assert [i.data for i in copy.cast_images(ADA_ID, member.id)] == kept["anna"]
    finally:
        copy.close()


def test_a_sheet_labelled_with_names_in_any_alphabet() -> None:
    images = [colour("red"), colour("blue")]
    named = sheets.contact_sheet(images, 1.0, labels=["Анна", "rex"], long_side=640)
    numbered = sheets.contact_sheet(images, 1.0, long_side=640)
    with Image.open(io.BytesIO(named)) as img:
        assert img.format == "JPEG" and max(img.size) <= 640
    assert named != numbered
    with pytest.raises(ValueError, match="labels"):
        sheets.contact_sheet(images, 1.0, labels=["one"])


def test_the_list_fits_a_photo_caption_however_many_characters() -> None:
    from types import SimpleNamespace

    from bot.cast_handlers import CastDesk
    from bot.models import CastMember
    from bot.render import CAPTION_LIMIT, utf16_len

    def members(n: int) -> list[CastMember]:
        return [
            CastMember(i, ADA_ID, f"персонаж_{i:03d}_длинноеимя", "k", 3, 0.0) for i in range(n)
        ]

    desk = SimpleNamespace(settings=SimpleNamespace(cast_max_per_person=100))
    few = CastDesk.list_text(desk, members(3), "ru")  # type: ignore[arg-type]
    assert "• персонаж_000_длинноеимя: 3 изображения" in few
    for n in (20, 40, 100):
        text = CastDesk.list_text(desk, members(n), "ru")  # type: ignore[arg-type]
        assert utf16_len(text) <= CAPTION_LIMIT, n
        assert text.startswith(f"Ваши персонажи ({n} из 100):")
    # Twenty long names: one line of names instead of a line each.
    assert "персонаж_019_длинноеимя" in CastDesk.list_text(desk, members(20), "ru")  # type: ignore[arg-type]
