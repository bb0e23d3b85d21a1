"""The studio's Cast tab and "use a panel as a character": the cast's own checks and store."""

from __future__ import annotations

import io

from PIL import Image

from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.studio_helpers import BOB_ID, header, run_job, start_studio
from tests.test_studio_api import assert_error


async def test_a_panel_becomes_a_character_listed_with_its_thumbnail_and_removed(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    runcomfy.script_next(JobScript(size=(900, 1200)))
    try:
        job = await run_job(telegram, bot, "/seq 2 3:4 a knight and a dragon")
        assert "cast" in (await studio.get(f"/app/api/series/{job.id}")).json()["actions"]
        assert (await studio.get("/app/api/cast")).json() == {"items": []}
        path = f"/app/api/series/{job.id}/action"
        saved = await studio.post(path, {"action": "cast", "panel": 1, "name": "Bors"})
        assert saved.status_code == 200, saved.text
        assert saved.json()["message"].startswith("Saved Bors (1 image).")
        await telegram.wait_for(
            lambda: any(
                c.params["chat_id"] == ADA_ID and c.params["text"].startswith("Saved Bors")
                for c in telegram.calls_to("sendMessage", ok_only=True)
            )
        )
        (member,) = bot.store.cast_list(ADA_ID)
        (image,) = bot.store.cast_images(ADA_ID, member.id)
        kept = await bot.runner.delivery.originals.load(job.id, 1)
        assert kept is not None
        with Image.open(io.BytesIO(image.data)) as img:
            assert img.format == "JPEG" and img.size == (900, 1200)  # the panel itself, cleaned
        again = await studio.post(path, {"action": "cast", "panel": 0, "name": "bors"})
        assert_error(again, 400, "bad_request")
        assert "already have Bors" in again.json()["error"]["message"]
        listed = (await studio.get("/app/api/cast")).json()["items"]
        assert [(c["id"], c["name"], len(c["thumbs"])) for c in listed] == [(member.id, "Bors", 1)]
        thumb = await studio.http.get(listed[0]["thumbs"][0].removeprefix("/seqbot"))
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
        with Image.open(io.BytesIO(thumb.content)) as img:
            assert img.size == (240, 320)
        # Bob sees none of it and removes nothing.
        assert (await studio.get("/app/api/cast", user=BOB_ID)).json() == {"items": []}
        bob = header(user_id=BOB_ID)
        gone = await studio.http.delete(f"/app/api/cast/{member.id}", headers=bob)
        assert_error(gone, 404, "not_found")
        token = listed[0]["thumbs"][0].rsplit("/", 1)[1]
        assert (
            await studio.http.get(f"/app/img/{token.replace(str(ADA_ID), str(BOB_ID))}")
        ).status_code == 404
        removed = await studio.http.delete(f"/app/api/cast/{member.id}", headers=header())
        assert removed.status_code == 200 and removed.json() == {"ok": True}
        assert bot.store.cast_list(ADA_ID) == []
        assert (
            await studio.http.get(listed[0]["thumbs"][0].removeprefix("/seqbot"))
        ).status_code == 404
        again = await studio.http.delete(f"/app/api/cast/{member.id}", headers=header())
        assert_error(again, 404, "not_found")
        for bad in ({"action": "cast", "panel": 0, "name": "a b"},
                    {"action": "cast", "panel": 0, "name": "a/b\\c"}):  # fmt: skip
            assert_error(await studio.post(path, bad), 400, "bad_request")
    finally:
        await studio.close()


async def test_characters_are_off_when_the_bot_keeps_none(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots, CAST_MAX_PER_PERSON="0")
    try:
        job = await run_job(telegram, studio.bot, "/seq 1 1:1 a pear")
        actions = (await studio.get(f"/app/api/series/{job.id}")).json()["actions"]
        assert "cast" not in actions and "sheet" in actions
        refused = await studio.post(
            f"/app/api/series/{job.id}/action", {"action": "cast", "panel": 0, "name": "Pear"}
        )
        assert_error(refused, 400, "bad_request")
        assert refused.json()["error"]["message"] == "This cannot be done with job #1 now."
    finally:
        await studio.close()
