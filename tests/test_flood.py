"""Flood control belongs to the chat that caused it (issue 18, items 1 and 2).

A 429 for one chat holds that chat only; answers to taps and checkouts never wait; a private
chat gets its own pace, so a burst there earns no 429. Through the real Application and the
fake Bot API, and the limiter on its own where only its clock matters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram.error import BadRequest, RetryAfter

from bot.flood import FloodHolds, PriorityRateLimiter
from bot.models import Status
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, Call, FakeTelegram
from tests.helpers import answered, assert_clean, followups, help_sent, media, until_final
from tests.test_payments import PACKS, _buy, _checkout

BOB = 222333444
GROUP = -1001234567890


def _helps(telegram: FakeTelegram, chat_id: int) -> list[Call]:
    return [
        c
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params["chat_id"] == chat_id and c.params["text"].startswith("Hi! I turn")
    ]


def _floods(telegram: FakeTelegram) -> list[Call]:
    return [c for c in telegram.calls if c.status == 429]


async def _flooded(telegram: FakeTelegram, chat_id: int, retry_after: int) -> Call:
    """/help in ``chat_id``, whose reply Telegram answers with a 429: the moment it did."""
    telegram.rate_limit_next("sendMessage", retry_after=retry_after, chat_id=chat_id)
    telegram.send_text("/help", chat_id=chat_id, user_id=BOB)
    call: Call = await telegram.wait_for(lambda: next(iter(_floods(telegram)), None))
    return call


# ---- 1. a 429 holds only its own chat ----------------------------------------------------


async def test_a_flood_wait_in_one_chat_does_not_hold_another_chats_reply(
    telegram: FakeTelegram, bot: RunningBot
) -> None:
    flood = await _flooded(telegram, BOB, retry_after=2)

    asked = time.monotonic()
    telegram.send_text("/help", chat_id=ADA_ID)
    await help_sent(telegram, ADA_ID)
    (ada,) = _helps(telegram, ADA_ID)
    assert ada.at - asked < 1.0  # before: 2.1 s, the whole bot waited for Bob's chat

    await help_sent(telegram, BOB)
    (bob,) = _helps(telegram, BOB)
    assert bob.at - flood.at >= 2.0  # Bob's chat itself waited as Telegram asked
    assert len(_floods(telegram)) == 1  # and was not tried again before that
    assert telegram.errors == []


async def test_a_buyer_and_a_tap_are_answered_at_once_while_a_group_waits_out_a_flood(
    telegram: FakeTelegram, bots: Bots
) -> None:
    await bots.start(STARS_PACKS=PACKS)
    invoice = await _buy(telegram)
    telegram.send_text("/help", chat_id=GROUP, user_id=BOB)  # a message to tap on, later
    await help_sent(telegram, GROUP)
    flood = await _flooded(telegram, GROUP, retry_after=3)

    asked = time.monotonic()
    answer = await _checkout(telegram, invoice["payload"], invoice["prices"][0]["amount"])
    assert answer["ok"] is True
    checkout = telegram.calls_to("answerPreCheckoutQuery", ok_only=True)[-1]
    assert checkout.at - asked < 1.0  # before: 3.1 s; Telegram gives a checkout 10 s

    # A tap in the flooded group itself: its answer takes no message slot and waits for no hold.
    tapped = time.monotonic()
    tap = telegram.press_button((GROUP, 1), "no-such-button", user_id=BOB)
    assert (await answered(telegram, tap))["text"] == "This button no longer works."
    (tap_answer,) = telegram.calls_to("answerCallbackQuery", ok_only=True)[-1:]
    assert tap_answer.at - tapped < 1.0

    await telegram.wait_for(lambda: len(_helps(telegram, GROUP)) == 2)
    assert _helps(telegram, GROUP)[-1].at - flood.at >= 3.0  # the group waited, as asked
    assert telegram.errors == []


# ---- 2. a private chat's own pace ----------------------------------------------------------


async def test_a_burst_in_one_private_chat_earns_no_429_and_holds_no_other_chat(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    # Telegram's shape, four times faster: a few messages at once, then one every 0.25 s. The
    # fake allows one message more than the bot sends at once, for the network's jitter.
    telegram.flood_private_chats(burst=4, per_second=5)
    bot = await bots.start(PRIVATE_CHAT_BURST="3", PRIVATE_CHAT_MESSAGE_INTERVAL_SECONDS="0.25")
    telegram.send_text("/seq 15 a flip-book of a bouncing ball")  # status, 2 albums, follow-up
    for _ in range(4):
        telegram.send_text("/help")  # and four replies at the same time
    await telegram.wait_for(lambda: len(_helps(telegram, ADA_ID)) >= 3)

    asked = time.monotonic()
    telegram.send_text("/help", chat_id=BOB)
    await help_sent(telegram, BOB)
    assert _helps(telegram, BOB)[0].at - asked < 1.0  # Ada's pace is Ada's alone

    job = await until_final(telegram, bot)
    await telegram.wait_for(lambda: len(_helps(telegram, ADA_ID)) == 4 and followups(telegram))
    assert job.status == Status.DONE
    assert len(media(telegram)) == 15
    assert _floods(telegram) == []  # before: the burst went out at once and met 429s
    to_ada = sorted(
        c.at
        for c in telegram.calls
        if c.params.get("chat_id") == ADA_ID and c.method.startswith(("send", "edit"))
    )
    # The pace: never more than 3 + 4 a second (measured: at most 7 in any second's window).
    assert max(sum(1 for t in to_ada if s <= t < s + 1.0) for s in to_ada) <= 7
    assert_clean(telegram, runcomfy)


# ---- the limiter on its own: holds without a chat, albums cut short, the spread rule -----------


def _sender(limiter: PriorityRateLimiter, sent: dict[str, float]) -> Callable[..., Awaitable[Any]]:
    """Send ``name`` through the limiter; ``fail`` is raised by its first try."""
    loop = asyncio.get_running_loop()

    async def send(
        name: str, endpoint: str, chat: int | None, fail: Exception | None = None
    ) -> Any:
        async def call(*_: object) -> bool:
            nonlocal fail
            if fail is not None:
                exc, fail = fail, None
                raise exc
            sent[name] = loop.time() - start
            return True

        data = {"chat_id": chat} if chat is not None else {}
        return await limiter.process_request(call, (), {}, endpoint, data, None)

    start = loop.time()
    return send


async def test_a_429_without_a_chat_holds_every_chat_but_never_an_answer() -> None:
    limiter = PriorityRateLimiter(max_retries=1)
    sent: dict[str, float] = {}
    send = _sender(limiter, sent)
    file = asyncio.create_task(send("getFile", "getFile", None, RetryAfter(1)))
    await asyncio.sleep(0.05)  # the 429 is in: the whole bot waits 1.1 s
    others = [
        asyncio.create_task(send("message", "sendMessage", ADA_ID)),
        asyncio.create_task(send("answer", "answerCallbackQuery", None)),
        asyncio.create_task(send("checkout", "answerPreCheckoutQuery", None)),
    ]
    await asyncio.gather(file, *others)
    assert sent["answer"] < 0.2 and sent["checkout"] < 0.2
    assert sent["message"] >= 1.0 and sent["getFile"] >= 1.0
    await limiter.shutdown()


async def test_an_album_cut_short_by_a_flood_holds_its_chat_only() -> None:
    limiter = PriorityRateLimiter(max_retries=3)
    sent: dict[str, float] = {}
    send = _sender(limiter, sent)
    cut = BadRequest('Failed to send message #2 with the error message "retry after 1"')
    try:
        await send("album", "sendMediaGroup", ADA_ID, cut)
    except BadRequest:
        pass  # as Telegram answered: the caller knows which items went
    else:
        raise AssertionError("the album's 400 must reach the caller")
    await asyncio.gather(
        send("same chat", "sendMessage", ADA_ID), send("other chat", "sendMessage", BOB)
    )
    assert sent["other chat"] < 0.2
    assert sent["same chat"] >= 1.0
    await limiter.shutdown()


async def test_an_answers_own_429_holds_no_chat_and_is_not_retried_once_useless() -> None:
    limiter = PriorityRateLimiter(max_retries=3)
    sent: dict[str, float] = {}
    send = _sender(limiter, sent)
    answer = asyncio.create_task(send("answer", "answerCallbackQuery", None, RetryAfter(1)))
    await asyncio.sleep(0.05)
    await send("message", "sendMessage", ADA_ID)
    assert sent["message"] < 0.2  # one user's taps stop nobody's messages
    await answer
    assert sent["answer"] >= 1.0  # tried again after its wait, still in time
    try:
        await send("late", "answerPreCheckoutQuery", None, RetryAfter(20))
    except RetryAfter:
        pass  # after 20 s Telegram has dropped the checkout: no use trying again
    else:
        raise AssertionError("a retry after the checkout expired must not be sent")
    assert "late" not in sent
    await limiter.shutdown()


async def test_answers_take_no_slot_even_when_every_slot_is_taken() -> None:
    limiter = PriorityRateLimiter(overall_max_rate=1, overall_time_period=1, private_burst=0)
    sent: dict[str, float] = {}
    send = _sender(limiter, sent)
    backlog = [asyncio.create_task(send(f"message {n}", "sendMessage", 1000 + n)) for n in range(3)]
    await asyncio.sleep(0.05)
    assert limiter.waiting == 2
    await send("answer", "answerCallbackQuery", None)
    assert sent["answer"] < 0.2
    for task in backlog:
        task.cancel()
    await asyncio.gather(*backlog, return_exceptions=True)
    await limiter.shutdown()


def test_429s_from_several_chats_at_once_are_the_whole_bots_limit() -> None:
    holds = FloodHolds(spread_chats=3, spread_window=1.0)
    assert holds.hold(1, 5.0, now=100.0) is False
    assert holds.until(1) > 105.0 and holds.until(2) == 0.0  # one chat: that chat waits
    assert holds.hold(2, 5.0, now=100.5) is False
    assert holds.hold(3, 2.0, now=102.0) is False  # chats 1 and 2 earned theirs too long ago
    assert holds.hold(4, 2.0, now=102.2) is False
    assert holds.hold(5, 2.0, now=102.5) is True  # chats 3, 4, 5 within a second
    assert holds.until(99) > 104.5  # every chat waits now
    assert holds.hold(None, 1.0, now=200.0) is True  # no chat: the whole bot
    assert holds.held == 0  # the passed holds are forgotten
