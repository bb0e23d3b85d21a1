"""Reference images on their way out: the web server publishes them at signed URLs, the submit
goes to edit-sequential, and the fake RunComfy fetches every URL over HTTP, as RunComfy does.

Jobs with references are recorded the way the intake does it (the row, then each file with
``save_ref``) before the bot starts, which resumes them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import signal
import socket
import stat
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bot import doctor
from bot.config import Settings
from bot.models import Status
from bot.web import references as web_refs
from bot.web.references import ReferenceLinks, load_key
from tests.conftest import TG_TOKEN, Bots, RunningBot
from tests.fakes.runcomfy_api import (
    EDIT_SUBMIT_PATH,
    SUBMIT_PATH,
    FakeRunComfy,
    JobScript,
    render_jpeg,
)
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import PREFIX, assert_clean, jpeg, record_job, refs_env, until_final
from tests.test_doctor import doctor as run_doctor
from tests.test_operations import SECRET, WebhookBot, free_port
from tests.test_process import BotProcess, process_env, read_job  # noqa: F401 - a fixture


def submits(runcomfy: FakeRunComfy, path: str) -> list[dict]:
    return [c.body for c in runcomfy.calls if c.endpoint == "submit" and c.path == path]


# ---- the signed links --------------------------------------------------------------------------


def test_a_link_is_an_hmac_of_job_and_reference_and_any_change_fails() -> None:
    key = b"k" * 32
    links = ReferenceLinks("https://bot.example.org/seqbot", key)
    url = links.url(7, "abcdefgh12")
    mac = hmac.new(key, b"7/abcdefgh12", hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(mac).decode().rstrip("=")[:32]
    assert url == f"https://bot.example.org/seqbot/refs/7/abcdefgh12/{sig}.jpg"
    assert links.check(7, "abcdefgh12", sig)
    flipped = ("A" if sig[5] != "A" else "B").join((sig[:5], sig[6:]))
    for job_id, ref_id, s in (
        (8, "abcdefgh12", sig),
        (7, "abcdefgh13", sig),
        (7, "abcdefgh12", flipped),
    ):
        assert not links.check(job_id, ref_id, s)
    assert not links.check(7, "abcdefgh12", sig[:31])
    assert not ReferenceLinks("https://x", b"other-key-" * 4).check(7, "abcdefgh12", sig)
    with pytest.raises(ValueError):
        links.url(7, "../etc/passwd")


def test_the_link_check_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(web_refs.hmac, "compare_digest", spy)
    links = ReferenceLinks("https://x", b"k" * 32)
    assert not links.check(1, "abcdefgh12", "A" * 32)
    assert compared and compared[0][1] == b"A" * 32


def test_the_key_is_made_once_owner_only_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "seqbot.sqlite3"
    key = load_key(db)
    path = tmp_path / "seqbot.sqlite3.webkey"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(db) == key  # a restart signs the same URLs


# ---- the whole way: submit, fetch, 404 after -------------------------------------------------


async def test_a_job_with_references_goes_to_edit_sequential_and_runcomfy_fetches_each_url(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    images = [jpeg((200, 10, 10)), jpeg((10, 200, 10)), jpeg((10, 10, 200))]
    job, refs = await record_job(env, telegram, images, count=3)
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    done = await until_final(telegram, bot, job.id)
    assert done.status == Status.DONE, done.error
    (body,) = submits(runcomfy, EDIT_SUBMIT_PATH)
    assert submits(runcomfy, SUBMIT_PATH) == []
    links = bot.runner.links
    assert links is not None
    assert body["images"] == [links.url(job.id, r.id) for r in refs]  # in the model's order
    assert body["sequential_image_generation_options"] == 3
    assert all(u.startswith(f"{env['PUBLIC_URL']}/refs/{job.id}/") for u in body["images"])
    fetched = runcomfy.ref_fetches
    assert [f.url for f in fetched] == body["images"]
    assert [f.body for f in fetched] == images  # exactly the kept files
    assert all(f.status == 200 and f.content_type == "image/jpeg" for f in fetched)
    assert not any(f.set_cookie for f in fetched)
    # The job is over: its URLs answer 404 from now on.
    async with httpx.AsyncClient() as client:
        after = await client.get(body["images"][0])
    assert after.status_code == 404 and after.content == b"Not Found\n"
    assert_clean(telegram, runcomfy)


async def test_a_reference_url_answers_only_while_its_job_runs_and_nothing_else_answers(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    images = [jpeg((200, 10, 10)), jpeg((10, 200, 10))]
    job, refs = await record_job(env, telegram, images)
    other, _ = await record_job(env, telegram, [jpeg((1, 2, 3))])
    # Job 1 waits in RunComfy's queue (whichever of the two is submitted first).
    runcomfy.script_when(
        lambda body: f"/refs/{job.id}/" in body["images"][0], JobScript(queued_seconds=60)
    )
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    await until_final(telegram, bot, other.id)
    await telegram.wait_for(lambda: (j := bot.store.get(job.id)) and j.status == Status.QUEUED)
    links = bot.runner.links
    assert links is not None
    url = links.url(job.id, refs[1].id)
    base = env["PUBLIC_URL"]
    sig = url.rsplit("/", 1)[1].removesuffix(".jpg")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    async with httpx.AsyncClient() as client:
        got = await client.get(url)
        assert got.status_code == 200 and got.content == images[1]
        assert got.headers["content-type"] == "image/jpeg"
        assert got.headers["cache-control"] == "no-store"
        assert "set-cookie" not in got.headers and "server" not in got.headers
        assert "etag" not in got.headers  # nothing to cache, and no hash of 1 MB per GET
        head = await client.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(images[1]))
        refused = {
            "tampered signature": await client.get(url.replace(sig, flipped)),
            "another job's number": await client.get(url.replace(f"/{job.id}/", f"/{other.id}/")),
            "a finished job, signed": await client.get(links.url(other.id, _[0].id)),
            "not this job's reference": await client.get(links.url(job.id, "notmine12345")),
            "no .jpg": await client.get(url.removesuffix(".jpg")),
            "trailing slash": await client.get(url + "/"),
            "a listing": await client.get(f"{base}/refs/{job.id}/"),
            "the refs folder": await client.get(f"{base}/refs/"),
            "outside the prefix": await client.get(url.replace(PREFIX, "")),
            "a leading zero": await client.get(url.replace(f"/{job.id}/", f"/0{job.id}/")),
            "POST": await client.post(url, content=b"x"),
            "PUT": await client.put(url, content=b"x"),
            "DELETE": await client.delete(url),
            "OPTIONS": await client.options(url),
        }
        assert {k: r.status_code for k, r in refused.items()} == {k: 404 for k in refused}
        assert not any(
            "set-cookie" in r.headers or "location" in r.headers for r in refused.values()
        )
        # Its file is gone (removed by hand, or by the cap): 404, not an error.
        gone = bot.runner.delivery.originals.ref_path(job.id, refs[0].id)
        await asyncio.to_thread(gone.unlink)
        assert (await client.get(links.url(job.id, refs[0].id))).status_code == 404
        assert (await client.get(url)).status_code == 200
        await bot.runner.cancel(bot.runner.find(job.id))  # type: ignore[arg-type]
        await telegram.wait_for(lambda: (j := bot.store.get(job.id)) and j.final)
        assert (await client.get(url)).status_code == 404  # expired with its job
    assert_clean(telegram, runcomfy)


async def test_a_missing_reference_file_fails_the_job_before_anything_is_sent(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    job, _ = await record_job(env, telegram, [jpeg((9, 9, 9))], keep_files=False)
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    done = await until_final(telegram, bot, job.id)
    assert done.status == Status.FAILED and done.request_id is None
    assert "Reference image 1 is no longer kept" in (done.error or "")
    assert "nothing was charged" in (done.error or "")
    assert runcomfy.count("submit") == 0 and runcomfy.ref_fetches == []


async def test_too_many_references_for_the_count_are_refused_before_the_submit(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    job, _ = await record_job(env, telegram, [jpeg((i, i, i)) for i in range(10)], count=6)
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    done = await until_final(telegram, bot, job.id)
    assert done.status == Status.FAILED
    assert done.error == "10 reference images leave room for at most 5 images; you asked for 6."
    assert runcomfy.count("submit") == 0


async def test_without_public_url_a_job_with_references_is_not_sent(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    job, _ = await record_job(env, telegram, [jpeg((9, 9, 9))])
    bot = await bots.start()  # PUBLIC_URL unset (say, removed before a restart)
    assert bot.services.web is None  # no web server at all in long polling without it
    done = await until_final(telegram, bot, job.id)
    assert done.status == Status.FAILED and "not set up for reference images" in (done.error or "")
    assert runcomfy.count("submit") == 0


async def test_a_text_job_keeps_todays_sequential_request(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    telegram.send_text("/seq 2 a red cup")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE
    (body,) = submits(runcomfy, SUBMIT_PATH)
    assert "images" not in body and submits(runcomfy, EDIT_SUBMIT_PATH) == []
    assert_clean(telegram, runcomfy)


# ---- nothing secret reaches RunComfy ------------------------------------------------------------


async def test_the_fake_flags_a_body_with_the_bot_token_or_a_telegram_file_url() -> None:
    """The check every test runs (conftest.FORBIDDEN_AT_RUNCOMFY, assert_clean) can fail."""
    from tests.conftest import FORBIDDEN_AT_RUNCOMFY, RC_TOKEN

    async with FakeRunComfy(token=RC_TOKEN, forbidden=FORBIDDEN_AT_RUNCOMFY) as fake:
        file_url = f"https://api.telegram.org/file/bot{TG_TOKEN}/photos/file_1.jpg"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {RC_TOKEN}"}) as client:
            body = {"text": "Generate 1 image", "images": [file_url]}
            await client.post(fake.base_url + EDIT_SUBMIT_PATH, json=body)
        assert any("forbidden string" in e for e in fake.errors)


async def test_no_body_sent_to_runcomfy_holds_the_token_or_a_telegram_file_url(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    job, _ = await record_job(env, telegram, [jpeg((5, 50, 5))])
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    await until_final(telegram, bot, job.id)
    sent = [json.dumps(c.body) + c.path for c in runcomfy.calls]
    assert sent and submits(runcomfy, EDIT_SUBMIT_PATH)
    for text in sent:
        assert TG_TOKEN not in text and TG_TOKEN.partition(":")[2] not in text
        assert "api.telegram.org" not in text and "/file/bot" not in text
    assert_clean(telegram, runcomfy)


# ---- RunComfy fetches late, after the bot was killed and started again ---------------------------


async def test_references_fetched_when_the_job_leaves_the_queue_after_a_sigkill_and_restart(
    process_env: dict[str, str],  # noqa: F811 - the fixture
    telegram: FakeTelegram,
    runcomfy: FakeRunComfy,
    tmp_path: Path,
) -> None:
    env = refs_env(process_env)
    images = [jpeg((120, 30, 30)), jpeg((30, 120, 30))]
    job, _ = await record_job(env, telegram, images)
    runcomfy.script_next(JobScript(queued_seconds=2.0, running_seconds=0.1, fetch_refs="start"))
    first = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    await telegram.wait_for(
        lambda: (j := read_job(env, job.id)) and j.status == Status.QUEUED, timeout=20
    )
    assert runcomfy.ref_fetches == []  # not at submit
    first.kill()
    assert await first.wait() == -signal.SIGKILL
    killed_at = time.monotonic()
    again = await BotProcess(env, tmp_path / "bot.log").start(telegram)
    try:
        done = await telegram.wait_for(
            lambda: (j := read_job(env, job.id)) and j.final and j, timeout=30
        )
    finally:
        again.terminate()
        await again.wait()
    assert done.status == Status.DONE, done.error
    (body,) = submits(runcomfy, EDIT_SUBMIT_PATH)
    fetched = runcomfy.ref_fetches
    assert [f.url for f in fetched] == body["images"]  # the URLs made before the kill
    assert [f.status for f in fetched] == [200, 200] and [f.body for f in fetched] == images
    assert all(f.at > killed_at for f in fetched)
    # The restarted bot may show the same status text the killed one last showed (it cannot know
    # which edit reached Telegram): Telegram's "not modified", harmless and handled.
    assert [e for e in telegram.errors if "message is not modified" not in e] == []
    assert [e for e in runcomfy.errors if not e.startswith("warning")] == []


# ---- one server: webhook and references on the same port; the health path and doctor ---------


async def test_in_webhook_mode_one_server_serves_updates_references_and_health(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    port = free_port()
    settings = Settings.from_env(
        {
            **refs_env(env, port),
            "WEBHOOK_URL": "https://bot.example.org/seqbot-hook",
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_PORT": str(port),
        }
    )
    assert settings.web_port == port
    hook = await bots.run(WebhookBot(settings))
    web = hook.services.web
    assert web is not None and hook.server is web
    update = telegram.send_text("/seq 2 a red cup", push=False)
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{settings.public_url}/healthz")
        assert health.status_code == 200 and health.text == f"seqbot {web.nonce}\n"
        posted = await client.post(
            f"http://127.0.0.1:{port}/seqbot-hook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert posted.status_code == 200
        job = await until_final(telegram, hook)
        assert job.status == Status.DONE
        # Stopping: updates are refused first (Telegram sends them again), references still served.
        web.stop_updates()
        late = await client.post(
            f"http://127.0.0.1:{port}/seqbot-hook",
            json=telegram.send_text("/seq 2 late", push=False),
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert late.status_code == 503
        assert (await client.get(f"{settings.public_url}/healthz")).status_code == 200


async def test_doctor_says_whether_this_bot_answers_at_public_url(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    before = await doctor.diagnose(env)
    web_line = before[-1]
    assert web_line.name == "Web server" and not web_line.ok
    assert "could not reach" in web_line.detail and "WEB_LISTEN:WEB_PORT" in web_line.detail
    bot: RunningBot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    checks = await doctor.diagnose(env)
    assert [c.ok for c in checks] == [True] * 5, [c.line() for c in checks]
    assert (
        checks[-1].detail
        == f"this bot answers at {env['PUBLIC_URL']}/healthz: RunComfy can fetch references"
    )
    # Another process answering there (an old one, or another bot): not this one.
    nonce_file = Path(env["DATABASE_PATH"] + ".webnonce")
    await asyncio.to_thread(nonce_file.write_text, "someone-else")
    (stale,) = [c for c in await doctor.diagnose(env) if c.name == "Web server"]
    assert not stale.ok and "not the one running with this database" in stale.detail
    await bots.stop(bot)


async def test_the_originals_cap_never_takes_the_references_of_a_job_runcomfy_may_still_fetch(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    big = render_jpeg("ref", 0, (900, 900), 700_000)
    job, refs = await record_job(env, telegram, [big])
    runcomfy.script_next(JobScript(queued_seconds=60))
    bot = await bots.start(ORIGINALS_MAX_MB="1", **{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    await telegram.wait_for(lambda: (j := bot.store.get(job.id)) and j.status == Status.QUEUED)
    cache = bot.runner.delivery.originals
    # Another job's files push the total over the 1 MB cap: the oldest unpinned go first.
    await cache.save_ref(job.id + 1, "another-ref", big)
    links = bot.runner.links
    assert links is not None
    async with httpx.AsyncClient() as client:
        got = await client.get(links.url(job.id, refs[0].id))
    assert got.status_code == 200 and got.content == big
    # Once the job has ended undelivered, its files are the cap's again.
    await bot.runner.cancel(bot.runner.find(job.id))  # type: ignore[arg-type]
    await telegram.wait_for(lambda: not bot.runner.working_on(job.id))
    await cache.save_ref(job.id + 2, "a-third-ref", big)
    assert await cache.load_ref(job.id, refs[0].id) is None


async def test_a_web_port_in_use_ends_the_process_with_one_line(
    process_env: dict[str, str],  # noqa: F811 - the fixture
    telegram: FakeTelegram,
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = refs_env(process_env, taken.getsockname()[1])
        proc = await BotProcess(env, tmp_path / "bot.log").spawn()
        assert await proc.wait() == 2
    out = proc.output()
    assert "the web server cannot listen on 127.0.0.1:" in out and "WEB_PORT" in out
    assert "Traceback" not in out


async def test_doctor_from_another_process_knows_the_running_bot_answered(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy, tmp_path: Path
) -> None:
    env = refs_env(env)
    await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    code, lines = await run_doctor(env, tmp_path)
    assert code == 0, lines
    assert f"[ok]   Web server: this bot answers at {env['PUBLIC_URL']}/healthz" in lines[4]


async def test_the_fake_refuses_a_body_over_the_15_image_rule_or_without_images() -> None:
    from tests.conftest import RC_TOKEN

    async with FakeRunComfy(token=RC_TOKEN) as fake:
        headers = {"Authorization": f"Bearer {RC_TOKEN}"}
        urls = [f"http://127.0.0.1:9/refs/{i}.jpg" for i in range(10)]
        async with httpx.AsyncClient(headers=headers) as client:
            url = fake.base_url + EDIT_SUBMIT_PATH
            over = {"text": "Generate 6 images", "sequential_image_generation_options": 6}
            answers = [
                await client.post(url, json={**over, "images": urls}),
                await client.post(url, json={**over, "images": []}),
                await client.post(url, json=over),
            ]
        assert [a.status_code for a in answers] == [422, 422, 422]
        assert "at most 15 in all" in answers[0].json()["error_message"]
        assert fake.count("submit") == 3 and not fake.jobs and not fake.ref_fetches


def test_the_metrics_port_may_not_be_the_web_servers(env: dict[str, str]) -> None:
    from bot.errors import ConfigError

    clash = {**refs_env(env, 9100), "METRICS_PORT": "9100"}
    with pytest.raises(ConfigError, match="METRICS_PORT must differ from WEB_PORT"):
        Settings.from_env(clash)
    assert Settings.from_env({**clash, "METRICS_PORT": "9101"}).web_port == 9100
    # Webhook mode without reference images: the same one server, on WEB_PORT when it is set.
    hook = {
        **env,
        "WEBHOOK_URL": "https://bot.example.org/hook",
        "WEBHOOK_SECRET": "s" * 20,
        "WEB_PORT": "9100",
    }
    with pytest.raises(ConfigError, match="METRICS_PORT must differ from WEB_PORT"):
        Settings.from_env({**hook, "METRICS_PORT": "9100"})
    assert Settings.from_env({**hook, "METRICS_PORT": "8080"}).web_port == 9100
    with pytest.raises(ConfigError, match="METRICS_PORT must differ from WEB_PORT"):
        Settings.from_env({**hook, "WEB_PORT": "", "WEBHOOK_PORT": "9200", "METRICS_PORT": "9200"})


# ---- both halves: from a Telegram photo to what RunComfy fetched ---------------------------------


async def test_a_captioned_photo_reaches_runcomfy_cleaned_at_its_signed_url(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    from tests.test_refimages import GPS_IFD, photo

    env = refs_env(env)
    bot = await bots.start(**{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")})
    source = photo(1280, 960, orientation=6, gps=True, comment=b"at home")
    telegram.send_photo(source, "/seq 3 the woman in image 1 as a pilot, three scenes")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE, job.error
    (body,) = submits(runcomfy, EDIT_SUBMIT_PATH)
    assert body["sequential_image_generation_options"] == 3
    (fetch,) = runcomfy.ref_fetches
    assert fetch.url == body["images"][0] and fetch.status == 200
    assert fetch.image == ("JPEG", 960, 1280)  # turned upright
    with Image.open(io.BytesIO(fetch.body)) as img:
        assert len(img.getexif()) == 0 and not img.getexif().get_ifd(GPS_IFD)
        assert "icc_profile" not in img.info and "comment" not in img.info
    assert b"at home" not in fetch.body and b"PhoneMaker" not in fetch.body
    assert_clean(telegram, runcomfy)  # no token, no Telegram file URL in any request to RunComfy


async def test_an_albums_references_reach_runcomfy_in_album_order(
    env: dict[str, str], bots: Bots, telegram: FakeTelegram, runcomfy: FakeRunComfy
) -> None:
    env = refs_env(env)
    bot = await bots.start(
        ALBUM_WAIT_SECONDS="0.2", **{k: env[k] for k in ("PUBLIC_URL", "WEB_PORT")}
    )
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    telegram.send_album([jpeg(c, (320, 240)) for c in colours], "/seq 2 these three, together")
    job = await until_final(telegram, bot)
    assert job.status == Status.DONE, job.error
    fetched = runcomfy.ref_fetches
    assert [f.url for f in fetched] == submits(runcomfy, EDIT_SUBMIT_PATH)[0]["images"]
    seen = []
    for fetch in fetched:
        with Image.open(io.BytesIO(fetch.body)) as img:
            seen.append(img.convert("RGB").getpixel((160, 120)))
    assert [max(range(3), key=lambda i: px[i]) for px in seen] == [0, 1, 2]
    assert_clean(telegram, runcomfy)
