"""Start-up's calls to Telegram: those that decide where updates go are waited for; the cosmetic
ones (the command menu) are made in the background, while updates are already handled.

Every failed try is one log line that says what happened: no answer at all, or what Telegram
answered (``HTTP 500: Internal Server Error``, ``HTTP 400: Bad Request: BOT_COMMAND_INVALID``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram.error import InvalidToken, RetryAfter, TelegramError

from bot.botapi import UnreadableAnswer, answered, describe, flood_wait, worth_retrying
from bot.config import Settings

log = logging.getLogger(__name__)

Call = Callable[[], Awaitable[object]]

REJECTED_MESSAGE = (
    "seqbot: Telegram rejected TELEGRAM_BOT_TOKEN (HTTP 401/404). "
    "Check the token and TELEGRAM_API_BASE_URL."
)
NOT_THE_BOT_API = (
    "seqbot: what answered {what} at TELEGRAM_API_BASE_URL is not the Bot API ({detail}). "
    "Check TELEGRAM_API_BASE_URL: Telegram's is https://api.telegram.org/bot"
)


class FatalStartupError(Exception):
    """A start-up failure that waiting does not fix; ``line`` says it all (the process exits 2)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class TokenRejectedError(FatalStartupError):
    """Telegram refused the bot token."""

    def __init__(self) -> None:
        super().__init__(REJECTED_MESSAGE)


class _Refused(Exception):
    """A cosmetic call Telegram answered with a 4xx: asking again would get the same answer."""

    def __init__(self, cause: TelegramError) -> None:
        super().__init__(describe(cause))
        self.cause = cause


def startup_backoff(settings: Settings) -> tuple[float, float]:
    """(first, longest) wait between start-up tries: 1 s to 60 s by default.

    Derived from the poll interval, like RunComfy's retries, so tests with fast polls stay fast.
    """
    return min(settings.poll_interval / 2, 1.0), min(settings.poll_interval * 30, 60.0)


def failure_line(what: str, tries: int, exc: TelegramError) -> str:
    """``Telegram did not answer getMe (try 2: …)`` or ``Telegram answered getMe with HTTP 500: …``."""
    if answered(exc):
        return f"Telegram answered {what} with {describe(exc)} (try {tries})"
    return f"Telegram did not answer {what} (try {tries}: {str(exc)[:200]})"


async def _until_taken(action: Call, what: str, settings: Settings, *, cosmetic: bool) -> None:
    """Call ``action`` until Telegram takes it, backing off; one warning line per failed try.

    Gating calls give up only on a rejected token or an answer that is not the Bot API's (both
    fatal); cosmetic calls also give up on any other 4xx (``_Refused``).
    """
    delay, longest = startup_backoff(settings)
    tries = 0
    while True:
        tries += 1
        try:
            await action()
        except InvalidToken as exc:
            if cosmetic:
                raise _Refused(exc) from None
            raise TokenRejectedError from None  # its message holds the token: drop it
        except UnreadableAnswer as exc:
            if cosmetic:
                raise _Refused(exc) from None
            raise FatalStartupError(NOT_THE_BOT_API.format(what=what, detail=exc.message)) from None
        except TelegramError as exc:
            if cosmetic and not worth_retrying(exc):
                raise _Refused(exc) from None
            wait = delay
            if isinstance(exc, RetryAfter):
                wait = max(delay, flood_wait(exc) or 0.0)
            log.warning(
                "%s; trying again in %.3g s%s",
                failure_line(what, tries, exc),
                wait,
                " (in the background: updates are handled meanwhile)" if cosmetic else "",
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, longest)
        else:
            if tries > 1:
                log.info("Telegram answered %s after %d tries", what, tries)
            return


async def patiently(action: Call, what: str, settings: Settings) -> None:
    """Call ``action`` until Telegram takes it, backing off: for the calls start-up waits on.

    Raises TokenRejectedError or FatalStartupError when waiting would not help.
    """
    await _until_taken(action, what, settings, cosmetic=False)


async def in_background(
    calls: Sequence[tuple[str, Call]], settings: Settings, *, otherwise: str
) -> bool:
    """Make cosmetic ``calls`` in turn, each retried through outages and 5xx until it is taken.

    A 4xx is a configuration problem: logged once, and neither that call nor the ones after it
    (the same menu in other languages, refused the same way) are tried again before the next
    start; ``otherwise`` says what that leaves. Cancelled when the bot stops. True when all were
    taken.
    """
    for what, call in calls:
        try:
            await _until_taken(call, what, settings, cosmetic=True)
        except _Refused as refused:
            log.warning(
                "Telegram refused %s: %s. A configuration problem, not tried again until the "
                "next start; %s",
                what,
                refused,
                otherwise,
            )
            return False
        except Exception:
            # A bug, not Telegram: the bot keeps running without it.
            log.exception("%s failed in the background; %s", what, otherwise)
            return False
    return True
