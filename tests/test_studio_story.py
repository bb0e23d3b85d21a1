"""➡️ Continue and ✏️ Redo panel from the studio: the story's own calls, in the private chat; a
redone panel shows as its set's latest version, never as a series of its own."""

from __future__ import annotations

import time

from bot.models import Status
from tests.conftest import Bots
from tests.fakes.runcomfy_api import EDIT_SUBMIT_PATH, FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import until_final
from tests.studio_helpers import BOB_ID, run_job, start_studio
from tests.test_studio_api import assert_error

GROUP = -1001234567890


async def test_continue_and_redo_from_the_studio(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots, local=True)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 3 16:9 a fox's day:\n1. wakes\n2. hunts\n3. naps")
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        assert {"continue", "redo"} <= set(series["actions"])
        path = f"/app/api/series/{job.id}/action"
        assert_error(await studio.post(path, {"action": "continue"}), 400, "bad_request")
        assert_error(
            await studio.post(path, {"action": "redo", "panel": 7, "text": "same"}),
            400,
            "bad_request",
        )
        answer = await studio.post(path, {"action": "redo", "panel": 1, "text": "hunts at night"})
        assert answer.status_code == 200, answer.text
        redo_id = answer.json()["job_id"]
        assert answer.json()["message"] == f"Job #{redo_id} started: see the chat."
        redo = await until_final(telegram, bot, redo_id)
        assert redo.status == Status.DONE and redo.redo_of == job.id and redo.redo_panel == 1
        assert redo.chat_id == ADA_ID and redo.requester_id == ADA_ID
        assert any(c.path == EDIT_SUBMIT_PATH for c in runcomfy.calls if c.endpoint == "submit")
        # The set shows the new version of panel 2; the redo is no series of its own.
        page = (await studio.get("/app/api/series")).json()["items"]
        assert [s["id"] for s in page] == [job.id]
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        panel = series["panels"][1]
        assert panel["version"] == 2 and panel["text"] == "hunts at night"
        assert f".{redo_id}.0." in panel["thumb"] and f".{redo_id}.0." in panel["full"]
        assert page[0]["thumbs"][1]["url"] == panel["thumb"]
        thumb = await studio.http.get(panel["thumb"].removeprefix("/seqbot"))
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
        assert series["panels"][0]["version"] == 1
        assert_error(await studio.get(f"/app/api/series/{redo_id}"), 404, "not_found")

        answer = await studio.post(path, {"action": "continue", "text": "the fox sleeps"})
        assert answer.status_code == 200, answer.text
        episode = await until_final(telegram, bot, answer.json()["job_id"])
        assert episode.status == Status.DONE and episode.continues == job.id
        item = (await studio.get("/app/api/series")).json()["items"][0]
        assert item["id"] == episode.id and item["continues"] == job.id and item["episode"] == 2
    finally:
        await studio.close()


async def test_a_panel_redone_by_someone_else_in_a_group_shows_to_the_sets_owner(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots, local=True)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 2 1:1 two moons", chat_id=GROUP, user_id=ADA_ID)
        bob = await studio.post(
            f"/app/api/series/{job.id}/action", {"action": "redo", "panel": 0, "text": "same"}
        )
        # Bob may not redo Ada's set from his studio: it is not his.
        bobs = await studio.post(
            f"/app/api/series/{job.id}/action", {"action": "redo", "panel": 0, "text": "x"}, BOB_ID
        )
        assert_error(bobs, 404, "not_found")
        redo = await until_final(telegram, bot, bob.json()["job_id"])
        assert redo.status == Status.DONE
        # As if Bob had redone it with the group's button: the version is his job.
        with bot.store.db.conn:
            bot.store.db.execute(
                "UPDATE jobs SET requester_id = ?, user_id = ? WHERE id = ?",
                [BOB_ID, BOB_ID, redo.id],
            )
        series = (await studio.get(f"/app/api/series/{job.id}")).json()
        thumb = series["panels"][0]["thumb"].removeprefix("/seqbot")
        assert f".{redo.id}.0." in thumb
        assert (await studio.http.get(thumb)).status_code == 200
        web = bot.services.studio
        assert web is not None
        token = web.studio.tokens.make(BOB_ID, redo.id, 0, "t", time.time())
        assert (await studio.http.get(f"/app/img/{token}")).status_code == 404
        assert (await studio.get("/app/api/series", user=BOB_ID)).json()["items"] == []
    finally:
        await studio.close()
