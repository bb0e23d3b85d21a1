"""The studio's series: pages, a series opened, signed images and thumbnails, over real HTTP
against the real Application, its web server and the fakes; after a restart too."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from bot import thumbs
from bot.models import Status
from bot.store import Store
from bot.web.studio.service import Studio as WebStudio
from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import jpeg, record_job
from tests.studio_helpers import BOB_ID, Studio, header, run_job, start_studio
from tests.test_studio_api import assert_error, assert_secure_headers

GROUP = -1001234567890


def web_studio(studio: Studio) -> WebStudio:
    """The bot's own Studio object (its clock, its tokens)."""
    actions = studio.bot.services.studio
    assert actions is not None
    return actions.studio


async def test_a_page_lists_only_the_persons_series_newest_first_and_pages_on(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        first = await run_job(telegram, bot, "/seq 2 16:9 a lighthouse at dusk\nsecond line")
        group = await run_job(telegram, bot, "/seq 1 1:1 a red kite", chat_id=GROUP, user_id=ADA_ID)
        bobs = await run_job(telegram, bot, "/seq 1 1:1 bob's cat", chat_id=BOB_ID)
        last = await run_job(telegram, bot, "/seq 3 3:4 a quiet harbour")
        assert {j.status for j in (first, group, bobs, last)} == {Status.DONE}
        page = await studio.get("/app/api/series")
        assert page.status_code == 200, page.text
        assert_secure_headers(page)
        body = page.json()
        assert [s["id"] for s in body["items"]] == [last.id, group.id, first.id]
        assert body["next"] is None
        item = body["items"][2]
        assert item["title"] == "a lighthouse at dusk"
        assert item["count"] == 2 and item["ratio"] == "16:9" and item["mode"] == first.mode
        assert item["status"] == "done" and item["state_text"] == "✅ done"
        assert item["progress"] == 1.0
        assert abs(item["created_at"] - time.time()) < 60
        assert [t["index"] for t in item["thumbs"]] == [0, 1]
        assert all(t["url"].startswith("/seqbot/app/img/") for t in item["thumbs"])
        assert item["thumbs"][0]["alt"] == first.prompt
        assert item["episode"] is None and item["continues"] is None
        # Pages of one, each pointing at the next.
        seen, before = [], None
        while True:
            query = {"limit": "1", **({"before": str(before)} if before else {})}
            page = (await studio.get("/app/api/series", params=query)).json()
            seen += [s["id"] for s in page["items"]]
            before = page["next"]
            if before is None:
                break
        assert seen == [last.id, group.id, first.id]
        bob = (await studio.get("/app/api/series", user=BOB_ID)).json()
        assert [s["id"] for s in bob["items"]] == [bobs.id]
        ru = await studio.http.get("/app/api/series", headers=header(lang="ru"))
        assert ru.json()["items"][0]["state_text"] == "✅ готово"
        for query in ({"limit": "0"}, {"limit": "31"}, {"limit": "x"}, {"before": "-1"},
                      {"before": "1" * 30}, {"limit": "1e1"}):  # fmt: skip
            assert_error(await studio.get("/app/api/series", params=query), 400, "bad_request")
    finally:
        await studio.close()


async def test_a_series_opened_has_its_panels_details_and_actions(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        script = "/seq 3 16:9 seed 7 a fox's day:\n1. wakes up\n2. hunts\n3. sleeps"
        job = await run_job(telegram, bot, script)
        assert job.status == Status.DONE and job.panels
        response = await studio.get(f"/app/api/series/{job.id}")
        assert response.status_code == 200, response.text
        series = response.json()
        assert series["id"] == job.id and series["prompt"] == job.prompt
        assert [p["index"] for p in series["panels"]] == [0, 1, 2]
        assert [p["text"] for p in series["panels"]] == job.panels
        assert [t["alt"] for t in series["thumbs"]] == job.panels
        assert all(p["version"] == 1 for p in series["panels"])
        assert series["params"] == {"size": job.size, "mode": job.mode, "seed": job.seed}
        assert series["cost"] == job.cost and series["error"] is None
        assert series["refs"] == []
        assert {"again", "sheet", "zip", "originals", "hide"} <= set(series["actions"])
        # Another person's job, an unknown one, a malformed id: the same 404.
        assert_error(await studio.get(f"/app/api/series/{job.id}", user=BOB_ID), 404, "not_found")
        assert_error(await studio.get("/app/api/series/99999"), 404, "not_found")
        assert_error(await studio.get("/app/api/series/01"), 404, "not_found")
    finally:
        await studio.close()


def webp_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "WEBP"
        return img.size


async def test_images_are_signed_per_person_and_short_lived_and_thumbnails_are_small_webp(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    runcomfy.script_next(JobScript(size=(1280, 720)))
    try:
        # Ada has opened the studio: her panels' thumbnails are made at delivery.
        assert (await studio.get("/app/api/me")).status_code == 200
        job = await run_job(telegram, bot, "/seq 2 16:9 two boats")
        assert bot.store.thumb_indexes([job.id]) == {job.id: [0, 1]}
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        thumb = await studio.http.get(series["panels"][1]["thumb"].removeprefix("/seqbot"))
        assert thumb.status_code == 200
        assert thumb.headers["Content-Type"] == "image/webp"
        assert "private" in thumb.headers["Cache-Control"]
        assert_secure_headers(thumb)
        width, height = webp_size(thumb.content)
        assert (width, height) == (320, 180)
        full = await studio.http.get(series["panels"][1]["full"].removeprefix("/seqbot"))
        assert full.status_code == 200 and full.headers["Content-Type"] == "image/jpeg"
        kept = await bot.runner.delivery.originals.load(job.id, 1)
        assert full.content == kept
        url = series["panels"][1]["thumb"].removeprefix("/seqbot")
        token = url.rsplit("/", 1)[1]
        sig = token.rpartition(".")[2]
        tampered = [
            url.replace(f".{job.id}.1.", f".{job.id}.0.", 1),  # another panel, same signature
            url[:-1] + ("A" if sig[-1] != "A" else "B"),
            url.replace(f"/{ADA_ID}.", f"/{BOB_ID}.", 1),
            url + "x",
        ]
        for bad in tampered:
            response = await studio.http.get(bad)
            assert response.status_code == 404, bad
            assert response.headers["Content-Type"].startswith("text/plain")
        # Expired: the same URL an hour and more later.
        web = web_studio(studio)
        web.clock = lambda: time.time() + 3600 + 121
        assert (await studio.http.get(url)).status_code == 404
        web.clock = time.time
        assert (await studio.http.get(url)).status_code == 200
        # Bob cannot use Ada's job in a URL of his own either: the job is not his.
        bobs = web.tokens.make(BOB_ID, job.id, 0, "t", time.time())
        assert (await studio.http.get(f"/app/img/{bobs}")).status_code == 404
    finally:
        await studio.close()


async def test_after_a_restart_thumbnails_stay_and_full_size_comes_from_telegram(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    try:
        job = await run_job(telegram, studio.bot, "/seq 2 1:1 a paper crane")
        first = (await studio.get(f"/app/api/series/{job.id}")).json()
        before = (
            await studio.http.get(first["panels"][0]["thumb"].removeprefix("/seqbot"))
        ).content
    finally:
        await studio.close()
    await bots.stop()
    folder = studio.bot.runner.delivery.originals.folder
    shutil.rmtree(folder / str(job.id))  # the kept originals pruned meanwhile
    studio = await start_studio(bots)
    try:
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        thumb = await studio.http.get(series["panels"][0]["thumb"].removeprefix("/seqbot"))
        assert thumb.status_code == 200 and thumb.content == before
        files_before = len(telegram.calls_to("getFile"))
        full = await studio.http.get(series["panels"][0]["full"].removeprefix("/seqbot"))
        assert full.status_code == 200 and full.headers["Content-Type"] == "image/jpeg"
        assert len(telegram.calls_to("getFile")) == files_before + 1
        assert "/file/bot" not in full.text and "file_path" not in full.headers.get("Location", "")
        # What Telegram has of the photo: the image the bot sent.
        with Image.open(io.BytesIO(full.content)) as img:
            assert img.format == "JPEG"
    finally:
        await studio.close()


async def test_a_series_shows_its_reference_images_as_small_webp(
    bots: Bots, telegram: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _ = await record_job(bots.env, telegram, [jpeg((200, 30, 30)), jpeg((30, 30, 200))])
    store = Store(Path(bots.env["DATABASE_PATH"]))
    try:  # finished before this start: nothing is submitted (or fetched from PUBLIC_URL)
        store.update(job, status=Status.FAILED, error="stopped")
    finally:
        store.close()
    studio = await start_studio(bots)
    try:
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        assert [r["kind"] for r in series["refs"]] == ["photo", "photo"]
        assert series["panels"] == [] and series["error"] == "stopped"
        assert "again" in series["actions"] and "sheet" not in series["actions"]
        colours = []
        for ref in series["refs"]:
            response = await studio.http.get(ref["thumb"].removeprefix("/seqbot"))
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "image/webp"
            with Image.open(io.BytesIO(response.content)) as img:
                assert img.format == "WEBP" and max(img.size) <= 320
                colours.append(img.convert("RGB").getpixel((10, 10)))
        assert colours[0][0] > 150 and colours[1][2] > 150  # red first, then blue, in order
        # Asked for again (the page shown again, or a URL hammered): no decoding again.
        made = []
        real = thumbs.make
        monkeypatch.setattr(thumbs, "make", lambda *a: made.append(1) or real(*a))
        for ref in series["refs"] * 3:
            response = await studio.http.get(ref["thumb"].removeprefix("/seqbot"))
            assert response.status_code == 200 and response.content[:4] == b"RIFF"
        assert made == []
    finally:
        await studio.close()


async def test_a_running_series_shows_its_state_and_progress(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    # Five earlier jobs of one image took 20 s each to generate: the estimate counts on that.
    store = Store(Path(bots.env["DATABASE_PATH"]))
    try:
        row = {"chat_id": BOB_ID, "count": 1, "size": "1:1", "mode": "fast", "prompt": "x",
               "text": "x", "status": "done", "requester_id": BOB_ID, "created_at": 1.0,
               "started_at": 100.0, "completed_at": 120.0}  # fmt: skip
        for n in range(5):
            store.db["jobs"].insert({**row, "message_id": 1000 + n})
    finally:
        store.close()
    studio = await start_studio(bots)
    bot = studio.bot
    runcomfy.script_next(JobScript(queued_polls=1, running_seconds=30))
    try:
        telegram.send_text("/seq 1 1:1 a slow snail")
        await telegram.wait_for(
            lambda: (j := bot.runner.find(6)) is not None and j.status == Status.RUNNING
        )
        web = web_studio(studio)
        started = bot.runner.find(6)
        assert started is not None and started.started_at is not None
        web.clock = lambda: started.started_at + 10  # half way through the usual 20 s
        (item,) = (await studio.get("/app/api/series")).json()["items"]
        assert item["status"] == "running" and item["state_text"] == "🎨 generating"
        assert item["progress"] == 0.45
        assert item["thumbs"] == []
        opened = (await studio.get("/app/api/series/6")).json()
        assert opened["progress"] == 0.45 and opened["actions"] == []
    finally:
        await studio.close()


async def test_thumbnails_of_someone_who_never_opened_the_studio_are_made_when_first_shown(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    runcomfy.script_next(JobScript(size=(1280, 720)))
    try:
        job = await run_job(telegram, bot, "/seq 2 16:9 two kites")
        # No image work at delivery for a person who has never looked at the studio.
        assert bot.store.thumb_indexes([job.id]) == {}
        assert not bot.store.uses_studio(ADA_ID)
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        assert bot.store.uses_studio(ADA_ID)  # remembered, across restarts too (SQLite)
        thumb = await studio.http.get(series["panels"][1]["thumb"].removeprefix("/seqbot"))
        assert thumb.status_code == 200 and webp_size(thumb.content) == (320, 180)
        # Made once, from the kept file, and kept.
        assert bot.store.thumb(job.id, 1) == thumb.content
        assert bot.store.thumb_indexes([job.id]) == {job.id: [1]}
        # From now on Ada's jobs get theirs at delivery; Bob, who never opened it, still not.
        second = await run_job(telegram, bot, "/seq 1 1:1 a third kite")
        assert bot.store.thumb_indexes([second.id]) == {second.id: [0]}
        bobs = await run_job(telegram, bot, "/seq 1 1:1 bob's kite", chat_id=BOB_ID)
        assert bot.store.thumb_indexes([bobs.id]) == {}
    finally:
        await studio.close()
