"""Nothing a user presses posts without limit; outsiders get one refusal; claims are released;
a bot admin's totals stay private (issue 18, items 3 to 6), through the real Application."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from bot.callbacks import JobAction
from bot.config import Settings
from bot.errors import ConfigError
from bot.repeats import Recent, Repeats
from bot.store import Job, Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import QUERY_INVALID, Call, FakeTelegram
from tests.helpers import answered, assert_clean, help_sent, reply_to, until_final

ADA = 123456789
BOB = 222333444
GROUP = -1001234567890
OTHER_GROUP = -1009999999999
PACKS = "10:75,50:300"


class Clock:
    """A monotonic clock the test moves by hand: windows pass without sleeping."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def fake_clock(bot: RunningBot) -> Clock:
    """Make every short memory of ``bot`` read a clock the test moves."""
    clock = Clock()
    repeats = bot.services.repeats
    assert repeats is not None
    for memory in (repeats.shows, repeats.details, repeats.outsiders):
        assert isinstance(memory, Recent)
        memory.clock = clock
    return clock


def texts_to(telegram: FakeTelegram, chat_id: int) -> list[Call]:
    return [c for c in telegram.calls_to("sendMessage") if c.params["chat_id"] == chat_id]


async def finished(telegram: FakeTelegram, bot: RunningBot, **kwargs: object) -> tuple[int, int]:
    """Run job 1 to the end; the (chat id, message id) of its follow-up message."""
    telegram.send_text("/seq 3 a fox", **kwargs)  # type: ignore[arg-type]
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    return job.chat_id, job.actions_message_id or 0


# ---- the short memories themselves ------------------------------------------------------------


def test_memories_expire_and_stay_bounded() -> None:
    clock = Clock()
    seen: Recent[int, str] = Recent(10.0, cap=3, clock=clock)
    for key in range(5):
        seen.put(key, f"v{key}")
    assert len(seen) == 3 and seen.get(0) is None and seen.get(4) == "v4"  # the oldest went
    clock.now += 10.0
    assert len(seen) == 0 and seen.get(4) is None
    repeats = Repeats(60.0, 600.0, clock=clock)
    assert repeats.refuse_outsider(-5) and not repeats.refuse_outsider(-5)
    assert repeats.refuse_outsider(-6)
    clock.now += 600.0
    assert repeats.refuse_outsider(-5)


def test_the_windows_are_settings() -> None:
    good = {
        "TELEGRAM_BOT_TOKEN": "7012345678:fake-test-token-0123456789",
        "RUNCOMFY_API_TOKEN": "x",
    }
    defaults = Settings.from_env(good)
    assert (defaults.repeat_window, defaults.outsider_reply_window) == (60.0, 600.0)
    tuned = Settings.from_env(
        {**good, "REPEAT_WINDOW_SECONDS": "5", "OUTSIDER_REPLY_SECONDS": "30"}
    )
    assert (tuned.repeat_window, tuned.outsider_reply_window) == (5.0, 30.0)
    for name in ("REPEAT_WINDOW_SECONDS", "OUTSIDER_REPLY_SECONDS"):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({**good, name: "0"})
        assert refused.value.variable == name


# ---- item 3: /show and ℹ️ Details --------------------------------------------------------------


async def test_a_repeated_show_gets_one_pointer_and_then_nothing_until_the_window_passed(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await finished(telegram, bot)
    clock = fake_clock(bot)
    albums = telegram.calls_to("sendMediaGroup", ok_only=True)
    first = telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)

    second = telegram.send_text("/show 1")
    pointer = await reply_to(telegram, first)  # the reply points at the earlier /show
    assert pointer == (
        "Job #1 was sent a moment ago, right under the quoted message. "
        "Ask again a little later to get it once more."
    )
    (told,) = [c for c in texts_to(telegram, ADA) if c.params["text"] == pointer]
    assert told.params["reply_parameters"]["message_id"] == first["message"]["message_id"]
    assert told.params["reply_parameters"]["allow_sending_without_reply"] is True
    assert second["message"]["message_id"] != first["message"]["message_id"]
    for _ in range(3):
        telegram.send_text("/show #1")
    telegram.send_text("/help")
    await help_sent(telegram, ADA)
    assert len(telegram.calls_to("sendMediaGroup")) == len(albums) + 1  # one /show, no more
    assert len([c for c in texts_to(telegram, ADA) if c.params["text"] == pointer]) == 1

    clock.now += bot.settings.repeat_window + 1
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 3)
    assert_clean(telegram, runcomfy)


async def test_show_sent_at_the_same_moment_twice_sends_the_images_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(REPEAT_WINDOW_SECONDS="30")
    await finished(telegram, bot)
    telegram.delay_next("sendMediaGroup", 0.3)  # the first /show is still sending
    first = telegram.send_text("/show 1")
    telegram.send_text("/show 1")
    assert (await reply_to(telegram, first)).startswith("Job #1 was sent a moment ago")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)
    telegram.send_text("/help")
    await help_sent(telegram, ADA)
    assert len(telegram.calls_to("sendMediaGroup")) == 2


async def test_a_show_that_sent_nothing_does_not_hold_the_next_one(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    await finished(telegram, bot)
    telegram.fail_next("sendMediaGroup", status=403, description="Forbidden: bot was blocked")
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: telegram.calls_to("sendMediaGroup")[-1].status == 403)
    await telegram.wait_for(lambda: texts_to(telegram, ADA)[-1].params["text"].startswith("Sorry"))
    telegram.send_text("/show 1")
    await telegram.wait_for(lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) == 2)


async def test_details_tapped_again_answers_the_tap_and_posts_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished(telegram, bot, chat_id=GROUP)
    clock = fake_clock(bot)

    def details() -> list[Call]:
        return [
            c
            for c in telegram.calls_to("sendMessage", ok_only=True)
            if c.params["text"].startswith("Job #1 · ") and "\nPrompt: " in c.params["text"]
        ]

    first = await answered(telegram, telegram.press_button(key, "v1:info:1"))
    assert "text" not in first
    await telegram.wait_for(lambda: len(details()) == 1)
    taps = [telegram.press_button(key, "v1:info:1", user_id=BOB) for _ in range(20)]
    for tap in taps:
        assert (await answered(telegram, tap))["text"] == "The details were sent just above."
    assert len(details()) == 1

    clock.now += bot.settings.repeat_window + 1
    await answered(telegram, telegram.press_button(key, "v1:info:1"))
    await telegram.wait_for(lambda: len(details()) == 2)
    assert_clean(telegram, runcomfy)


# ---- item 4: outsiders --------------------------------------------------------------------------

OUTSIDER_COMMANDS = [
    "/help",
    "/start",
    "/jobs",
    "/usage",
    "/settings",
    "/show 1",
    "/cancel",
    "/buy",
    "/balance",
    "/paysupport",
    "/seq 2 a fox",
]


async def test_an_outsider_gets_one_refusal_per_chat_whatever_they_send(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(
        ALLOWED_CHAT_IDS=f"{GROUP},{ADA}",
        ALLOWED_USER_IDS=str(ADA),
        STARS_PACKS=PACKS,
        FREE_IMAGES_PER_DAY="10",
    )
    clock = fake_clock(bot)
    key = await finished(telegram, bot, chat_id=GROUP, user_id=ADA)
    # Bob, in his private chat (neither the chat nor the user is allowed)…
    for text in OUTSIDER_COMMANDS * 2:
        telegram.send_text(text, chat_id=BOB)
    # …and in the allowed group, where he is not an allowed user.
    for text in OUTSIDER_COMMANDS:
        name, _, rest = text.partition(" ")
        telegram.send_text(f"{name}@SeqImageBot {rest}".strip(), chat_id=GROUP, user_id=BOB)
    # A group not allowed at all: even an allowed user is refused there, once.
    for text in OUTSIDER_COMMANDS:
        telegram.send_text(text, chat_id=OTHER_GROUP, user_id=ADA)
    # Bob's taps on the group's buttons are answered and post nothing.
    for data in ("v1:info:1", "v1:again:1", "v1:orig:1", "v1:zip:1", "v1:buy:10", "v1:set:reset"):
        answer = await answered(telegram, telegram.press_button(key, data, user_id=BOB))
        assert answer["text"] == "Sorry, this bot is not available to you."
    # The first refusal in each chat arrives; then Ada's /help marks the end of the rest.
    await telegram.wait_for(lambda: texts_to(telegram, BOB) and texts_to(telegram, OTHER_GROUP))
    await telegram.wait_for(
        lambda: any("not available to you" in c.params["text"] for c in texts_to(telegram, GROUP))
    )
    posts_in_group = len(texts_to(telegram, GROUP))
    telegram.send_text("/help")  # Ada's own chat: handled after everything above
    await help_sent(telegram, ADA)

    assert [c.params["text"] for c in texts_to(telegram, BOB)] == [
        "Sorry, this bot is not available in this chat."
    ]
    assert [c.params["text"] for c in texts_to(telegram, OTHER_GROUP)] == [
        "Sorry, this bot is not available in this chat."
    ]
    refusals = [
        c.params["text"]
        for c in texts_to(telegram, GROUP)
        if c.params["text"].startswith("Sorry, this bot is not available")
    ]
    assert refusals == ["Sorry, this bot is not available to you."]
    assert len(texts_to(telegram, GROUP)) == posts_in_group
    assert telegram.invoices == [] and len(telegram.calls_to("sendMediaGroup")) == 1
    assert runcomfy.count("submit") == 1  # Ada's job only

    # Ten minutes later (OUTSIDER_REPLY_SECONDS), one more refusal.
    clock.now += bot.settings.outsider_reply_window + 1
    telegram.send_text("/jobs", chat_id=BOB)
    telegram.send_text("/jobs", chat_id=BOB)
    await telegram.wait_for(lambda: len(texts_to(telegram, BOB)) == 2)
    telegram.send_text("/help")
    await telegram.wait_for(
        lambda: len([c for c in texts_to(telegram, ADA) if c.params["text"].startswith("Hi!")]) == 2
    )
    assert len(texts_to(telegram, BOB)) == 2
    assert_clean(telegram, runcomfy)


async def test_allowed_people_are_not_held_by_the_gate(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    await bots.start(ALLOWED_CHAT_IDS=str(GROUP), STARS_PACKS=PACKS, ADMIN_USER_IDS=str(BOB))
    # Ada's private chat is outside ALLOWED_CHAT_IDS, but her credits are her own: /buy works there.
    buy = await reply_to(telegram, telegram.send_text("/buy"))
    assert buy.startswith("Buy image credits with Telegram Stars")
    start_buy = await reply_to(telegram, telegram.send_text("/start buy"))
    assert start_buy.startswith("Buy image credits with Telegram Stars")
    refused = await reply_to(telegram, telegram.send_text("/jobs"))
    assert refused == "Sorry, this bot is not available in this chat."
    # A bot admin is never an outsider; nor is anyone in an allowed chat.
    admin = await reply_to(telegram, telegram.send_text("/jobs", chat_id=BOB))
    assert admin.startswith("No jobs in this chat yet")
    member = telegram.send_text("/jobs@SeqImageBot", chat_id=GROUP, user_id=ADA)
    assert (await reply_to(telegram, member)).startswith("No jobs in this chat yet")
    # A command addressed to another bot is not the bot's to refuse.
    telegram.send_text("/jobs@OtherBot", chat_id=OTHER_GROUP, user_id=ADA)
    telegram.send_text("/help", chat_id=BOB)
    await help_sent(telegram, BOB)
    assert texts_to(telegram, OTHER_GROUP) == []


# ---- item 5: a claim released whatever happens -------------------------------------------------


async def test_a_files_tap_answered_too_late_still_sends_and_frees_the_button(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished(telegram, bot)
    files = bot.runner.delivery.files
    files.repeat_cooldown = 0.0  # no pause after a set: the next tap may send again at once

    def documents() -> list[Call]:
        return [
            c
            for c in telegram.calls_to("sendMediaGroup", ok_only=True)
            if c.params["media"][0]["type"] == "document"
        ]

    telegram.fail_next("answerCallbackQuery", description=QUERY_INVALID)
    telegram.press_button(key, "v1:orig:1")
    await telegram.wait_for(lambda: len(documents()) == 1)  # the failed answer stopped nothing
    await telegram.wait_for(lambda: files._busy.get((1, JobAction.ORIGINALS)) != math.inf)
    answer = await answered(telegram, telegram.press_button(key, "v1:orig:1"))
    assert answer["text"] == "Sending the original files…"
    await telegram.wait_for(lambda: len(documents()) == 2)


async def test_a_claim_whose_send_never_began_is_released(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    key = await finished(telegram, bot)
    delivery = bot.runner.delivery

    async def broken(*args: object) -> bool:
        raise RuntimeError("the sheet could not be made")

    delivery.send_sheet = broken  # type: ignore[method-assign,assignment]
    failed = await answered(telegram, telegram.press_button(key, "v1:sheet:1"))
    assert failed["text"] == "Making the contact sheet…"
    await telegram.wait_for(lambda: (1, JobAction.SHEET) not in delivery.files._busy)
    del delivery.send_sheet  # the real one again
    answer = await answered(telegram, telegram.press_button(key, "v1:sheet:1"))
    assert answer["text"] == "Making the contact sheet…"  # not "being made" for good
    await telegram.wait_for(lambda: telegram.calls_to("sendPhoto", ok_only=True))


# ---- item 6: a bot admin's totals only in private ----------------------------------------------


async def test_a_bot_admins_usage_in_a_group_shows_only_their_own(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(ADMIN_USER_IDS=str(ADA), STARS_PACKS=PACKS, FREE_IMAGES_PER_DAY="10")
    telegram.send_text("/seq@SeqImageBot 3 a fox", chat_id=GROUP, user_id=BOB)
    await until_final(telegram, bot)
    in_group = await reply_to(
        telegram, telegram.send_text("/usage@SeqImageBot", chat_id=GROUP, user_id=ADA)
    )
    assert in_group.splitlines() == [
        "Today (UTC): 0 images, $0.00",
        "This month: 0 images, $0.00",
        "As a bot admin you have no daily limit.",
        "",
        "Totals for every chat: send /usage in your private chat with me (t.me/SeqImageBot).",
    ]
    assert "Stars" not in in_group and str(GROUP) not in in_group
    private = await reply_to(telegram, telegram.send_text("/usage"))
    assert "All chats this month:" in private
    assert f"{GROUP}: 1 job, 3 images, $0.09" in private
    assert "Telegram Stars this month: 0 ⭐ received" in private
    assert_clean(telegram, runcomfy)


async def test_three_shows_of_one_job_run_one_after_another(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    """/show holds a lock per job, kept while any /show waits for it: a released lock is
    unlocked for a moment before its next waiter takes it, and a fresh lock then let a third
    /show in beside the second (the same images sent twice)."""
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot)
    inside, most, calls = 0, 0, 0
    third: list[asyncio.Task[bool]] = []

    async def slow_show(job: Job, reply_to: int) -> bool:
        nonlocal inside, most, calls
        calls += 1
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        if calls == 1:  # a third /show comes just as the first lets the lock go
            third.append(asyncio.create_task(bot.runner.show(job, 1)))
        return True

    bot.runner.delivery.show_again = slow_show  # type: ignore[method-assign]
    first = asyncio.create_task(bot.runner.show(job, 1))
    await asyncio.sleep(0.01)  # the first holds the lock
    second = asyncio.create_task(bot.runner.show(job, 1))
    assert await asyncio.gather(first, second) == [True, True]
    assert await third[0] is True
    assert calls == 3 and most == 1
    assert bot.runner.deliveries._showing == {}
