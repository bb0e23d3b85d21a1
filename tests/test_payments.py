"""Payments in Telegram Stars (STARS_PACKS): /buy → invoice → pre-checkout → payment → credits,
exactly once; jobs reserve, spend and return credits; refunds; and nothing changes when off."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, LabeledPrice
from telegram.error import BadRequest

from bot import callbacks
from bot.app import allowed_updates
from bot.callbacks import BuyButton
from bot.config import Settings
from bot.errors import ConfigError
from bot.models import Origin, SeqRequest, Status
from bot.sending import Background
from bot.store import Invoice, NotEnoughCredits, Reserve, Store
from tests.conftest import Bots, RunningBot
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import answered, assert_clean, help_sent, menu_set, reply_to, until_final
from tests.test_process import BotProcess, process_env  # noqa: F401 - a fixture

PACKS = "10:75,50:300"
GROUP = -1001234567890
OTHER = 555000111  # another user
ADMIN = 42424242


def _texts_to(telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params["chat_id"] == chat_id
    ]


async def _buy(
    telegram: FakeTelegram, images: int = 10, *, chat_id: int = ADA_ID, user_id: int = ADA_ID
) -> dict[str, Any]:
    """/buy, tap the pack: the invoice the bot sent."""
    before = len(telegram.invoices)
    update = telegram.send_text("/buy", chat_id=chat_id, user_id=user_id)
    text = await reply_to(telegram, update)
    assert "Telegram Stars" in text
    call = next(
        c
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params.get("reply_parameters", {}).get("message_id") == update["message"]["message_id"]
        and c.params["chat_id"] == chat_id
    )
    reply = call.response["result"]
    labels = [row[0]["text"] for row in reply["reply_markup"]["inline_keyboard"]]
    assert labels == ["10 images for 75 ⭐", "50 images for 300 ⭐"]
    telegram.press_button(reply, f"v1:buy:{images}", user_id=user_id)
    await telegram.wait_for(lambda: len(telegram.invoices) > before)
    return telegram.invoices[-1]


async def _checkout(
    telegram: FakeTelegram, payload: str, stars: int, user_id: int = ADA_ID
) -> dict[str, Any]:
    """Press Pay: the bot's answer to the pre-checkout query."""
    query = telegram.pre_checkout(payload, total_amount=stars, user_id=user_id)
    qid = query["pre_checkout_query"]["id"]
    answer: dict[str, Any] = await telegram.wait_for(lambda: telegram.checkout_answers.get(qid))
    return answer


async def _pay(
    telegram: FakeTelegram,
    invoice: dict[str, Any],
    *,
    user_id: int = ADA_ID,
    charge_id: str = "stx-charge-1",
) -> str:
    """Pre-checkout, then successful_payment; returns the bot's thanks."""
    stars = invoice["prices"][0]["amount"]
    answer = await _checkout(telegram, invoice["payload"], stars, user_id)
    assert answer["ok"] is True
    thanks = len([t for t in _texts_to(telegram, user_id) if t.startswith("Thank you!")])
    telegram.pay(invoice["payload"], stars, user_id=user_id, charge_id=charge_id)
    texts = await telegram.wait_for(
        lambda: (
            (t := [t for t in _texts_to(telegram, user_id) if t.startswith("Thank you!")])
            and len(t) > thanks
            and t
        )
    )
    return str(texts[-1])


async def _paid_bot(bots: Bots, telegram: FakeTelegram, **extra: str) -> RunningBot:
    bot = await bots.start(STARS_PACKS=PACKS, **extra)
    invoice = await _buy(telegram)
    await _pay(telegram, invoice)
    assert bot.store.balance(ADA_ID) == 10
    return bot


async def test_buy_pay_and_the_credits_are_there(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(STARS_PACKS=PACKS)
    await menu_set(bot)
    names = [c["command"] for c in telegram.commands]
    assert names[-4:] == ["buy", "balance", "paysupport", "terms"]
    polls = await telegram.wait_for(lambda: telegram.calls_to("getUpdates"))
    assert "pre_checkout_query" in polls[-1].params["allowed_updates"]

    invoice = await _buy(telegram, 50)
    assert invoice["chat_id"] == ADA_ID
    assert invoice["currency"] == "XTR" and not invoice.get("provider_token")
    assert [p["amount"] for p in invoice["prices"]] == [300]
    assert invoice["title"] == "50 images"
    payload = invoice["payload"]
    assert 32 <= len(payload.encode()) <= 128 and str(ADA_ID) not in payload

    thanks = await _pay(telegram, invoice)
    assert thanks == "Thank you! 50 images added. Your balance: 50 images."
    assert bot.store.balance(ADA_ID) == 50
    payment = bot.store.payment("stx-charge-1")
    assert payment is not None
    assert (payment.requester_id, payment.images, payment.stars) == (ADA_ID, 50, 300)

    text = await reply_to(telegram, telegram.send_text("/balance"))
    assert "Image credits: 50 images" in text
    assert "50 images for 300 ⭐ (charge stx-charge-1)" in text
    text = await reply_to(telegram, telegram.send_text("/paysupport"))
    assert "/balance" in text
    text = await reply_to(telegram, telegram.send_text("/terms"))
    assert "Telegram Stars" in text
    assert_clean(telegram, runcomfy)


async def test_a_repeated_successful_payment_is_credited_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram)
    invoice = telegram.invoices[-1]
    # Telegram delivers the same payment again (same charge id): nothing more is added.
    telegram.pay(invoice["payload"], 75, charge_id="stx-charge-1")
    await telegram.wait_for(
        lambda: len([t for t in _texts_to(telegram, ADA_ID) if t.startswith("Thank you!")]) == 2
    )
    assert bot.store.balance(ADA_ID) == 10
    rows = bot.store.db.execute("SELECT count(*) FROM payments").fetchone()[0]
    assert rows == 1
    assert_clean(telegram, runcomfy)


def _db(env: dict[str, str], sql: str) -> Any:
    conn = sqlite3.connect(env["DATABASE_PATH"], timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no tables yet
        return None
    finally:
        conn.close()


async def test_sigkill_after_the_payment_update_credits_once_after_restart(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    process_env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """The real process is killed as soon as the payment is on disk (before it could confirm
    the update or answer); Telegram delivers the payment again: one credit only."""
    env = {**process_env, "STARS_PACKS": PACKS}
    first = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        invoice = await _buy(telegram)
        assert (await _checkout(telegram, invoice["payload"], 75))["ok"] is True
        telegram.pay(invoice["payload"], 75, charge_id="stx-kill")
        await _wait_rows(env)
        first.kill()
    finally:
        if not first.exited():
            first.kill()
    assert await first.wait() == -signal.SIGKILL
    telegram.pay(invoice["payload"], 75, charge_id="stx-kill")  # Telegram's redelivery
    thanked = _thanks(telegram)
    again = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        await telegram.wait_for(lambda: not telegram.updates, timeout=15)
        await telegram.wait_for(lambda: _thanks(telegram) > thanked, timeout=15)
    finally:
        again.terminate()
        await again.wait()
    assert _db(env, "SELECT count(*) FROM payments") == [(1,)]
    assert _db(env, "SELECT balance FROM credits") == [(10,)]


def _thanks(telegram: FakeTelegram) -> int:
    return len([t for t in _texts_to(telegram, ADA_ID) if t.startswith("Thank you!")])


async def _wait_rows(env: dict[str, str]) -> None:
    """Until the payment is on disk, checking every millisecond (to kill right after)."""
    deadline = time.monotonic() + 15
    while not _db(env, "SELECT charge_id FROM payments"):
        assert time.monotonic() < deadline, "the payment was never recorded"
        await asyncio.sleep(0.001)


async def test_a_job_reserves_free_images_first_then_credits_and_spends_them(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram, FREE_IMAGES_PER_DAY="2")
    telegram.send_text("/seq 4 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert bot.store.reservation(job.id) == ("spent", 2, 2)
    assert bot.store.balance(ADA_ID) == 8
    text = await reply_to(telegram, telegram.send_text("/balance"))
    assert "Image credits: 8 images" in text and "Free today: 0 of 2 left" in text
    assert_clean(telegram, runcomfy)


async def test_a_job_cancelled_while_queued_returns_its_credits(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram)
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 4 a fox")
    job = await telegram.wait_for(
        lambda: (j := bot.store.get(1)) and j.queue_position is not None and j
    )
    assert bot.store.balance(ADA_ID) == 6
    assert bot.store.reservation(1) == ("spent", 4, 0)  # RunComfy accepted it
    assert job.status_message_id is not None
    telegram.press_button((ADA_ID, job.status_message_id), "v1:cancel:1")
    job = await until_final(telegram, bot)
    assert job.status == Status.CANCELLED
    assert bot.store.reservation(1) == ("returned", 4, 0)
    assert bot.store.balance(ADA_ID) == 10
    assert_clean(telegram, runcomfy)


async def test_a_refused_submit_returns_the_credits_and_an_unknown_one_keeps_them(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN))
    runcomfy.fail_next("submit", "503")
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot, 1)
    assert job.status == Status.FAILED and job.request_id is None
    assert bot.store.reservation(1) == ("returned", 2, 0)
    assert bot.store.balance(ADA_ID) == 10

    runcomfy.fail_next("submit", "timeout")
    telegram.send_text("/seq 3 a cat")
    job = await until_final(telegram, bot, 2)
    assert job.submit_unknown == 1
    assert bot.store.reservation(2) == ("reserved", 3, 0)  # it may have been billed
    assert bot.store.balance(ADA_ID) == 7

    # Only a bot admin may give them back; others get no answer at all.
    telegram.send_text("/return_credits 2", chat_id=OTHER)
    update = telegram.send_text("/return_credits 2", chat_id=ADMIN)
    assert await reply_to(telegram, update) == "Job #2: 3 images returned to the balance."
    assert bot.store.balance(ADA_ID) == 10
    assert _texts_to(telegram, OTHER) == []
    assert_clean(telegram, runcomfy)


async def test_too_few_credits_is_refused_naming_the_number_and_buy(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(STARS_PACKS=PACKS, FREE_IMAGES_PER_DAY="2")
    text = await reply_to(telegram, telegram.send_text("/seq 4 a fox"))
    assert text == (
        "This job needs 4 images, but you have 2 images to spend (free images of today "
        "included). Buy image credits with /buy."
    )
    assert runcomfy.count("submit") == 0
    assert bot.store.get(1) is None
    # Within the free images: no credits needed.
    telegram.send_text("/seq 2 a fox")
    job = await until_final(telegram, bot, 1)
    assert job.status == Status.DONE
    assert bot.store.reservation(1) == ("spent", 0, 2)
    assert_clean(telegram, runcomfy)


async def test_pre_checkout_is_refused_for_unknown_expired_or_repriced_invoices(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(STARS_PACKS=PACKS)
    answer = await _checkout(telegram, "forged-payload", 75)
    assert answer["ok"] is False and "not known" in answer["error_message"]

    invoice = await _buy(telegram)
    answer = await _checkout(telegram, invoice["payload"], 75, user_id=OTHER)
    assert answer["ok"] is False  # someone else's invoice
    answer = await _checkout(telegram, invoice["payload"], 1)
    assert answer["ok"] is False and "price" in answer["error_message"]
    with bot.store.db.conn:
        bot.store.db.execute("UPDATE invoices SET expires_at = ?", [time.time() - 1])
    answer = await _checkout(telegram, invoice["payload"], 75)
    assert answer["ok"] is False and "expired" in answer["error_message"]

    # The operator changes the pack's price: an invoice sent before is refused.
    fresh = await _buy(telegram)
    await bots.stop(bot)
    await bots.start(STARS_PACKS="10:90,50:300")
    answer = await _checkout(telegram, fresh["payload"], 75)
    assert answer["ok"] is False and "no longer offered" in answer["error_message"]
    assert_clean(telegram, runcomfy)


async def test_refund_of_an_unused_purchase(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN))
    telegram.send_text("/refund stx-charge-1", chat_id=OTHER)  # not an admin: no answer
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    text = await reply_to(telegram, update)
    assert text == "Refunded 75 ⭐ of payment stx-charge-1; 10 images removed from the balance."
    assert telegram.refunds == ["stx-charge-1"]
    assert bot.store.balance(ADA_ID) == 0
    # Telegram refuses a refund: the payment stands and its credits come back.
    invoice = await _buy(telegram)
    await _pay(telegram, invoice, charge_id="stx-charge-2")
    telegram.fail_next("refundStarPayment", description="Bad Request: CHARGE_NOT_FOUND")
    update = telegram.send_text("/refund stx-charge-2", chat_id=ADMIN)
    assert "Telegram refused the refund of stx-charge-2" in await reply_to(telegram, update)
    assert bot.store.balance(ADA_ID) == 10 and telegram.refunds == ["stx-charge-1"]
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    assert await reply_to(telegram, update) == "Payment stx-charge-1 was already refunded."
    text = await reply_to(telegram, telegram.send_text("/balance"))
    assert "(charge stx-charge-1) (refunded)" in text
    text = await reply_to(telegram, telegram.send_text("/usage", chat_id=ADMIN))
    assert "Telegram Stars this month: 150 ⭐ received, 75 ⭐ refunded" in text
    assert _texts_to(telegram, OTHER) == []
    assert_clean(telegram, runcomfy)


async def test_a_purchase_partly_used_is_not_refunded(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN))
    telegram.send_text("/seq 2 a fox")
    await until_final(telegram, bot)
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    assert "cannot be refunded" in await reply_to(telegram, update)
    assert telegram.refunds == [] and bot.store.balance(ADA_ID) == 8


async def test_buy_in_a_group_sends_the_invoice_privately_or_a_start_link(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    await bots.start(STARS_PACKS=PACKS)
    invoice = await _buy(telegram, chat_id=GROUP, user_id=OTHER)
    assert invoice["chat_id"] == OTHER  # the buyer's private chat, not the group
    answers = await telegram.wait_for(lambda: list(telegram.callback_answers.values()))
    assert answers[-1]["text"] == "I sent you the invoice in our private chat."

    telegram.block_chat(ADA_ID)  # Ada never started the bot: Telegram refuses with 403
    update = telegram.send_text("/buy", chat_id=GROUP, user_id=ADA_ID)
    await reply_to(telegram, update)
    call = telegram.calls_to("sendMessage", ok_only=True)[-1]
    tap = telegram.press_button(call.response["result"], "v1:buy:10", user_id=ADA_ID)
    qid = tap["callback_query"]["id"]
    answer = await telegram.wait_for(lambda: telegram.callback_answers.get(qid))
    assert "https://t.me/SeqImageBot?start=buy" in answer["text"] and answer["show_alert"]
    assert len(telegram.invoices) == 1
    # The link's Start shows the packs in the private chat.
    telegram.blocked.discard(ADA_ID)
    assert "Telegram Stars" in await reply_to(telegram, telegram.send_text("/start buy"))


async def test_payments_off_change_nothing(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot
) -> None:
    assert "buy" not in [c["command"] for c in telegram.commands]
    polls = await telegram.wait_for(lambda: telegram.calls_to("getUpdates"))
    assert "pre_checkout_query" not in json.dumps(polls[-1].params)
    telegram.send_text("/buy")
    telegram.send_text("/balance")
    telegram.send_text("/help")
    await help_sent(telegram, ADA_ID)
    assert len(_texts_to(telegram, ADA_ID)) == 1  # only the help: /buy is not a command
    telegram.send_text("/seq 4 a fox")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    assert bot.store.reservation(job.id) is None
    assert_clean(telegram, runcomfy)


BASE_ENV = {
    "TELEGRAM_BOT_TOKEN": "7012345678:fake-test-token-0123456789",
    "RUNCOMFY_API_TOKEN": "x",
}


def test_settings_read_the_packs_and_refuse_bad_ones() -> None:
    settings = Settings.from_env(BASE_ENV)
    assert settings.stars_packs == () and not settings.payments
    assert settings.free_images_per_day == 0 and settings.paysupport_text is None
    settings = Settings.from_env(
        {
            **BASE_ENV,
            "STARS_PACKS": " 10:75, 50:300 ",
            "FREE_IMAGES_PER_DAY": "3",
            "TERMS_TEXT": "Line one\\nLine two",
        }
    )
    assert settings.stars_packs == ((10, 75), (50, 300)) and settings.payments
    assert settings.free_images_per_day == 3 and settings.terms_text == "Line one\nLine two"
    assert allowed_updates(settings)[-1] == "pre_checkout_query"
    for bad in (
        "10",
        "10:0",
        "0:5",
        "a:b",
        "10:75,10:80",
        "10:-5",
        "1:1,2:2,3:3,4:4,5:5,6:6,7:7,8:8,9:9",
    ):
        with pytest.raises(ConfigError, match="STARS_PACKS"):
            Settings.from_env({**BASE_ENV, "STARS_PACKS": bad})
    with pytest.raises(ConfigError, match="FREE_IMAGES_PER_DAY"):
        Settings.from_env({**BASE_ENV, "STARS_PACKS": "10:75", "FREE_IMAGES_PER_DAY": "-1"})


def test_buy_buttons_round_trip_and_refuse_forgeries() -> None:
    assert callbacks.encode(BuyButton(10)) == "v1:buy:10"
    assert callbacks.parse("v1:buy:10") == BuyButton(10)
    for forged in ("v1:buy:0", "v1:buy:010", "v1:buy:1234567", "v2:buy:10", "v1:buy:²"):
        assert callbacks.parse(forged) is None


async def test_a_user_not_allowed_cannot_buy(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    await bots.start(STARS_PACKS=PACKS, ALLOWED_USER_IDS=str(OTHER))
    text = await reply_to(telegram, telegram.send_text("/buy"))
    assert text == "Sorry, this bot is not available to you."
    assert telegram.invoices == []


async def test_a_chats_credits_are_not_sold_for_a_chat_outside_the_allowlist(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """Buying for oneself passes the private chat whatever ALLOWED_CHAT_IDS says; a pack of a
    chat identity's credits (its button names the chat) only for an allowed chat."""
    await bots.start(STARS_PACKS=PACKS, ALLOWED_CHAT_IDS=str(GROUP))
    assert "Buy image credits" in await reply_to(telegram, telegram.send_text("/buy"))
    packs = telegram.calls_to("sendMessage", ok_only=True)[-1].response["result"]
    outside = GROUP - 1
    answer = await answered(telegram, telegram.press_button(packs, f"v1:buy:10:{outside}"))
    assert answer["text"] == "Sorry, this bot is not available in this chat."
    assert telegram.invoices == []
    telegram.press_button(packs, f"v1:buy:10:{GROUP}")  # the allowed group: sold
    invoice = await telegram.wait_for(lambda: telegram.invoices and telegram.invoices[-1])
    assert invoice["chat_id"] == ADA_ID


async def test_the_fake_checks_invoices_and_refunds_as_telegram_does(
    telegram: FakeTelegram,
) -> None:
    async with Bot(
        telegram.token, base_url=telegram.base_url, base_file_url=telegram.base_file_url
    ) as tg:
        sent = await tg.send_invoice(
            ADA_ID, "10 images", "d", "p" * 128, "XTR", [LabeledPrice("x", 5)]
        )
        assert sent.invoice is not None and sent.invoice.total_amount == 5
        for kwargs in (
            {"currency": "USD"},
            {"payload": "p" * 129},
            {"prices": [LabeledPrice("x", 5), LabeledPrice("y", 1)]},
            {"title": "t" * 33},
        ):
            args = {"title": "t", "description": "d", "payload": "p", "currency": "XTR",
                    "prices": [LabeledPrice("x", 5)], **kwargs}  # fmt: skip
            with pytest.raises(BadRequest):
                await tg.send_invoice(ADA_ID, **args)  # type: ignore[arg-type]
        assert len(telegram.errors) == 4
        telegram.errors.clear()
        with pytest.raises(BadRequest, match=r"(?i)charge_not_found"):
            await tg.refund_star_payment(ADA_ID, "no-such-charge")
        telegram.pay("p", 5, charge_id="c1")
        assert await tg.refund_star_payment(ADA_ID, "c1")
        with pytest.raises(BadRequest, match=r"(?i)already_refunded"):
            await tg.refund_star_payment(ADA_ID, "c1")
        query = telegram.pre_checkout("p", total_amount=5)
        with pytest.raises(BadRequest):
            await tg.answer_pre_checkout_query(query["pre_checkout_query"]["id"], ok=False)
        assert await tg.answer_pre_checkout_query(query["pre_checkout_query"]["id"], ok=True)


def test_two_processes_credit_a_payment_once_and_never_overdraw(tmp_path: Path) -> None:
    """Two Store connections to one file, as two bot processes would have."""
    path = tmp_path / "seqbot.sqlite3"
    first, second = Store(path), Store(path)
    try:
        invoice = Invoice("pay-load", ADA_ID, ADA_ID, 4, 30, time.time() + 60)
        first.claim_invoice(invoice, now=time.time(), window=60)
        for store in (first, second, first):
            store.record_payment(
                charge_id="c-1",
                provider_charge_id=None,
                payload="pay-load",
                user_id=ADA_ID,
                stars=30,
            )
        assert first.balance(ADA_ID) == second.balance(ADA_ID) == 4
        request = SeqRequest(
            count=4, size="2048:2048 (1:1)", mode="x", seed=1, prompt="p", text="p"
        )
        reserve = Reserve(ADA_ID, free_per_day=0, day_start=0.0)

        def origin(message_id: int) -> Origin:
            return Origin(ADA_ID, message_id, ADA_ID, ADA_ID, None, None, "private")

        assert first.create_job(request, origin(1), reserve=reserve) is not None
        with pytest.raises(NotEnoughCredits) as refused:
            second.create_job(request, origin(2), reserve=reserve)
        assert (refused.value.needed, refused.value.available) == (4, 0)
        assert second.get(2) is None  # nothing written: the job and its reservation are one
        assert first.return_reservation(1) == 4 and second.return_reservation(1) == 0
        assert second.balance(ADA_ID) == 4
    finally:
        first.close()
        second.close()


# ---- issue 19: money exact under every fault; issue 18 item 3: /buy posts within bounds ---------

ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group",
                   "username": "GroupAnonymousBot"}  # fmt: skip
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"}


def _refund_state(bot: RunningBot, charge: str = "stx-charge-1") -> str | None:
    payment = bot.store.payment(charge)
    assert payment is not None
    return payment.refund_state


async def test_a_refund_whose_answer_is_lost_stays_pending_and_is_never_given_twice(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """Telegram makes the refund but its answer never arrives (the bot's HTTP timeout is 1 s):
    the credits stay removed and the refund pending; asking again, CHARGE_ALREADY_REFUNDED
    means it was made. The buyer never keeps both the Stars and the credits."""
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN))
    telegram.lose_answer_next("refundStarPayment", 3.0)
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    text = await reply_to(telegram, update)
    assert text.startswith("Telegram did not answer about the refund of stx-charge-1.")
    assert telegram.refunds == ["stx-charge-1"]  # Telegram did return the Stars
    assert bot.store.balance(ADA_ID) == 0
    # The bot asks again by itself: Telegram says it was already refunded, which is success.
    await telegram.wait_for(lambda: _refund_state(bot) == "done")
    assert bot.store.balance(ADA_ID) == 0
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    assert await reply_to(telegram, update) == "Payment stx-charge-1 was already refunded."
    text = await reply_to(telegram, telegram.send_text("/balance"))
    assert "(charge stx-charge-1) (refunded)" in text and "Image credits: 0 images" in text
    assert telegram.refunds == ["stx-charge-1"] and bot.store.balance(ADA_ID) == 0
    assert_clean(telegram, runcomfy)


async def test_a_second_refund_answered_already_refunded_is_a_success(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """The admin asks again before the bot does: CHARGE_ALREADY_REFUNDED is no refusal."""
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN), TELEGRAM_RETRY_SECONDS="30")
    telegram.lose_answer_next("refundStarPayment", 3.0)
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    assert "did not answer" in await reply_to(telegram, update)
    assert _refund_state(bot) == "pending"
    text = await reply_to(telegram, telegram.send_text("/balance"))
    assert "(charge stx-charge-1) (refund under way)" in text
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    text = await reply_to(telegram, update)
    assert text == "Refunded 75 ⭐ of payment stx-charge-1; 10 images removed from the balance."
    assert _refund_state(bot) == "done" and bot.store.balance(ADA_ID) == 0
    stars = bot.store.stars_received(0)
    assert stars == (75, 75)
    assert_clean(telegram, runcomfy)


async def test_telegrams_refunded_payment_message_settles_the_refund(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """A pending refund is confirmed by the refunded_payment service message; a refund the bot
    never asked for (made elsewhere) removes the payment's credits."""
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN), TELEGRAM_RETRY_SECONDS="30")
    telegram.lose_answer_next("refundStarPayment", 3.0)
    update = telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
    assert "did not answer" in await reply_to(telegram, update)
    update = telegram.refunded("stx-charge-1")
    text = await reply_to_service(telegram, update)
    assert text == (
        "Payment stx-charge-1 was refunded: 75 ⭐ went back to you and its credits were "
        "removed. Your balance: 0 images."
    )
    assert _refund_state(bot) == "done" and bot.store.balance(ADA_ID) == 0

    invoice = await _buy(telegram)
    await _pay(telegram, invoice, charge_id="stx-charge-2")
    assert bot.store.balance(ADA_ID) == 10
    telegram.refunds.append("stx-charge-2")  # refunded outside the bot
    update = telegram.refunded("stx-charge-2")
    assert "Your balance: 0 images." in await reply_to_service(telegram, update)
    assert _refund_state(bot, "stx-charge-2") == "done" and bot.store.balance(ADA_ID) == 0
    update = telegram.refunded("stx-charge-2")  # delivered twice: nothing changes
    assert "Your balance: 0 images." in await reply_to_service(telegram, update)
    assert bot.store.stars_received(0) == (150, 150)
    assert_clean(telegram, runcomfy)


async def test_a_refund_made_outside_the_bot_counts_when_the_allowlist_names_only_groups(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """The buyer's private chat is outside ALLOWED_CHAT_IDS (buying is let through there); the
    refunded_payment service message that lands there must get through the outsider gate too."""
    bot = await _paid_bot(bots, telegram, ALLOWED_CHAT_IDS=str(GROUP))
    assert bot.store.balance(ADA_ID) == 10
    telegram.refunds.append("stx-charge-1")  # refunded outside the bot (a dispute, say)
    update = telegram.refunded("stx-charge-1")
    assert "Your balance: 0 images." in await reply_to_service(telegram, update)
    assert _refund_state(bot) == "done" and bot.store.balance(ADA_ID) == 0
    assert_clean(telegram, runcomfy)


async def test_a_refund_left_pending_by_a_stop_is_decided_by_telegram_at_the_next_start(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, env: dict[str, str]
) -> None:
    """The bot stopped between taking the credits and hearing Telegram (the state a crash right
    after ``take_refund`` leaves): the next start asks again. Telegram never got the first
    request here, so it refunds now; a refund it refuses gives the credits back."""
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN))
    invoice = await _buy(telegram)
    await _pay(telegram, invoice, charge_id="stx-charge-2")
    await bots.stop(bot)
    store = Store(Path(env["DATABASE_PATH"]))
    try:
        assert store.take_refund("stx-charge-1") is not None
        assert store.take_refund("stx-charge-2") is not None
        assert store.balance(ADA_ID) == 0
    finally:
        store.close()
    del telegram.charges["stx-charge-2"]  # Telegram will refuse this one: CHARGE_NOT_FOUND
    bot = await bots.start(STARS_PACKS=PACKS, ADMIN_USER_IDS=str(ADMIN))
    await telegram.wait_for(lambda: _refund_state(bot) == "done")
    await telegram.wait_for(lambda: _refund_state(bot, "stx-charge-2") is None)
    assert telegram.refunds == ["stx-charge-1"]
    assert bot.store.balance(ADA_ID) == 10  # charge 2 stands: its credits are back
    assert bot.store.pending_refunds() == []


async def test_sigkill_while_a_refund_waits_for_telegram_is_resolved_after_restart(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    process_env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """The real process is killed while Telegram holds its refund answer; Telegram made the
    refund. The next start asks again and records it: the credits stay removed, once."""
    env = {**process_env, "STARS_PACKS": PACKS, "ADMIN_USER_IDS": str(ADMIN),
           "HTTP_TIMEOUT_SECONDS": "20"}  # fmt: skip
    first = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        await _pay(telegram, await _buy(telegram))
        telegram.lose_answer_next("refundStarPayment", 15.0)
        telegram.send_text("/refund stx-charge-1", chat_id=ADMIN)
        await telegram.wait_for(lambda: telegram.refunds == ["stx-charge-1"])
        assert _db(env, "SELECT refund_state FROM payments") == [("pending",)]
        first.kill()
    finally:
        if not first.exited():
            first.kill()
    await first.wait()
    again = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        deadline = time.monotonic() + 15
        while _db(env, "SELECT refund_state FROM payments") != [("done",)]:
            assert time.monotonic() < deadline, again.output()
            await asyncio.sleep(0.05)
    finally:
        again.terminate()
        await again.wait()
    assert _db(env, "SELECT balance FROM credits") == [(0,)]
    assert telegram.refunds == ["stx-charge-1"]


async def _queued_job(telegram: FakeTelegram, runcomfy: FakeRunComfy, bot: RunningBot) -> Any:
    runcomfy.script_next(JobScript(queued_polls=10_000))
    telegram.send_text("/seq 4 a fox")
    return await telegram.wait_for(
        lambda: (j := bot.store.get(1)) and j.queue_position is not None and j
    )


async def test_a_cancel_while_the_database_is_locked_still_returns_the_credits(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, env: dict[str, str]
) -> None:
    """Another process holds SQLite's write lock when the job is cancelled: the settlement
    waits in memory and is written once the lock is gone (was: balance 6 for good)."""
    bot = await _paid_bot(bots, telegram)
    job = await _queued_job(telegram, runcomfy, bot)
    assert bot.store.balance(ADA_ID) == 6
    lock = sqlite3.connect(env["DATABASE_PATH"], timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")
        telegram.press_button((ADA_ID, job.status_message_id), "v1:cancel:1")
        await telegram.wait_for(lambda: bot.store.get(1).status == Status.CANCELLED)
        await asyncio.sleep(0.3)  # a few of the settlement's tries meet the lock
        assert bot.store.balance(ADA_ID) == 6 and 1 in bot.store.settling
    finally:
        lock.rollback()
        lock.close()
    await telegram.wait_for(lambda: bot.store.balance(ADA_ID) == 10)
    assert bot.store.reservation(1) == ("returned", 4, 0)
    assert bot.store.settling == {}
    assert_clean(telegram, runcomfy)


async def test_the_start_settles_every_job_whose_credits_do_not_match_its_end(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, env: dict[str, str]
) -> None:
    """As a stop between a job's end and its settlement leaves them: a cancelled job's credits
    still spent, a job RunComfy took still reserved; an unclear one stays reserved."""
    bot = await _paid_bot(bots, telegram)
    job = await _queued_job(telegram, runcomfy, bot)
    telegram.press_button((ADA_ID, job.status_message_id), "v1:cancel:1")
    await until_final(telegram, bot, 1)
    telegram.send_text("/seq 2 a cat")
    await until_final(telegram, bot, 2)
    runcomfy.fail_next("submit", "timeout")
    telegram.send_text("/seq 1 a bird")
    assert (await until_final(telegram, bot, 3)).submit_unknown == 1
    assert bot.store.balance(ADA_ID) == 7
    await bots.stop(bot)
    conn = sqlite3.connect(env["DATABASE_PATH"])
    with conn:
        conn.execute("UPDATE reservations SET state = 'spent' WHERE job_id = 1")
        conn.execute("UPDATE reservations SET state = 'reserved' WHERE job_id = 2")
        conn.execute("UPDATE credits SET balance = balance - 4")
    conn.close()
    bot = await bots.start(STARS_PACKS=PACKS)
    assert bot.store.reservation(1) == ("returned", 4, 0)
    assert bot.store.reservation(2) == ("spent", 2, 0)
    assert bot.store.reservation(3) == ("reserved", 1, 0)
    assert bot.store.balance(ADA_ID) == 7
    assert_clean(telegram, runcomfy)


async def test_return_credits_gives_back_only_what_is_still_reserved(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await _paid_bot(bots, telegram, ADMIN_USER_IDS=str(ADMIN))
    telegram.send_text("/seq 2 a fox")
    assert (await until_final(telegram, bot, 1)).status == Status.DONE
    update = telegram.send_text("/return_credits 1", chat_id=ADMIN)
    assert await reply_to(telegram, update) == (
        "Job #1 delivered its images: its credits are spent. Nothing returned."
    )
    assert bot.store.balance(ADA_ID) == 8 and bot.store.reservation(1) == ("spent", 2, 0)
    runcomfy.fail_next("submit", "timeout")
    telegram.send_text("/seq 3 a cat")
    await until_final(telegram, bot, 2)
    update = telegram.send_text("/return_credits 2", chat_id=ADMIN)
    assert await reply_to(telegram, update) == "Job #2: 3 images returned to the balance."
    update = telegram.send_text("/return_credits 2", chat_id=ADMIN)
    assert await reply_to(telegram, update) == "Job #2: its credits were already returned."
    assert bot.store.balance(ADA_ID) == 8
    assert_clean(telegram, runcomfy)


async def test_chat_identities_get_no_free_images_and_buy_their_own_credits(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """One person as anonymous admin of three groups, and as three channels: no free images
    (was 12 and 16 under FREE_IMAGES_PER_DAY=4). Credits bought for a chat serve it."""
    bot = await bots.start(STARS_PACKS=PACKS, FREE_IMAGES_PER_DAY="4")
    groups = [GROUP - i for i in range(3)]
    for i, group in enumerate(groups):
        chat = telegram.chats[group] = {"id": group, "title": f"Lab {i}", "type": "supergroup"}
        update = telegram.send_text(f"/seq@SeqImageBot 4 a fox {i}", chat_id=group,
                                    from_user=ANONYMOUS_ADMIN, sender_chat=chat)  # fmt: skip
        text = await reply_to(telegram, update)
        assert text.startswith("This job needs 4 images, but this chat has 0 images to spend.")
        channel = {"id": -1009000000 - i, "title": f"Channel {i}", "type": "channel"}
        update = telegram.send_text(f"/seq@SeqImageBot 4 a cat {i}", chat_id=group,
                                    from_user=CHANNEL_BOT, sender_chat=channel)  # fmt: skip
        assert "this chat has 0 images" in await reply_to(telegram, update)
    assert runcomfy.count("submit") == 0
    telegram.send_text("/seq 4 a fox")  # Ada herself: her 4 free images
    assert (await until_final(telegram, bot, 1)).status == Status.DONE

    # An anonymous admin's /buy offers the group's packs; whoever taps pays, privately.
    group_chat = {"id": groups[0], "title": "Lab 0", "type": "supergroup"}
    update = telegram.send_text("/buy@SeqImageBot", chat_id=groups[0], from_user=ANONYMOUS_ADMIN,
                                sender_chat=group_chat)  # fmt: skip
    assert "Buy image credits for Lab 0" in await reply_to(telegram, update)
    reply = telegram.calls_to("sendMessage", ok_only=True)[-1].response["result"]
    telegram.press_button(reply, f"v1:buy:10:{groups[0]}", user_id=ADA_ID)
    invoice = await telegram.wait_for(lambda: telegram.invoices and telegram.invoices[-1])
    assert invoice["chat_id"] == ADA_ID and "Lab 0" in invoice["description"]
    await _pay(telegram, invoice)
    assert bot.store.balance(groups[0]) == 10 and bot.store.balance(ADA_ID) == 0
    update = telegram.send_text("/balance@SeqImageBot", chat_id=groups[0],
                                from_user=ANONYMOUS_ADMIN, sender_chat=group_chat)  # fmt: skip
    text = await reply_to(telegram, update)
    assert "Image credits: 10 images" in text and "Free today" not in text
    telegram.send_text("/seq@SeqImageBot 4 a fox", chat_id=groups[0], from_user=ANONYMOUS_ADMIN,
                       sender_chat=group_chat)  # fmt: skip
    job = await until_final(telegram, bot, 2)
    assert job.status == Status.DONE and job.requester_id == groups[0]
    assert bot.store.reservation(2) == ("spent", 4, 0)
    assert_clean(telegram, runcomfy)


async def test_a_groups_daily_images_are_capped_whoever_asks(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """DAILY_IMAGE_LIMIT_PER_CHAT, by default the per-user limit: two people (or one person as
    several identities) in one group share it; a private chat keeps the per-user limit."""
    bot = await bots.start(DAILY_IMAGE_LIMIT_PER_USER="4")
    assert bot.settings.daily_image_limit_per_chat == 4
    telegram.send_text("/seq@SeqImageBot 3 a fox", chat_id=GROUP, user_id=ADA_ID)
    await until_final(telegram, bot, 1)
    update = telegram.send_text("/seq@SeqImageBot 3 a cat", chat_id=GROUP, user_id=OTHER)
    text = await reply_to(telegram, update)
    assert text.startswith("This chat has 1 of today's 4 images left; ask for 1 or fewer.")
    chat = {"id": GROUP, "title": "Lab", "type": "supergroup"}
    update = telegram.send_text("/seq@SeqImageBot 2 a cat", chat_id=GROUP,
                                from_user=ANONYMOUS_ADMIN, sender_chat=chat)  # fmt: skip
    assert (await reply_to(telegram, update)).startswith("This chat has 1 of today's 4")
    telegram.send_text("/seq 3 a cat", chat_id=OTHER)  # OTHER's own private chat: fine
    assert (await until_final(telegram, bot, 2)).status == Status.DONE
    assert runcomfy.count("submit") == 2
    assert (
        Settings.from_env(
            {**BASE_ENV, "DAILY_IMAGE_LIMIT_PER_CHAT": "10"}
        ).daily_image_limit_per_chat
        == 10
    )
    assert_clean(telegram, runcomfy)


async def test_pre_checkout_checks_the_allowlists_again(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    bot = await bots.start(STARS_PACKS=PACKS)
    invoice = await _buy(telegram)
    await bots.stop(bot)
    await bots.start(STARS_PACKS=PACKS, ALLOWED_USER_IDS=str(OTHER))
    answer = await _checkout(telegram, invoice["payload"], 75)
    assert answer == {
        "pre_checkout_query_id": answer["pre_checkout_query_id"],
        "ok": False,
        "error_message": "Sorry, this bot is not available to you.",
    }
    assert_clean(telegram, runcomfy)


async def test_a_payment_the_database_cannot_take_is_promised_then_credited_once(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots, env: dict[str, str]
) -> None:
    """SQLite stays locked when the payment arrives: the buyer is told not to pay again, and the
    credits arrive once the lock is gone (was: "please try again" and nothing credited)."""
    bot = await bots.start(STARS_PACKS=PACKS)
    invoice = await _buy(telegram)
    assert (await _checkout(telegram, invoice["payload"], 75))["ok"] is True
    lock = sqlite3.connect(env["DATABASE_PATH"], timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")
        update = telegram.pay(invoice["payload"], 75, charge_id="stx-locked")
        text = await reply_to_service(telegram, update)
        assert "Do not pay again: it will be credited" in text and "try again" not in text
        assert bot.store.balance(ADA_ID) == 0
    finally:
        lock.rollback()
        lock.close()
    await telegram.wait_for(lambda: _thanks(telegram) == 1)
    assert bot.store.balance(ADA_ID) == 10
    assert_clean(telegram, runcomfy)


async def reply_to_service(telegram: FakeTelegram, update: dict[str, Any]) -> str:
    """The bot's next message in the chat of a service message (it does not quote them)."""
    chat_id = update["message"]["chat"]["id"]
    before = len(_texts_to(telegram, chat_id))
    texts = await telegram.wait_for(lambda: len(t := _texts_to(telegram, chat_id)) > before and t)
    return str(texts[before])


async def test_repeated_taps_on_a_pack_send_one_invoice_reused_until_it_expires(
    telegram: FakeTelegram, runcomfy: FakeRunComfy, bots: Bots
) -> None:
    """40 taps at once: one invoice, one row, 39 short answers (was 40 invoices and rows)."""
    bot = await bots.start(STARS_PACKS=PACKS)
    first = await _buy(telegram)
    reply = next(
        c.response["result"]
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if "reply_markup" in c.params
    )
    taps = [telegram.press_button(reply, "v1:buy:10") for _ in range(39)]
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 40)
    assert len(telegram.invoices) == 1
    assert {telegram.callback_answers[t["callback_query"]["id"]].get("text") for t in taps} == {
        "I sent you this invoice a moment ago: it is in our private chat."
    }
    rows = lambda: bot.store.db.execute("SELECT count(*) FROM invoices").fetchone()[0]  # noqa: E731
    assert rows() == 1
    # A minute later the same open invoice is sent again, no new row.
    with bot.store.db.conn:
        bot.store.db.execute("UPDATE invoices SET sent_at = sent_at - 61")
    telegram.press_button(reply, "v1:buy:10")
    await telegram.wait_for(lambda: len(telegram.invoices) == 2)
    assert telegram.invoices[1]["payload"] == first["payload"] and rows() == 1
    # Another pack is another invoice; a paid invoice is never reused.
    telegram.press_button(reply, "v1:buy:50")
    await telegram.wait_for(lambda: len(telegram.invoices) == 3)
    await _pay(telegram, first)
    with bot.store.db.conn:
        bot.store.db.execute("UPDATE invoices SET sent_at = sent_at - 61")
    telegram.press_button(reply, "v1:buy:10")
    await telegram.wait_for(lambda: len(telegram.invoices) == 4)
    assert telegram.invoices[3]["payload"] != first["payload"] and rows() == 3
    # Expired invoices are pruned.
    with bot.store.db.conn:
        bot.store.db.execute(
            "UPDATE invoices SET expires_at = ?, sent_at = 0", [time.time() - 7200]
        )
    telegram.press_button(reply, "v1:buy:10")
    await telegram.wait_for(lambda: len(telegram.invoices) == 5)
    assert rows() == 1
    assert_clean(telegram, runcomfy)


async def test_a_payment_refused_by_sqlite_survives_a_stop_and_is_credited_at_the_next_start(
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    process_env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """The real process: SQLite stays locked from the payment until after SIGTERM. The payment
    waits in a file next to the database and is credited, once, at the next start."""
    env = {**process_env, "STARS_PACKS": PACKS}
    first = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    lock = sqlite3.connect(env["DATABASE_PATH"], timeout=5)
    try:
        invoice = await _buy(telegram)
        assert (await _checkout(telegram, invoice["payload"], 75))["ok"] is True
        lock.execute("BEGIN IMMEDIATE")
        update = telegram.pay(invoice["payload"], 75, charge_id="stx-journal")
        assert "Do not pay again" in await reply_to_service(telegram, update)
        first.terminate()
        assert await first.wait() == 0
    finally:
        lock.rollback()
        lock.close()
        if not first.exited():
            first.kill()
    journal = Path(env["DATABASE_PATH"] + ".unrecorded-payments")
    assert _mode(journal) == 0o600
    assert _db(env, "SELECT count(*) FROM payments") == [(0,)]
    again = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        await telegram.wait_for(lambda: _thanks(telegram) == 1, timeout=15)
    finally:
        again.terminate()
        await again.wait()
    assert _db(env, "SELECT balance FROM credits") == [(10,)]
    assert _mode(journal) is None  # recorded: the file is gone


def _mode(path: Path) -> int | None:
    """The file's permission bits, or None if there is no such file."""
    return path.stat().st_mode & 0o777 if path.exists() else None


async def test_one_refund_loop_at_a_time_whoever_starts_it() -> None:
    """A /refund that gets no answer starts the loop that asks about every pending refund; a
    second one (or the start's) while it runs joins it instead of asking Telegram again."""
    background, turns = Background(), []
    release = asyncio.Event()

    async def loop(name: str) -> None:
        turns.append(name)
        await release.wait()

    assert background.run_once(loop("first"), "refunds")
    await asyncio.sleep(0)
    assert not background.run_once(loop("second"), "refunds")  # dropped, never started
    release.set()
    await asyncio.sleep(0.01)
    assert background.run_once(loop("third"), "refunds")  # the first has ended
    await asyncio.sleep(0)
    assert turns == ["first", "third"]
    await background.stop()
