"""The studio's sign-in (initData, checked with real HMACs), its image tokens and its pace."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.web.studio import auth, tokens
from bot.web.studio.auth import AuthFailed, secret_key, verify
from bot.web.studio.ratelimit import RateLimit
from bot.web.studio.tokens import ImageTokens
from tests.conftest import TG_TOKEN
from tests.studio_helpers import init_data

KEY = secret_key(TG_TOKEN)
NOW = 1_760_000_000.0
DAY = 86400.0


def telegram_signed(fields: dict[str, str], token: str = TG_TOKEN) -> str:
    """Signed here the way Telegram's documentation spells it out, not with auth.sign."""
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    return urlencode(
        {**fields, "hash": hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()}
    )


def fields(**extra: str) -> dict[str, str]:
    user = {"id": 4242, "first_name": "Ada", "language_code": "ru", "username": "ada"}
    return {"user": json.dumps(user), "auth_date": str(int(NOW - 60)), "query_id": "Q1", **extra}


def test_a_valid_init_data_names_its_user() -> None:
    user = verify(telegram_signed(fields()), KEY, now=NOW, max_age=DAY)
    assert (user.id, user.first_name, user.language_code) == (4242, "Ada", "ru")
    assert user.auth_date == int(NOW - 60)


def test_auth_sign_matches_telegrams_algorithm() -> None:
    assert dict(parse_qsl(auth.sign(fields(), TG_TOKEN))) == dict(
        parse_qsl(telegram_signed(fields()))
    )


def _code(data: str | None, now: float = NOW, max_age: float = DAY) -> str:
    with pytest.raises(AuthFailed) as caught:
        verify(data, KEY, now=now, max_age=max_age)
    return caught.value.code


def test_a_forged_hash_a_changed_field_or_another_bots_token_is_refused() -> None:
    good = telegram_signed(fields())
    parts = dict(parse_qsl(good))
    forged = {**parts, "hash": "0" * 64}
    assert _code(urlencode(forged)) == "unauthorized"
    changed = {**parts, "user": parts["user"].replace("4242", "4243")}
    assert _code(urlencode(changed)) == "unauthorized"
    added = {**parts, "chat_type": "private"}  # a field Telegram did not sign
    assert _code(urlencode(added)) == "unauthorized"
    assert _code(telegram_signed(fields(), token="1234567:another-bot-token-xxxxxxxxxx")) == (
        "unauthorized"
    )
    no_hash = {k: v for k, v in parts.items() if k != "hash"}
    assert _code(urlencode(no_hash)) == "unauthorized"


def test_missing_or_malformed_init_data_is_unauthorized() -> None:
    for data in (None, "", "garbage", "a=1&a=2", "x" * 5000):
        assert _code(data) == "unauthorized"
    no_user = fields()
    del no_user["user"]
    assert _code(telegram_signed(no_user)) == "unauthorized"
    assert _code(telegram_signed(fields(user='{"id": "4242"}'))) == "unauthorized"
    assert _code(telegram_signed(fields(auth_date="soon"))) == "unauthorized"


def test_a_stale_init_data_is_expired_and_the_age_is_a_setting() -> None:
    old = telegram_signed(fields(auth_date=str(int(NOW - DAY - 1))))
    assert _code(old) == "expired"
    assert verify(old, KEY, now=NOW, max_age=2 * DAY).id == 4242
    assert _code(telegram_signed(fields()), max_age=30) == "expired"
    future = telegram_signed(fields(auth_date=str(int(NOW + 3600))))
    assert _code(future) == "unauthorized"


def test_the_hash_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    verify(telegram_signed(fields()), KEY, now=NOW, max_age=DAY)
    assert len(seen) == 1


def test_the_helper_init_data_verifies() -> None:
    assert verify(init_data(7), KEY, now=time.time(), max_age=DAY).id == 7


# ---- image tokens ------------------------------------------------------------------------------


def test_an_image_token_grants_one_image_to_one_person_until_it_expires() -> None:
    signer = ImageTokens(b"k" * 32, lifetime=3600)
    token = signer.make(4242, 17, 3, "t", NOW)
    grant = signer.check(token, NOW)
    assert grant is not None
    assert (grant.person, grant.job, grant.index, grant.kind) == (4242, 17, 3, "t")
    assert NOW + 3600 <= grant.expires <= NOW + 3600 + 120
    assert signer.check(token, grant.expires + 1) is None
    payload, _, sig = token.rpartition(".")
    for field, value in ((0, "4243"), (1, "18"), (2, "4"), (3, "f"), (4, str(grant.expires + 60))):
        parts = payload.split(".")
        parts[field] = value
        assert signer.check(".".join(parts) + "." + sig, NOW) is None
    assert ImageTokens(b"j" * 32, 3600).check(token, NOW) is None
    assert signer.check(token + "x", NOW) is None
    assert signer.check("../../etc/passwd", NOW) is None


def test_a_token_is_not_a_reference_signature() -> None:
    # Same key as the reference URLs, another label: neither signature stands for the other.
    from bot.web.references import ReferenceLinks

    key = b"k" * 32
    sig = ReferenceLinks("https://x", key)._sig(1, "17.3.t")
    assert sig != ImageTokens(key, 60)._sig("1.17.3.t")
    assert {"t", "f", "r", "c"} == tokens.KINDS


# ---- the pace --------------------------------------------------------------------------------


def test_each_person_gets_a_burst_then_the_rate() -> None:
    limit = RateLimit(rate=20, burst=40)
    assert all(limit.take(1, NOW) == 0 for _ in range(40))
    wait = limit.take(1, NOW)
    assert 0.04 < wait <= 0.05
    assert limit.take(2, NOW) == 0  # another person is not held back
    assert limit.take(1, NOW + 0.06) == 0
    assert limit.take(1, NOW + 0.06) > 0
