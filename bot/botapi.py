"""What the Bot API answered, made precise: whether Telegram answered at all, and how.

python-telegram-bot raises the same ``NetworkError`` for a refused connection and for a 500
answer, a ``TelegramError("Invalid server response")`` for a page that is not JSON, and a
``KeyError`` or ``TypeError`` for JSON that is not a Bot API answer. :class:`CheckedRequest`
(the HTTP client under every bot here) raises :class:`AnsweredError` and :class:`UnreadableAnswer`
instead, and :func:`check_result` catches a ``getMe`` that is not a bot, so start-up, the background calls and ``doctor`` can say what happened.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.tghttp import AiohttpRequest, AnswerTooBig

_DESCRIPTION_LIMIT = 200


class AnsweredError(NetworkError):
    """Telegram (or a proxy in front of it) answered with an HTTP error that python-telegram-bot
    has no class for: 5xx, a 429 without ``retry_after``, 413, a redirect.

    A NetworkError still, so every retry that handled these before handles them the same way.
    """

    def __init__(self, status: int, description: str) -> None:
        super().__init__(f"{description} ({status})")  # as python-telegram-bot says a 502 page
        self.status = status
        self.description = description


# python-telegram-bot's own classes for these statuses, keeping Telegram's description as it was
# sent: their message drops "Bad Request: " and changes the case ("Bot_command_invalid").
class RefusedBadRequest(BadRequest):
    """HTTP 400, with ``description`` as Telegram wrote it."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RefusedForbidden(Forbidden):
    """HTTP 403, with ``description`` as Telegram wrote it."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RefusedConflict(Conflict):
    """HTTP 409, with ``description`` as Telegram wrote it."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


_REFUSALS: dict[int, type[RefusedBadRequest | RefusedForbidden | RefusedConflict]] = {
    400: RefusedBadRequest,
    403: RefusedForbidden,
    409: RefusedConflict,
}


class UnreadableAnswer(TelegramError):
    """A successful HTTP answer that is not a Bot API answer: not JSON, no ``result``, or a
    ``getMe`` that is not a bot. What answered is not the Bot API (check the base URL)."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown HTTP status"


def _load(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8", "replace"))
    except ValueError:
        return None


def me_problem(result: object) -> str | None:
    """What makes a ``getMe`` result unusable (None: a bot user python-telegram-bot can read)."""
    if not isinstance(result, dict):
        return f"the result is a {type(result).__name__}, not a user"
    if not isinstance(result.get("id"), int) or isinstance(result.get("id"), bool):
        return "the user has no numeric id"
    if result.get("is_bot") is not True:
        return "the user is not a bot"
    for name in ("first_name", "username"):
        if not isinstance(result.get(name), str) or not result[name]:
            return f"the user has no {name}"
    return None


class CheckedRequest(AiohttpRequest):
    """python-telegram-bot's HTTP client (on aiohttp), raising :class:`AnsweredError` and
    :class:`UnreadableAnswer` where it would raise a vague error or crash."""

    async def do_request(self, url: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Send as usual; an HTTP error is raised with Telegram's description as it was sent
        (an AnsweredError where python-telegram-bot has no class for the status)."""
        code, payload = await super().do_request(url, *args, **kwargs)
        if 200 <= code <= 299 or code in (401, 404):
            return code, payload  # python-telegram-bot: InvalidToken, its message dropped anyway
        data = _load(payload)
        description = data.get("description") if isinstance(data, dict) else None
        parameters = data.get("parameters") if isinstance(data, dict) else None
        if isinstance(parameters, dict) and (
            parameters.get("retry_after") or parameters.get("migrate_to_chat_id")
        ):
            return code, payload  # python-telegram-bot raises RetryAfter or ChatMigrated
        if not isinstance(description, str) or not description:
            description = _phrase(code)  # a proxy's page: its text says nothing
        description = description[:_DESCRIPTION_LIMIT]
        refused = _REFUSALS.get(code)
        if refused is not None:
            raise refused(description)
        raise AnsweredError(code, description)

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        """The answer's JSON object; UnreadableAnswer when it is not a Bot API answer.

        Replaces python-telegram-bot's own, which logs the whole payload at ERROR with a
        traceback (and a misdirected base URL's page may echo the token).
        """
        data = _load(payload)
        if not isinstance(data, dict):
            kind = "not JSON" if data is None else f"JSON {type(data).__name__}, not an object"
            raise UnreadableAnswer(f"the answer is {kind}")
        if data.get("ok") is True and "result" not in data:
            raise UnreadableAnswer("the answer has no result")
        return data


def check_result(endpoint: str, result: object) -> None:
    """UnreadableAnswer for a ``getMe`` result python-telegram-bot could not read (it would
    raise a TypeError or KeyError from deep inside)."""
    if endpoint == "getMe" and (problem := me_problem(result)):
        raise UnreadableAnswer(f"getMe answered, but {problem}")


class CheckedBot(Bot):
    """A plain Bot (for ``doctor``) whose unreadable ``getMe`` is an UnreadableAnswer."""

    async def _post(self, endpoint: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        result = await super()._post(endpoint, data, **kw)
        check_result(endpoint, result)
        return result


async def edit_text(
    bot: Bot,
    *,
    chat_id: int,
    message_id: int,
    text: str,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> None:
    """``editMessageText`` for a caller that needs only success or failure.

    ``Bot.edit_message_text`` turns every answer into a ``Message`` (with its chat, user and
    entities: a few per cent of the bot's CPU under steady load, for status edits whose answer
    nobody reads). This takes the same way through the bot (``_post``: text limits, rate
    limiter, the checked HTTP client, the same errors) and only checks the answer's shape:
    True, or a message. Anything else is an UnreadableAnswer, as a ``Message`` that cannot be
    read would have been an error.
    """
    data: dict[str, Any] = {"chat_id": chat_id, "message_id": message_id, "text": text}
    if reply_markup is not None:
        data["reply_markup"] = reply_markup
    # Bot._post is python-telegram-bot's one way in for every method (TolerantBot overrides it).
    result = await bot._post("editMessageText", data)
    if result is not True and not (
        isinstance(result, dict) and isinstance(result.get("message_id"), int)
    ):
        raise UnreadableAnswer("editMessageText answered neither true nor a message")


_RETRY_AFTER_RE = re.compile(r"retry after ([0-9]+)", re.IGNORECASE)


def flood_wait(exc: BaseException) -> float | None:
    """Seconds Telegram asks to wait: a 429's ``retry_after`` (seconds, or a timedelta in newer
    python-telegram-bot), or an album's 400 that says "retry after N" (part of it may have been
    delivered); None for any other error."""
    if isinstance(exc, RetryAfter):
        asked = exc.retry_after
        return asked.total_seconds() if isinstance(asked, timedelta) else float(asked)
    if isinstance(exc, BadRequest) and (m := _RETRY_AFTER_RE.search(exc.message)):
        return float(m.group(1))
    return None


def status_of(exc: TelegramError) -> int | None:
    """The HTTP status Telegram answered with; None when no usable answer came."""
    if isinstance(exc, AnsweredError | AnswerTooBig):
        return exc.status
    if isinstance(exc, RetryAfter):
        return 429
    if isinstance(exc, BadRequest | ChatMigrated):
        return 400
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, InvalidToken):
        return 401  # or 404: python-telegram-bot does not say which
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, UnreadableAnswer):
        return 200
    return None


def answered(exc: TelegramError) -> bool:
    """True when Telegram (or something at its address) answered; False: no answer at all."""
    return status_of(exc) is not None


def worth_retrying(exc: TelegramError) -> bool:
    """No answer, a 5xx or a flood wait: asking again later may work. A 4xx answer will not."""
    status = status_of(exc)
    return status is None or status == 429 or status >= 500


def describe(exc: TelegramError) -> str:
    """How a call failed, in one short line without secrets (no URL, no payload)."""
    if isinstance(exc, UnreadableAnswer):
        return f"an answer that is not the Bot API's ({exc.message})"
    if isinstance(exc, InvalidToken):
        return "HTTP 401/404: the token was rejected"
    if isinstance(exc, RetryAfter):
        return f"HTTP 429: flood control, retry after {flood_wait(exc) or 0:g} s"
    status = status_of(exc)
    if status is not None:
        description = getattr(exc, "description", None) or exc.message
        return f"HTTP {status}: {description[:_DESCRIPTION_LIMIT]}"
    if isinstance(exc, TimedOut):
        return "no answer in time (timed out)"
    return f"no answer ({exc.message[:_DESCRIPTION_LIMIT]})"
