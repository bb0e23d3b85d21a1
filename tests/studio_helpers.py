"""Helpers of the studio's tests: signed initData, a bot with the studio, its HTTP client."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from bot.web.studio import auth
from tests.conftest import TG_TOKEN, Bots, RunningBot
from tests.fakes.telegram_api import ADA, ADA_ID, FakeTelegram
from tests.helpers import PREFIX, refs_env, until_final
from tests.test_operations import free_port

PUBLIC = "https://studio.example.org" + PREFIX  # what Telegram's clients open (https)
BOB_ID = 555000111


def init_data(
    user_id: int = ADA_ID,
    *,
    lang: str = "en",
    auth_date: float | None = None,
    token: str = TG_TOKEN,
    **extra: str,
) -> str:
    """initData as Telegram signs it for this user."""
    user = {"id": user_id, "first_name": "Ada" if user_id == ADA_ID else "Bob"}
    user["language_code"] = lang
    fields = {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps(user, separators=(",", ":")),
        "auth_date": str(int(time.time() if auth_date is None else auth_date)),
        **extra,
    }
    return auth.sign(fields, token)


def header(data: str | None = None, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"tma {data if data is not None else init_data(**kw)}"}


class Studio:
    """A bot with the studio on, and an HTTP client for its web server."""

    def __init__(self, bot: RunningBot, port: int) -> None:
        self.bot = bot
        self.base = f"http://127.0.0.1:{port}{PREFIX}"
        self.http = httpx.AsyncClient(base_url=self.base, timeout=10)

    async def get(self, path: str, user: int = ADA_ID, **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=header(user_id=user), **kw)

    async def post(self, path: str, body: Any, user: int = ADA_ID) -> httpx.Response:
        return await self.http.post(path, json=body, headers=header(user_id=user))

    async def close(self) -> None:
        await self.http.aclose()


def studio_env(env: dict[str, str], port: int | None = None) -> dict[str, str]:
    """The test environment with an https PUBLIC_URL (as Telegram requires of a Mini App) whose
    proxy would forward to WEB_PORT on loopback, where the tests speak to it directly."""
    return {**env, "PUBLIC_URL": PUBLIC, "WEB_PORT": str(port or free_port())}


async def start_studio(bots: Bots, *, local: bool = False, **extra: str) -> Studio:
    """A bot with the studio. ``local``: PUBLIC_URL is http on loopback (no studio buttons,
    but the fake RunComfy can fetch reference images from it, as a job with references needs)."""
    port = free_port()
    bots.env.update(refs_env(bots.env, port) if local else studio_env(bots.env, port))
    bot = await bots.start(**extra)
    return Studio(bot, port)


async def run_job(
    telegram: FakeTelegram, bot: RunningBot, text: str, *, chat_id: int = ADA_ID, **kw: Any
) -> Any:
    """Send ``text`` (a /seq) and wait until its job is final; returns the job."""
    jobs_before = bot.store.db.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0
    telegram.send_text(text, chat_id=chat_id, **kw)
    await telegram.wait_for(
        lambda: (bot.store.db.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0) > jobs_before
    )
    job_id = bot.store.db.execute("SELECT max(id) FROM jobs").fetchone()[0]
    return await until_final(telegram, bot, job_id)


def static_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>Studio</title>")
    (folder / "app.js").write_text("export const x = 1;\n")
    (folder / "app.css").write_text("body{margin:0}\n")
    (folder / ".hidden.js").write_text("secret")
    (tmp_path / "outside.js").write_text("outside")
    return folder


__all__ = ["ADA", "ADA_ID"]
