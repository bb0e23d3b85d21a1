"""The studio's guards, over real HTTP against the real bot: the allowlist before anything is shown,
bodies read only after sign-in and bounded, full-size images paced per person, a paid action
started once at a time, a set not hidden while one of its panels is being redone."""

from __future__ import annotations

import asyncio

import httpx

from bot.models import Status
from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import until_final
from tests.studio_helpers import BOB_ID, header, run_job, start_studio
from tests.test_studio_api import assert_error

GROUP = -1001234567890


async def test_someone_off_the_allowlist_sees_nothing(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots, ALLOWED_USER_IDS=str(BOB_ID))
    try:
        for path in ("/app/api/me", "/app/api/series", "/app/api/cast"):
            refused = await studio.get(path)  # Ada, signed by Telegram but not allowed
            assert_error(refused, 401, "unauthorized")
            assert refused.json()["error"]["message"] == "Sorry, this bot is not available to you."
        assert (await studio.get("/app/api/me", user=BOB_ID)).status_code == 200
        assert not studio.bot.store.uses_studio(ADA_ID)
    finally:
        await studio.close()


async def test_bodies_are_read_only_after_sign_in_and_only_so_far(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    try:
        job = await run_job(telegram, studio.bot, "/seq 1 1:1 a plum")
        path = f"/app/api/series/{job.id}/action"
        # A megabyte announced without a valid sign-in: refused from its headers alone, before
        # the body comes (the client sends ten bytes of it and waits for the answer).
        url = httpx.URL(studio.base)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            f"POST {url.path}{path} HTTP/1.1\r\nHost: {url.host}\r\n"
            f"Authorization: tma user=%7B%7D&hash={'0' * 64}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n".encode()
            + b"x" * 10
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status.startswith(b"HTTP/1.1 401"), status
        # Signed in: more than 8 KB is refused, chunked (no Content-Length) as well.
        assert_error(
            await studio.http.post(path, content=b"{" + b" " * 9000 + b"}", headers=header()),
            400,
            "bad_request",
        )

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b" " * 1000

        chunked = await studio.http.post(path, content=chunks(), headers=header())
        assert_error(chunked, 400, "bad_request")
        # JSON nested deeper than Python's stack: a plain 400, not a 503 and a traceback.
        deep = await studio.http.post(path, content=b"[" * 8000, headers=header())
        assert_error(deep, 400, "bad_request")
        assert studio.bot.store.db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    finally:
        await studio.close()


async def test_full_size_images_are_paced_per_person(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    try:
        job = await run_job(telegram, studio.bot, "/seq 1 1:1 a pear")
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        full = series["panels"][0]["full"].removeprefix("/seqbot")
        thumb = series["panels"][0]["thumb"].removeprefix("/seqbot")
        answers = await asyncio.gather(*(studio.http.get(full) for _ in range(30)))
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) >= 12 and 429 in statuses
        paced = next(a for a in answers if a.status_code == 429)
        assert int(paced.headers["Retry-After"]) >= 1
        # Thumbnails (small, kept) are not paced.
        assert {(await studio.http.get(thumb)).status_code for _ in range(20)} == {200}
    finally:
        await studio.close()


async def test_two_agains_at_once_start_one_job(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 1 1:1 a kite", chat_id=GROUP, user_id=ADA_ID)
        # The first message in Ada's private chat takes a while: the second tap comes meanwhile.
        telegram.delay_next("sendMessage", 0.5)
        path = f"/app/api/series/{job.id}/action"
        first, second = await asyncio.gather(
            studio.post(path, {"action": "again"}), studio.post(path, {"action": "again"})
        )
        assert sorted([first.status_code, second.status_code]) == [200, 400]
        refused = first if first.status_code == 400 else second
        assert refused.json()["error"]["message"] == "That is being started already."
        started = (first if first.status_code == 200 else second).json()["job_id"]
        assert (await until_final(telegram, bot, started)).status == Status.DONE
        assert bot.store.db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2
    finally:
        await studio.close()


async def test_a_set_is_not_hidden_while_one_of_its_panels_is_being_redone(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots, local=True)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 2 16:9 a fox:\n1. wakes\n2. naps")
        path = f"/app/api/series/{job.id}/action"
        runcomfy.hold("status")  # the redo stays unfinished until released
        answer = await studio.post(path, {"action": "redo", "panel": 1, "text": "same"})
        assert answer.status_code == 200, answer.text
        redo_id = answer.json()["job_id"]
        hide = await studio.post(path, {"action": "hide"})
        assert_error(hide, 400, "bad_request")
        assert "being redone" in hide.json()["error"]["message"]
        assert not bot.store.hidden(job.id)
        assert await bot.runner.delivery.originals.load(job.id, 0) is not None
        runcomfy.release("status")
        assert (await until_final(telegram, bot, redo_id)).status == Status.DONE
        assert (await studio.post(path, {"action": "hide"})).status_code == 200
        assert bot.store.hidden(job.id) and bot.store.hidden(redo_id)
        # /show of the hidden set sends it again, but makes no thumbnails for the studio.
        telegram.send_text(f"/show {job.id}")
        await telegram.wait_for(
            lambda: len(telegram.calls_to("sendMediaGroup", ok_only=True)) >= 2 or None
        )
        assert bot.store.thumb_indexes([job.id, redo_id]) == {}
    finally:
        await studio.close()
