"""The studio in a real browser: headless Chromium against the real bot, its web server and the
loopback fakes. One bot, one browser and one page for the module; the series are made by real
``/seq`` commands through the fakes. Screenshots of each view go to ``SEQBOT_ARTEFACTS`` (or the
test's temporary folder)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.models import Status
from bot.render import status_word
from tests.browser import (
    DARK,
    LAUNCH_ARGS,
    LIGHT,
    TELEGRAM_JS,
    init_data,
    need_browser,
    telegram_stub,
)
from tests.conftest import RC_TOKEN, TG_TOKEN, Bots, RunningBot, make_env
from tests.fakes.runcomfy_api import FakeRunComfy, JobScript
from tests.fakes.telegram_api import ADA, ADA_ID, FakeTelegram
from tests.helpers import refs_env, until_final

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOB_ID = 555000111
BOB = {"id": BOB_ID, "is_bot": False, "first_name": "Bob", "language_code": "ru"}
PROMPTS = [  # Ada's, oldest first: the gallery shows them newest first
    "/seq 2 1:1 a red fox in the snow",
    "/seq 16:9 a lighthouse through the seasons\n1. Spring fog\n2. Summer storm\n3. Winter ice",
]
PANELS = ["Spring fog", "Summer storm", "Winter ice"]
BOBS = "/seq 2 1:1 Bob's own cat"
MAX_WAIT_MS = 10_000


@dataclass
class Studio:
    """The running bot, the fakes, the browser page and how to open the studio in it."""

    telegram: FakeTelegram
    runcomfy: FakeRunComfy
    bots: Bots
    bot: RunningBot
    url: str
    page: Any
    artefacts: Path
    ada_jobs: list[int]
    bob_job: int
    stub: dict[str, str] = field(default_factory=dict)

    async def open(
        self,
        user: dict[str, Any] = ADA,
        *,
        query: str = "",
        theme: dict[str, str] = LIGHT,
        scheme: str = "light",
        safe_top: int = 0,
        **sign: Any,
    ) -> Any:
        """Load the studio as ``user`` opens it from Telegram (``sign``: init_data's options)."""
        data = init_data(TG_TOKEN, user, **sign)
        self.stub["js"] = telegram_stub(data, user, theme=theme, scheme=scheme, safe_top=safe_top)
        await self.page.goto(f"{self.url}{query}", wait_until="domcontentloaded")
        return self.page

    def next_id(self) -> int:
        """The id the next job gets (ids count up from 1)."""
        n = 1
        while self.bot.store.get(n) is not None:
            n += 1
        return n

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.artefacts / f"studio-{name}.png"))


def artefacts_dir(tmp: Path) -> Path:
    """Where the screenshots go: ``SEQBOT_ARTEFACTS``, else beside the test's files."""
    path = Path(os.environ.get("SEQBOT_ARTEFACTS") or tmp / "artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Studio]:
    executable = need_browser()
    from playwright.async_api import async_playwright

    tmp = tmp_path_factory.mktemp("studio")
    artefacts = artefacts_dir(tmp)
    async with (
        FakeTelegram(token=TG_TOKEN) as telegram,
        FakeRunComfy(token=RC_TOKEN) as runcomfy,
        async_playwright() as pw,
    ):
        env = refs_env(make_env(tmp, telegram, runcomfy))
        bots = Bots(env)
        bot = await bots.start()
        try:
            telegram.users[ADA_ID] = dict(ADA)
            telegram.users[BOB_ID] = dict(BOB)
            ada_jobs = []
            for prompt in PROMPTS:
                telegram.send_text(prompt)
                ada_jobs.append(len(ada_jobs) + 1)
                await until_final(telegram, bot, ada_jobs[-1])
            telegram.send_text(BOBS, chat_id=BOB_ID)
            bob_job = len(ada_jobs) + 1
            await until_final(telegram, bot, bob_job)

            browser = await pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
            context = await browser.new_context(
                viewport={"width": 390, "height": 800}, device_scale_factor=2
            )
            page = await context.new_page()
            page.set_default_timeout(MAX_WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # A CSP violation is a console error; a 401/404 answer the tests ask for is not a bug.
            page.on(
                "console",
                lambda m: (
                    errors.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource")
                    else None
                ),
            )
            found = Studio(
                telegram, runcomfy, bots, bot, f"{env['PUBLIC_URL']}/app/", page, artefacts,
                ada_jobs, bob_job,
            )  # fmt: skip

            async def serve_stub(route: Any) -> None:
                await route.fulfill(body=found.stub["js"], content_type="application/javascript")

            await page.route(TELEGRAM_JS, serve_stub)
            # Nothing else leaves loopback: a page asking the internet is a bug.
            await page.route(
                lambda url: not url.startswith(("http://127.", TELEGRAM_JS, "data:")),
                lambda route: route.abort(),
            )
            yield found
            assert errors == [], errors  # no script error on any page the tests opened
            await browser.close()
        finally:
            await bots.stop()


async def gallery_cards(page: Any, n: int) -> list[dict[str, Any]]:
    """Wait for ``n`` cards with every thumbnail decoded; their ids, titles and image sizes."""
    await page.wait_for_function(
        """n => { const cards = document.querySelectorAll('.card');
                 return cards.length === n && [...document.querySelectorAll('.card img')]
                   .every(i => i.complete && i.naturalWidth > 0); }""",
        arg=n,
    )
    cards: list[dict[str, Any]] = await page.eval_on_selector_all(
        ".card",
        """cards => cards.map(c => ({
             id: Number(c.dataset.id), title: c.querySelector('.title').textContent,
             meta: c.querySelector('.meta').textContent, state: c.querySelector('.state').textContent,
             widths: [...c.querySelectorAll('img')].map(i => i.naturalWidth),
             alts: [...c.querySelectorAll('img')].map(i => i.alt) }))""",
    )
    return cards


async def test_gallery_lists_the_persons_series_with_thumbnails_that_load(studio: Studio) -> None:
    page = await studio.open()

    cards = await gallery_cards(page, len(PROMPTS))

    # Ada's two series, newest first, never Bob's.
    assert [c["id"] for c in cards] == studio.ada_jobs[::-1]
    assert cards[0]["title"] == "a lighthouse through the seasons"
    assert cards[1]["title"] == "a red fox in the snow"
    assert "16:9" in cards[0]["meta"] and "Panels: 3" in cards[0]["meta"]
    assert "1:1" in cards[1]["meta"] and "Panels: 2" in cards[1]["meta"]
    assert all(c["state"] == status_word(Status.DONE, "en") for c in cards)
    assert [len(c["widths"]) for c in cards] == [3, 2]
    assert all(0 < w <= 320 for c in cards for w in c["widths"])  # thumbnails, not originals
    assert all(alt for c in cards for alt in c["alts"])  # readable without images
    calls = await page.evaluate("window.__tg.calls.map(c => c[0])")
    assert "ready" in calls and "expand" in calls
    # Nothing wider than the screen: Telegram's webview would scroll sideways.
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await studio.shot("gallery")


async def test_a_series_shows_its_panels_in_order_and_sends_a_sheet(studio: Studio) -> None:
    page = await studio.open()
    await gallery_cards(page, len(PROMPTS))
    job_id = studio.ada_jobs[1]

    await page.click(f".card[data-id='{job_id}'] .open")

    await page.wait_for_function(
        "() => [...document.querySelectorAll('.slide img')].length === 3 && "
        "[...document.querySelectorAll('.slide img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    slides = await page.eval_on_selector_all(
        ".slide",
        "s => s.map(e => [Number(e.dataset.index), e.querySelector('img').alt,"
        " e.querySelector('figcaption').textContent])",
    )
    assert slides == [[i, text, f"{i + 1}. {text}"] for i, text in enumerate(PANELS)]
    assert await page.text_content(".counter") == "1 / 3"
    assert await page.text_content(".details .prompt") == PROMPTS[1].split(" ", 2)[2]
    # The Telegram back button is shown in a series, and the taps were felt.
    assert await page.evaluate("window.__tg.back.isVisible") is True
    calls = await page.evaluate("window.__tg.calls.map(c => c[0])")
    assert "HapticFeedback.impactOccurred" in calls
    await studio.shot("series")

    # The arrow moves to the next panel.
    await page.click(".nav .arrow >> nth=1")
    await page.wait_for_function("() => document.querySelector('.counter').textContent === '2 / 3'")

    # A tap shows the panel full size (its own URL, the kept JPEG); Back closes it first.
    await page.click(".slide >> nth=1 >> .zoom")
    await page.wait_for_function(
        "() => { const i = document.getElementById('viewer-img');"
        " return !document.getElementById('viewer').hidden && i.complete && i.naturalWidth > 0; }"
    )
    full = await page.evaluate(
        "new URL(document.querySelectorAll('.slide img')[1].dataset.full, location.href).href"
    )
    assert "/app/img/" in full
    assert await page.evaluate("document.getElementById('viewer-img').src") == full
    kind = await page.evaluate(
        "fetch(document.getElementById('viewer-img').src).then(r => r.headers.get('content-type'))"
    )
    assert kind == "image/jpeg"
    assert await page.get_attribute("#viewer-img", "alt") == PANELS[1]
    await studio.shot("full-size")
    await page.evaluate("window.__pressBack()")
    assert await page.is_hidden("#viewer")
    assert await page.get_attribute("main", "data-view") == "series"

    photos_before = len(
        [
            c
            for c in studio.telegram.calls_to("sendPhoto", ok_only=True)
            if c.params["chat_id"] == ADA_ID
        ]
    )
    await page.click("[data-action=sheet]")

    await page.wait_for_selector("#toast:not([hidden])")
    await studio.telegram.wait_for(
        lambda: (
            len(
                [
                    c
                    for c in studio.telegram.calls_to("sendPhoto", ok_only=True)
                    if c.params["chat_id"] == ADA_ID
                ]
            )
            > photos_before
        )
    )
    assert (await page.text_content("#toast")).strip()

    # Telegram's back button returns to the gallery and hides itself.
    await page.evaluate("window.__pressBack()")
    await page.wait_for_selector("main[data-view=gallery] .card")
    assert await page.evaluate("window.__tg.back.isVisible") is False


async def test_again_lands_in_the_chat_and_tops_the_gallery(studio: Studio) -> None:
    page = await studio.open()
    await gallery_cards(page, len(studio.ada_jobs))
    await page.click(f".card[data-id='{studio.ada_jobs[0]}'] .open")
    await page.wait_for_selector("[data-action=again]")
    jobs_before = len(studio.runcomfy.jobs)
    new_id = studio.next_id()
    await page.click("[data-action=again]")

    await page.wait_for_selector("#toast:not([hidden])")
    assert f"#{new_id}" in await page.text_content("#toast")
    job = await until_final(studio.telegram, studio.bot, new_id)
    assert job.chat_id == ADA_ID and len(studio.runcomfy.jobs) == jobs_before + 1
    studio.ada_jobs.append(new_id)
    # Back in the gallery (kept as it was), the new series is on top.
    await page.evaluate("window.__pressBack()")
    cards = await gallery_cards(page, len(studio.ada_jobs))
    assert [c["id"] for c in cards] == studio.ada_jobs[::-1]


async def test_redo_a_panel_and_continue_the_story(studio: Studio) -> None:
    series = studio.ada_jobs[1]  # the three-panel script
    page = await studio.open(query=f"?series={series}&refresh=250")
    await page.wait_for_selector("[data-action=redo]")
    await page.click(".nav .arrow >> nth=1")
    await page.wait_for_function(
        "() => document.querySelector('[data-action=redo]').textContent === 'Redo panel 2'"
    )
    # Which image each slide shows: the job and index of its signed URL (a slide's picture goes
    # from the thumbnail to the full size on its own, so the whole URL is not stable).
    shows = "s => s.map(e => e.querySelector('img').src.split('/img/')[1].split('.').slice(1, 3).join('.'))"
    before = await page.eval_on_selector_all(".slide", shows)

    # ✏️ Redo panel 2 with its own text: a new one-image job in Ada's chat, then the same page
    # shows panel 2's new version in its place.
    redo = studio.next_id()
    await page.click("[data-action=redo]")
    await page.click("form.ask[data-action=redo] >> text=Keep the same text")
    await page.wait_for_selector("#toast:not([hidden])")
    job = await until_final(studio.telegram, studio.bot, redo)
    assert job.status == Status.DONE and job.chat_id == ADA_ID and job.count == 1
    await page.wait_for_function(
        "old => { const now = [...document.querySelectorAll('.slide img')]"
        ".map(i => i.src.split('/img/')[1].split('.').slice(1, 3).join('.'));"
        " return now.length === 3 && now[1] !== old[1] && now[0] === old[0] && now[2] === old[2]; }",
        arg=before,
    )
    assert before[1] == f"{series}.1"  # panel 2 of the set, now shown from the redo job
    after = await page.eval_on_selector_all(".slide", shows)
    assert after[1] == f"{redo}.0"
    assert await page.text_content(".counter") == "2 / 3"  # still on the redone panel
    texts = await page.eval_on_selector_all(".slide img", "s => s.map(i => i.alt)")
    assert texts == PANELS

    # ➡️ Continue with a new text: the next episode, on top of the gallery.
    episode = studio.next_id()
    await page.click("[data-action=continue]")
    await page.fill("form.ask[data-action=continue] textarea", "the lighthouse keeper retires")
    await page.click("form.ask[data-action=continue] button[type=submit]")
    await page.wait_for_selector("#toast:not([hidden])")
    await until_final(studio.telegram, studio.bot, episode)
    studio.ada_jobs.append(episode)
    await page.evaluate("window.__pressBack()")
    cards = await gallery_cards(page, len(studio.ada_jobs))
    assert cards[0]["id"] == episode
    assert "Episode 2" in cards[0]["meta"]


async def test_hide_asks_first_and_the_series_leaves_the_gallery(studio: Studio) -> None:
    hidden = studio.next_id()
    studio.telegram.send_text("/seq 1 1:1 a series to hide")
    await until_final(studio.telegram, studio.bot, hidden)
    page = await studio.open(query=f"?series={hidden}")
    await page.wait_for_selector("[data-action=hide]")

    await page.click("[data-action=hide]")

    await page.wait_for_selector("main[data-view=gallery]")
    cards = await gallery_cards(page, len(studio.ada_jobs))
    assert hidden not in [c["id"] for c in cards]
    asked = await page.evaluate("window.__tg.calls.filter(c => c[0] === 'showConfirm')")
    assert len(asked) == 1 and "Hide this series" in asked[0][1]
    assert (await page.text_content("#toast")).strip()
    # Opened by its id, it is not there any more.
    await studio.open(query=f"?series={hidden}")
    await page.wait_for_selector("main[data-view=error] .problem[data-code=not_found]")


async def test_a_running_series_shows_its_state_and_updates_until_done(studio: Studio) -> None:
    studio.runcomfy.script_next(JobScript(queued_seconds=0.0, running_seconds=3600.0))
    job_id = studio.next_id()
    studio.telegram.send_text("/seq 2 1:1 a slow one")
    await studio.telegram.wait_for(
        lambda: (job := studio.bot.store.get(job_id)) is not None and job.status == Status.RUNNING
    )
    page = await studio.open(query="?refresh=250")
    card = f".card[data-id='{job_id}']"
    await page.wait_for_selector(f"{card}[data-status=running]")
    assert await page.text_content(f"{card} .state") == status_word(Status.RUNNING, "en")

    (fake,) = [j for j in studio.runcomfy.jobs.values() if j.script.running_seconds == 3600.0]
    fake.script = replace(fake.script, running_seconds=0.0)  # RunComfy finishes it now

    # The same page, not reloaded: the card turns done and shows the two thumbnails.
    await page.wait_for_selector(f"{card}[data-status=done]")
    await page.wait_for_function(
        "sel => [...document.querySelectorAll(sel + ' img')].filter(i => i.naturalWidth > 0)"
        ".length === 2",
        arg=card,
    )
    studio.ada_jobs.append(job_id)


async def test_another_persons_series_is_not_found(studio: Studio) -> None:
    page = await studio.open(query=f"?series={studio.bob_job}")

    await page.wait_for_selector("main[data-view=error] .problem")

    assert await page.get_attribute(".problem", "data-code") == "not_found"
    assert await page.text_content(".problem h2") == "This series is not here"
    assert await page.locator(".slide").count() == 0
    await studio.shot("not-found")


@pytest.mark.parametrize(
    ("sign", "code"),
    [({"forge": True}, "unauthorized"), ({"auth_date": int(time.time()) - 2 * 86400}, "expired")],
    ids=["forged", "stale"],
)
async def test_a_bad_sign_in_shows_the_error_view(
    studio: Studio, sign: dict[str, Any], code: str
) -> None:
    page = await studio.open(**sign)

    await page.wait_for_selector("main[data-view=error] .problem")

    assert await page.get_attribute(".problem", "data-code") == code
    assert await page.text_content(".problem h2") == "Open the studio from the bot again"
    assert await page.locator(".card").count() == 0
    assert await page.is_hidden("#tabs")
    await studio.shot(f"error-{code}")


async def test_dark_theme_and_russian(studio: Studio) -> None:
    # Bob's Telegram is in Russian and dark, on a phone whose notch takes 24 px at the top.
    page = await studio.open(BOB, theme=DARK, scheme="dark", safe_top=24)

    cards = await gallery_cards(page, 1)

    assert cards[0]["id"] == studio.bob_job
    assert await page.text_content("#heading") == "Студия"
    assert "Кадров: 2" in cards[0]["meta"]
    assert cards[0]["state"] == status_word(Status.DONE, "ru") != status_word(Status.DONE, "en")
    assert await page.get_attribute("html", "lang") == "ru"
    colours = await page.evaluate(
        "() => [getComputedStyle(document.body).backgroundColor,"
        " getComputedStyle(document.body).color]"
    )
    assert colours == ["rgb(14, 22, 33)", "rgb(245, 245, 245)"]  # secondary_bg_color, text_color
    assert await page.evaluate("getComputedStyle(document.body).paddingTop") == "24px"
    await studio.shot("gallery-dark-ru")


async def test_a_panel_becomes_a_character_in_the_cast_tab_and_is_removed(studio: Studio) -> None:
    page = await studio.open(query=f"?series={studio.ada_jobs[0]}")
    await page.wait_for_selector("[data-action=cast]")
    await page.click(".nav .arrow >> nth=1")
    await page.wait_for_function(
        "() => document.querySelector('[data-action=cast]').textContent"
        " === 'Use panel 2 as a character'"
    )

    await page.click("[data-action=cast]")
    await page.fill("form.ask[data-action=cast] input", "Foxy")
    await page.click("form.ask[data-action=cast] button[type=submit]")
    await page.wait_for_selector("#toast:not([hidden])")

    # The Cast tab lists Foxy with a thumbnail that loads; Telegram's back button is shown.
    await page.click("#tab-cast")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.person img')].some(i => i.complete && i.naturalWidth > 0)"
    )
    names = await page.eval_on_selector_all(".person .name", "s => s.map(e => e.textContent)")
    assert names == ["Foxy"]
    assert await page.get_attribute("#tab-cast", "aria-current") == "page"
    assert await page.evaluate("window.__tg.back.isVisible") is True
    await studio.shot("cast")

    # Remove asks first, then Foxy is gone, here and for the server.
    await page.click(".person >> text=Remove")
    await page.wait_for_selector(".person", state="detached")
    asked = await page.evaluate("window.__tg.calls.filter(c => c[0] === 'showConfirm').length")
    assert asked == 1
    await page.evaluate("window.__pressBack()")
    await page.wait_for_selector("main[data-view=gallery] .card")
    assert await page.evaluate("window.__tg.back.isVisible") is False
    await page.click("#tab-cast")
    await page.wait_for_selector("main[data-view=cast] .empty")


async def test_the_studio_works_after_a_restart(studio: Studio) -> None:
    await studio.bots.stop(studio.bot)
    studio.bot = await studio.bots.start()

    page = await studio.open()
    cards = await gallery_cards(page, len(studio.ada_jobs))

    assert [c["id"] for c in cards] == studio.ada_jobs[::-1]
