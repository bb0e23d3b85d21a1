"""Flood isolation: how long other chats wait while Telegram holds one chat with a 429.

Run from the project folder (docs/PERFORMANCE.md has the numbers)::

    .venv/bin/python bench/flood.py                       # ~30 s
    .venv/bin/python bench/flood.py --retry-after 8 --checkout-wait 15 --rounds 3

The real Application (as the tests run it) against the loopback fake Bot API, payments on,
default flood settings. Each round:

1. Bob's ``/help`` reply meets a 429 with ``retry_after`` ``--retry-after``; then Ada sends
   ``/help``: the time from her message to her reply.
2. A group's reply meets a 429 with ``--checkout-wait``; then Ada presses Pay on an invoice and
   someone taps a button in that group: the time to the pre-checkout answer and the tap's answer.

Prints one markdown table row per measurement (median and worst over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from tests.conftest import RC_TOKEN, TG_TOKEN, RunningBot, make_env  # noqa: E402
from tests.fakes.runcomfy_api import FakeRunComfy  # noqa: E402
from tests.fakes.telegram_api import ADA_ID, Call, FakeTelegram  # noqa: E402

BOB = 222333444
GROUP = -1001234567890


def _reply(telegram: FakeTelegram, chat_id: int, after: float) -> Call | None:
    return next(
        (
            c
            for c in telegram.calls_to("sendMessage", ok_only=True)
            if c.params["chat_id"] == chat_id and c.at >= after
        ),
        None,
    )


async def _flood(telegram: FakeTelegram, chat_id: int, wait: int) -> None:
    """A /help in ``chat_id`` whose reply Telegram answers 429 (retry after ``wait``)."""
    before = len(telegram.calls)
    telegram.rate_limit_next("sendMessage", retry_after=wait, chat_id=chat_id)
    telegram.send_text("/help", chat_id=chat_id, user_id=BOB)
    await telegram.wait_for(lambda: any(c.status == 429 for c in telegram.calls[before:]))


async def _round(telegram: FakeTelegram, retry_after: int, checkout_wait: int) -> dict[str, float]:
    out: dict[str, float] = {}
    # 1. Bob's chat is held; Ada's /help.
    await _flood(telegram, BOB, retry_after)
    asked = time.monotonic()
    telegram.send_text("/help", chat_id=ADA_ID)
    reply = await telegram.wait_for(lambda: _reply(telegram, ADA_ID, asked), timeout=60)
    out["another chat's /help reply"] = reply.at - asked

    # 2. A group is held; Ada pays for an invoice and someone taps a button in the group.
    telegram.send_text("/buy", chat_id=ADA_ID)
    await telegram.wait_for(lambda: _reply(telegram, ADA_ID, reply.at + 0.001), timeout=60)
    buy = [
        c for c in telegram.calls_to("sendMessage", ok_only=True) if c.params["chat_id"] == ADA_ID
    ]
    invoices = len(telegram.invoices)
    telegram.press_button(buy[-1].response["result"], "v1:buy:10")
    await telegram.wait_for(lambda: len(telegram.invoices) > invoices, timeout=60)
    invoice = telegram.invoices[-1]
    tap_on = telegram.send_text("hello", chat_id=GROUP, user_id=BOB)["message"]["message_id"]
    await _flood(telegram, GROUP, checkout_wait)
    asked = time.monotonic()
    query = telegram.pre_checkout(invoice["payload"], total_amount=invoice["prices"][0]["amount"])
    qid = query["pre_checkout_query"]["id"]
    tap = telegram.press_button((GROUP, tap_on), "no-such-button", user_id=BOB)
    tid = tap["callback_query"]["id"]
    await telegram.wait_for(lambda: qid in telegram.checkout_answers, timeout=60)
    out["a buyer's pre-checkout answer"] = (
        _answered(telegram, "answerPreCheckoutQuery", qid) - asked
    )
    await telegram.wait_for(lambda: tid in telegram.callback_answers, timeout=60)
    out["a tap's answer in the held group"] = (
        _answered(telegram, "answerCallbackQuery", tid) - asked
    )
    # Let both held chats finish before the next round.
    await telegram.wait_for(lambda: not _pending(telegram), timeout=60)
    return out


def _answered(telegram: FakeTelegram, method: str, query_id: str) -> float:
    key = "pre_checkout_query_id" if method == "answerPreCheckoutQuery" else "callback_query_id"
    return next(c.at for c in telegram.calls_to(method, ok_only=True) if c.params[key] == query_id)


def _pending(telegram: FakeTelegram) -> bool:
    """A held /help reply not sent yet (each 429'd reply goes once its wait is over)."""
    floods = sum(1 for c in telegram.calls if c.status == 429)
    helps = sum(
        1
        for c in telegram.calls_to("sendMessage", ok_only=True)
        if c.params["chat_id"] in (BOB, GROUP) and c.params["text"].startswith("Hi! I turn")
    )
    return floods > helps


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--retry-after", type=int, default=8)
    parser.add_argument("--checkout-wait", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeTelegram(token=TG_TOKEN) as telegram, FakeRunComfy(token=RC_TOKEN) as rc:
            env = make_env(Path(tmp), telegram, rc)
            env.pop("PRIVATE_CHAT_MESSAGE_INTERVAL_SECONDS", None)  # the default pace
            env["STARS_PACKS"] = "10:75"
            bot = await RunningBot(Settings.from_env(env)).start()
            try:
                for _ in range(args.rounds):
                    one = await _round(telegram, args.retry_after, args.checkout_wait)
                    for name, value in one.items():
                        results.setdefault(name, []).append(value)
            finally:
                await bot.stop()
    print("| while one chat waits (429) | retry_after | median s | worst s | rounds |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        wait = args.retry_after if "help" in name else args.checkout_wait
        row = f"| {name} | {wait} s | {statistics.median(values):.2f} | {max(values):.2f} |"
        print(f"{row} {len(values)} |")


if __name__ == "__main__":
    asyncio.run(main())
