"""``python -m bot doctor``: check the configuration, both tokens and the database; print a checklist."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

import httpx
from telegram import User
from telegram.error import InvalidToken, TelegramError

from bot.botapi import CheckedBot, CheckedRequest, UnreadableAnswer, answered, describe
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import redact
from bot.store import Store
from bot.web.server import nonce_path


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    ok: bool
    name: str
    detail: str

    def line(self) -> str:
        """``[ok] name: detail`` or ``[FAIL] name: detail``."""
        return f"{'[ok]  ' if self.ok else '[FAIL]'} {self.name}: {self.detail}"


async def check_telegram(settings: Settings) -> Check:
    """getMe (is the token accepted, is privacy mode on?), then getWebhookInfo.

    A failure names the call and how it failed: no answer, what Telegram answered, or an answer
    that is not the Bot API's.
    """
    timeout = min(settings.http_timeout, 15.0)
    bot = CheckedBot(
        settings.telegram_token,
        base_url=settings.telegram_api_base_url,
        base_file_url=settings.telegram_file_base_url,
        request=CheckedRequest(connect_timeout=min(timeout, 10.0), read_timeout=timeout),
    )
    me: User | None = None
    try:
        async with bot:  # getMe
            me = bot.bot
            hook = await bot.get_webhook_info()
    except InvalidToken:
        return Check(False, "Telegram", "the bot token was rejected; get a new one from @BotFather")
    except TelegramError as exc:
        return Check(False, "Telegram", _failed(me, exc, settings.telegram_api_base_url))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # python-telegram-bot could not read the result (getMe's is checked before it tries).
        unreadable = UnreadableAnswer(f"its result could not be read: {type(exc).__name__}")
        return Check(False, "Telegram", _failed(me, unreadable, settings.telegram_api_base_url))
    privacy = (
        "off: the bot sees every group message"
        if me.can_read_all_group_messages
        else "on: in groups the bot sees only /commands@" + (me.username or "bot")
    )
    detail = f"{_who(me)}; privacy mode {privacy}"
    if hook.url:
        detail += f"; webhook set to {hook.url}"
        if hook.last_error_message:
            detail += f" (last error: {hook.last_error_message})"
    return Check(True, "Telegram", detail)


def _who(me: User) -> str:
    return f"@{me.username} (id {me.id})"


def _failed(me: User | None, exc: TelegramError, base_url: str) -> str:
    """Which call failed (getMe, or getWebhookInfo after getMe answered) and how."""
    call = "getMe failed" if me is None else f"{_who(me)} answered getMe, but getWebhookInfo failed"
    how = describe(exc)
    if isinstance(exc, UnreadableAnswer):
        how += "; check TELEGRAM_API_BASE_URL (Telegram's is https://api.telegram.org/bot)"
    elif not answered(exc):
        how += f"; could not reach the Bot API at {base_url}"
    return f"{call}: {how}"


async def check_runcomfy(settings: Settings) -> Check:
    """Ask for the status of a request that does not exist: free, and 404 proves the token works."""
    url = f"{settings.runcomfy_api_base_url}/v1/requests/{uuid.uuid4()}/status"
    headers = {"Authorization": f"Bearer {settings.runcomfy_token}"}
    try:
        async with httpx.AsyncClient(timeout=min(settings.http_timeout, 15.0)) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Check(
            False,
            "RunComfy",
            f"could not reach {settings.runcomfy_api_base_url} ({type(exc).__name__})",
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("error_code") if isinstance(body, dict) else None
    if response.status_code in (401, 403) or code == 400004:
        return Check(
            False,
            "RunComfy",
            "the API token was rejected; create a new one in your RunComfy profile",
        )
    if response.status_code == 404:
        return Check(True, "RunComfy", f"token accepted by {settings.runcomfy_api_base_url}")
    return Check(
        False, "RunComfy", f"unexpected answer HTTP {response.status_code} from the status endpoint"
    )


def check_database(settings: Settings) -> Check:
    """The database opens, migrates and takes a write."""
    path = settings.database_path
    try:
        store = Store(path)
        try:
            with store.db.conn:
                store.db.execute("BEGIN IMMEDIATE")  # takes the write lock, then rolls back
                store.db.conn.rollback()
            unfinished = len(store.unfinished())
        finally:
            store.close()
    except (OSError, sqlite3.Error) as exc:
        return Check(False, "Database", f"{path} is not writable ({exc})")
    return Check(True, "Database", f"{path.resolve()} is writable; {unfinished} unfinished job(s)")


async def check_web(settings: Settings) -> Check:
    """PUBLIC_URL's health path, fetched from outside the bot (as RunComfy fetches references):
    did the running bot answer (the nonce it wrote beside the database at its start)?"""
    assert settings.public_url is not None
    url = f"{settings.public_url}/healthz"
    try:
        expected: str | None = nonce_path(settings.database_path).read_text().strip()
    except OSError:
        expected = None
    running = "" if expected else "; no bot using this DATABASE_PATH has started its web server"
    try:
        async with httpx.AsyncClient(timeout=min(settings.http_timeout, 15.0)) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return Check(
            False,
            "Web server",
            f"could not reach {url} ({type(exc).__name__}){running}; RunComfy could not fetch "
            f"reference images: the TLS proxy must forward PUBLIC_URL's path to "
            f"WEB_LISTEN:WEB_PORT ({settings.web_listen}:{settings.web_port})",
        )
    answer = response.text[:200].strip() if response.status_code == 200 else ""
    if answer.startswith("seqbot ") and expected and answer == f"seqbot {expected}":
        return Check(
            True, "Web server", f"this bot answers at {url}: RunComfy can fetch references"
        )
    if answer.startswith("seqbot "):
        return Check(
            False,
            "Web server",
            f"a seqbot answers at {url}, but not the one running with this database{running}",
        )
    if response.status_code != 200:
        return Check(
            False,
            "Web server",
            f"{url} answered HTTP {response.status_code}{running}; the TLS proxy must forward "
            f"PUBLIC_URL's path, unchanged, to {settings.web_listen}:{settings.web_port}",
        )
    return Check(False, "Web server", f"something other than this bot answers at {url}")


async def diagnose(env: Mapping[str, str]) -> list[Check]:
    """Every check, in order; the token checks are skipped when the configuration is broken."""
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        return [Check(False, "Configuration", str(exc))]
    mode = f"webhook at {settings.webhook_url}" if settings.webhook_url else "long polling"
    checks = [Check(True, "Configuration", f"complete; {mode}; log level {settings.log_level}")]
    telegram, runcomfy = await asyncio.gather(
        _guarded("Telegram", check_telegram(settings)),
        _guarded("RunComfy", check_runcomfy(settings)),
    )
    checks += [telegram, runcomfy, check_database(settings)]
    if settings.public_url:
        checks.append(await _guarded("Web server", check_web(settings)))
    # A detail may quote an answer or an error: none may carry a token.
    return [Check(c.ok, c.name, redact(c.detail, settings.secrets)) for c in checks]


async def _guarded(name: str, check: Awaitable[Check]) -> Check:
    """The check, or one [FAIL] line when the check itself breaks: never a traceback."""
    try:
        return await check
    except Exception as exc:
        return Check(False, name, f"the check itself failed ({type(exc).__name__}: {exc})")


def main(env: Mapping[str, str] | None = None) -> int:
    """Print the checklist; 0 when everything passed, 1 otherwise."""
    checks = asyncio.run(diagnose(os.environ if env is None else env))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print("All checks passed." if not failed else f"{len(failed)} check(s) failed.")
    return 1 if failed else 0
