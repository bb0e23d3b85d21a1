"""Telegram Mini App sign-in: the ``initData`` a Mini App sends, checked as Telegram says (pure).

Telegram signs ``initData`` (a query string) with a key made from the bot token: the secret key is
HMAC-SHA256(key="WebAppData", msg=token), the hash is hex HMAC-SHA256(key=secret key,
msg=data-check string), where the data-check string is every field but ``hash``, as ``key=value``,
sorted by key, joined with newlines. Nothing in ``initDataUnsafe`` (the page's copy) is trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

MAX_INIT_DATA = 4096  # Telegram's initData is well under this: a longer one is not Telegram's
_HASH_RE = re.compile(r"[0-9a-f]{64}")
# Telegram allows a few seconds of clock difference the other way: a date in the future by more
# than this is not Telegram's either.
_FUTURE_SLACK = 300.0


class AuthFailed(Exception):
    """The initData is missing, forged (``unauthorized``) or too old (``expired``)."""

    def __init__(self, code: str, detail: str, language_code: str | None = None) -> None:
        super().__init__(detail)
        self.code = code  # "unauthorized" or "expired": the API's error code
        # Expired data was Telegram's: its user's language is known, for the message.
        self.language_code = language_code


@dataclass(frozen=True)
class WebAppUser:
    """Who opened the Mini App, as Telegram signed it."""

    id: int
    first_name: str
    language_code: str | None
    auth_date: int


def secret_key(token: str) -> bytes:
    """HMAC-SHA256(key="WebAppData", msg=bot token): the key initData is signed with."""
    return hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()


def sign(fields: dict[str, str], token: str) -> str:
    """``fields`` as Telegram would send them: a query string with its ``hash`` (for tests and
    tools: the bot itself only checks)."""
    fields = {k: v for k, v in fields.items() if k != "hash"}
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    digest = hmac.new(secret_key(token), check.encode(), hashlib.sha256).hexdigest()
    return urlencode({**fields, "hash": digest})


def verify(init_data: str | None, key: bytes, *, now: float, max_age: float) -> WebAppUser:
    """The person ``init_data`` names, if Telegram signed it with ``key`` (:func:`secret_key`)
    no more than ``max_age`` seconds before ``now``. Raises AuthFailed."""
    if not init_data:
        raise AuthFailed("unauthorized", "no initData")
    if len(init_data) > MAX_INIT_DATA:
        raise AuthFailed("unauthorized", "initData too long")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise AuthFailed("unauthorized", "initData is not a query string") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise AuthFailed("unauthorized", "a field is repeated")
    given = fields.pop("hash", "")
    if not _HASH_RE.fullmatch(given):
        raise AuthFailed("unauthorized", "no hash")
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    expected = hmac.new(key, check.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthFailed("unauthorized", "wrong hash")
    # Signed by Telegram from here on; still checked, never assumed.
    auth_text = fields.get("auth_date", "")
    if not auth_text.isascii() or not auth_text.isdigit() or len(auth_text) > 12:
        raise AuthFailed("unauthorized", "no auth_date")
    auth_date = int(auth_text)
    if auth_date > now + _FUTURE_SLACK:
        raise AuthFailed("unauthorized", "auth_date in the future")
    user = _user(fields.get("user"), auth_date)
    if now - auth_date > max_age:
        raise AuthFailed("expired", "auth_date too old", user.language_code)
    return user


def _user(raw: str | None, auth_date: int) -> WebAppUser:
    try:
        user = json.loads(raw or "")
    except ValueError:
        raise AuthFailed("unauthorized", "no user") from None
    if not isinstance(user, dict):
        raise AuthFailed("unauthorized", "no user")
    user_id = user.get("id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**53:
        raise AuthFailed("unauthorized", "no user id")
    name = user.get("first_name")
    lang = user.get("language_code")
    return WebAppUser(
        id=user_id,
        first_name=name[:64] if isinstance(name, str) else "",
        language_code=lang[:16] if isinstance(lang, str) else None,
        auth_date=auth_date,
    )
