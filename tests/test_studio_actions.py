"""The studio's actions: the chat buttons' own code, landing in the person's private chat."""

from __future__ import annotations

from bot.models import Status
from tests.conftest import Bots
from tests.fakes.runcomfy_api import FakeRunComfy
from tests.fakes.telegram_api import ADA_ID, FakeTelegram
from tests.helpers import until_final
from tests.studio_helpers import BOB_ID, run_job, start_studio
from tests.test_studio_api import assert_error

GROUP = -1001234567890


def sheets_in(telegram: FakeTelegram, chat_id: int) -> list:
    return [
        c
        for c in telegram.calls_to("sendPhoto", ok_only=True)
        if c.params["chat_id"] == chat_id and "🗂" in c.params.get("caption", "")
    ]


async def test_send_sheet_lands_as_a_photo_in_the_private_chat(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 3 16:9 three pears")
        answer = await studio.post(f"/app/api/series/{job.id}/action", {"action": "sheet"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "ok": True,
            "message": "Making the contact sheet…",
            "job_id": None,
        }
        (sheet,) = await telegram.wait_for(lambda: sheets_in(telegram, ADA_ID) or None)
        # In the job's own chat: under its follow-up, as the button's sheet is.
        assert sheet.params["reply_parameters"]["message_id"] == job.actions_message_id
        # Right after, the same as a second tap: nothing is made twice.
        again = await studio.post(f"/app/api/series/{job.id}/action", {"action": "sheet"})
        assert again.json()["message"] == "The contact sheet is being made or was sent above."
        assert len(sheets_in(telegram, ADA_ID)) == 1
    finally:
        await studio.close()


async def test_a_group_jobs_sheet_and_originals_go_to_the_private_chat_not_the_group(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 2 1:1 a kite", chat_id=GROUP, user_id=ADA_ID)
        assert job.chat_id == GROUP and job.requester_id == ADA_ID
        sheet = await studio.post(f"/app/api/series/{job.id}/action", {"action": "sheet"})
        assert sheet.status_code == 200, sheet.text
        (photo,) = await telegram.wait_for(lambda: sheets_in(telegram, ADA_ID) or None)
        # It answers a first message in the private chat that names the group's job.
        (anchor,) = [
            c
            for c in telegram.calls_to("sendMessage", ok_only=True)
            if c.params["chat_id"] == ADA_ID
            and c.params["text"] == f"🗂 Sheet, from the studio: job #{job.id}"
        ]
        assert (
            photo.params["reply_parameters"]["message_id"]
            == (anchor.response["result"]["message_id"])
        )
        assert sheets_in(telegram, GROUP) == []
        originals = await studio.post(f"/app/api/series/{job.id}/action", {"action": "originals"})
        assert originals.json()["message"] == "Sending the original files…"

        def documents() -> list:
            return [
                c
                for c in telegram.calls_to("sendMediaGroup", ok_only=True)
                if c.params["chat_id"] == ADA_ID
            ]

        (album,) = await telegram.wait_for(lambda: documents() or None)
        assert all(m["type"] == "document" for m in album.params["media"])
        # The documents' file_ids are kept for the next Originals; the private chat's message
        # ids are not recorded as the group's images.
        row = await telegram.wait_for(
            lambda: (r := bot.store.get(job.id)) is not None and len(r.originals) == 2 and r
        )
        messages = {k for k in row.image_keys if k.startswith("m:")}
        assert messages == {k for k in job.image_keys if k.startswith("m:")}
    finally:
        await studio.close()


async def test_a_group_jobs_files_are_refused_at_once_when_the_private_chat_is_closed(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    try:
        job = await run_job(
            telegram, studio.bot, "/seq 2 1:1 a kite", chat_id=GROUP, user_id=ADA_ID
        )
        telegram.block_chat(ADA_ID)  # never started, or blocked: Telegram answers 403
        for action in ("sheet", "zip", "originals"):
            answer = await studio.post(f"/app/api/series/{job.id}/action", {"action": action})
            assert_error(answer, 400, "bad_request")
            assert "press Start" in answer.json()["error"]["message"]
        assert sheets_in(telegram, GROUP) == [] and sheets_in(telegram, ADA_ID) == []
        assert telegram.calls_to("sendDocument") == []
        private = [c for c in telegram.calls_to("sendMediaGroup") if c.params["chat_id"] == ADA_ID]
        assert private == []
    finally:
        await studio.close()


async def test_again_starts_a_new_job_in_the_private_chat_once(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 2 4:3 a night train", chat_id=GROUP)
        answer = await studio.post(f"/app/api/series/{job.id}/action", {"action": "again"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        new_id = body["job_id"]
        assert body["ok"] is True and body["message"] == f"Job #{new_id}: same settings, new seed."
        new = await until_final(telegram, bot, new_id)
        assert new.status == Status.DONE
        assert new.chat_id == ADA_ID and new.requester_id == ADA_ID
        assert (new.prompt, new.count, new.size) == (job.prompt, job.count, job.size)
        anchor = next(
            c
            for c in telegram.calls_to("sendMessage", ok_only=True)
            if c.response["result"]["message_id"] == new.message_id
            and c.params["chat_id"] == ADA_ID
        )
        assert f"job #{job.id}" in anchor.params["text"]
        repeat = await studio.post(f"/app/api/series/{job.id}/action", {"action": "again"})
        assert repeat.json() == {
            "ok": True,
            "message": f"Already started: job #{new_id}.",
            "job_id": new_id,
        }
        assert bot.store.db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2
        # Limits are the chat's: with today's images spent, the studio says so and starts nothing.
    finally:
        await studio.close()


async def test_again_keeps_the_daily_limit(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots, DAILY_IMAGE_LIMIT_PER_USER="3")
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 2 1:1 a snail")
        refused = await studio.post(f"/app/api/series/{job.id}/action", {"action": "again"})
        assert_error(refused, 400, "bad_request")
        assert "limit" in refused.json()["error"]["message"].lower()
        assert bot.store.db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    finally:
        await studio.close()


async def test_hide_leaves_the_studio_deletes_the_kept_files_and_survives_a_restart(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        hidden = await run_job(telegram, bot, "/seq 2 1:1 an old draft")
        kept = await run_job(telegram, bot, "/seq 1 1:1 a keeper")
        series = (await studio.get(f"/app/api/series/{hidden.id}")).json()
        answer = await studio.post(f"/app/api/series/{hidden.id}/action", {"action": "hide"})
        assert answer.status_code == 200, answer.text
        assert "hidden" in answer.json()["message"]
        folder = bot.runner.delivery.originals.folder
        assert not (folder / str(hidden.id)).exists() and (folder / str(kept.id)).exists()
        ids = [s["id"] for s in (await studio.get("/app/api/series")).json()["items"]]
        assert ids == [kept.id]
        assert_error(await studio.get(f"/app/api/series/{hidden.id}"), 404, "not_found")
        thumb = series["panels"][0]["thumb"].removeprefix("/seqbot")
        assert (await studio.http.get(thumb)).status_code == 404
    finally:
        await studio.close()
    await bots.stop()
    studio = await start_studio(bots)
    try:
        ids = [s["id"] for s in (await studio.get("/app/api/series")).json()["items"]]
        assert ids == [kept.id]
        assert studio.bot.store.hidden(hidden.id)
    finally:
        await studio.close()


async def test_bad_actions_and_another_persons_job(
    bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    studio = await start_studio(bots)
    bot = studio.bot
    try:
        job = await run_job(telegram, bot, "/seq 1 1:1 a pebble")
        path = f"/app/api/series/{job.id}/action"
        for body in (
            None,
            [],
            {"action": "explode"},
            {"action": "redo"},
            {"action": "redo", "panel": -1},
            {"action": "redo", "panel": True},
            {"action": "cast", "panel": 0},
            {"action": "cast", "panel": 0, "name": "x" * 33},
            {"action": "continue", "text": "x" * 4000},
        ):
            assert_error(await studio.post(path, body), 400, "bad_request")
        big = await studio.http.post(
            path,
            content=b'{"action":"again","text":"' + b"x" * 9000 + b'"}',
            headers={"Authorization": (await _auth())},
        )
        assert_error(big, 400, "bad_request")
        assert_error(await studio.post(path, {"action": "sheet"}, user=BOB_ID), 404, "not_found")
        # Continue and Redo: tests/test_studio_story.py; Cast: tests/test_studio_cast.py.
        assert bot.store.db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    finally:
        await studio.close()


async def _auth() -> str:
    from tests.studio_helpers import init_data

    return "tma " + init_data()
