"""The studio's web part over real HTTP: the real Application, its web server, the fakes.

PUBLIC_URL is https (Telegram opens only https Mini Apps); its proxy would forward to WEB_PORT on
loopback, where the tests speak plain HTTP to the bot's server directly.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bot.web.studio import static
from bot.web.studio.handlers import CSP
from tests.conftest import TG_TOKEN, Bots
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.studio_helpers import (
    BOB_ID,
    header,
    init_data,
    start_studio,
    static_folder,
)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers["Content-Security-Policy"] == CSP


def assert_secure_headers(response: httpx.Response) -> None:
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Server" not in response.headers


# ---- the page and its files ------------------------------------------------------------------


async def test_the_page_and_only_the_files_beside_it_are_served(
    bots: Bots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(static, "STATIC_DIR", static_folder(tmp_path))
    studio = await start_studio(bots)
    try:
        page = await studio.http.get("/app/")
        assert page.status_code == 200
        assert page.text.startswith("<!doctype html>")
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.headers["Cache-Control"] == "no-cache"
        assert_secure_headers(page)
        again = await studio.http.get("/app/", headers={"If-None-Match": page.headers["ETag"]})
        assert again.status_code == 304 and again.content == b""
        redirect = await studio.http.get("/app")
        assert redirect.status_code in (301, 302)
        assert redirect.headers["Location"].endswith("/seqbot/app/")
        js = await studio.http.get("/app/static/app.js")
        assert js.status_code == 200 and js.text == "export const x = 1;\n"
        assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert "max-age" in js.headers["Cache-Control"]
        assert_secure_headers(js)
        css = await studio.http.get("/app/static/app.css")
        assert css.headers["Content-Type"] == "text/css; charset=utf-8"
        for path in (
            "/app/static/.hidden.js",
            "/app/static/../outside.js",
            "/app/static/%2e%2e%2foutside.js",
            "/app/static/nope.js",
            "/app/static/",
            "/app/index.html",
        ):
            response = await studio.http.get(path)
            assert response.status_code == 404, path
            assert "outside" not in response.text and "secret" not in response.text
        refused = await studio.http.post("/app/", content=b"x")
        assert refused.status_code == 404
    finally:
        await studio.close()


async def test_no_studio_without_public_url(bots: Bots, telegram: FakeTelegram) -> None:
    bot = await bots.start()
    assert bot.services.web is None and bot.services.studio is None


# ---- who asks ---------------------------------------------------------------------------------


async def test_me_names_the_person_in_their_language_with_the_pages_texts(bots: Bots) -> None:
    studio = await start_studio(bots)
    try:
        me = await studio.http.get("/app/api/me", headers=header(lang="ru"))
        assert me.status_code == 200, me.text
        assert_secure_headers(me)
        body = me.json()
        assert body["user"] == {"id": ADA_ID, "first_name": "Ada", "lang": "ru"}
        assert body["private_chat_url"] == "https://t.me/" + studio.bot.app.bot.username
        assert body["texts"]["Your series"] == "Ваши серии"
        assert body["texts"]["Send sheet"] == "Прислать лист"
        en = (await studio.http.get("/app/api/me", headers=header(lang="de"))).json()
        assert en["user"]["lang"] == "en" and en["texts"]["Your series"] == "Your series"
    finally:
        await studio.close()


async def test_a_missing_forged_or_stale_init_data_gets_401_everywhere(bots: Bots) -> None:
    studio = await start_studio(bots, STUDIO_AUTH_MAX_AGE_SECONDS="600")
    http = studio.http
    try:
        good = init_data()
        forged = good.replace("Ada", "Eve")
        stale = init_data(auth_date=time.time() - 601)
        other_bot = init_data(token="1234567:another-bot-token-xxxxxxxxxx")
        for path in ("/app/api/me", "/app/api/series", "/app/api/series/1", "/app/api/nope"):
            assert_error(await http.get(path), 401, "unauthorized")
            assert_error(await http.get(path, headers={"Authorization": good}), 401, "unauthorized")
            assert_error(await http.get(path, headers=header(forged)), 401, "unauthorized")
            assert_error(await http.get(path, headers=header(other_bot)), 401, "unauthorized")
            assert_error(await http.get(path, headers=header(stale)), 401, "expired")
        ru = await http.get("/app/api/me", headers=header(init_data(lang="ru", auth_date=1)))
        assert_error(ru, 401, "expired")
        assert ru.json()["error"]["message"].startswith("Сеанс студии истёк")
        action = await http.post("/app/api/series/1/action", json={"action": "hide"})
        assert_error(action, 401, "unauthorized")
        assert (await http.get("/app/api/me", headers=header(good))).status_code == 200
        assert (await http.get("/app/api/nope", headers=header(good))).json()["error"][
            "code"
        ] == "not_found"
    finally:
        await studio.close()


async def test_the_token_never_shows_in_an_answer(bots: Bots) -> None:
    studio = await start_studio(bots)
    try:
        for path in ("/app/api/me", "/app/api/series", "/app/api/zzz"):
            response = await studio.get(path)
            assert TG_TOKEN.partition(":")[2] not in response.text
    finally:
        await studio.close()


async def test_each_person_is_held_to_the_pace_with_429(bots: Bots) -> None:
    studio = await start_studio(bots, STUDIO_REQUESTS_PER_SECOND="1", STUDIO_REQUEST_BURST="3")
    try:
        codes = [(await studio.get("/app/api/me")).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        limited = await studio.get("/app/api/me")
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await studio.get("/app/api/me", user=BOB_ID)).status_code == 200
    finally:
        await studio.close()
