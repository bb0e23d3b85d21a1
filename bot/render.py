"""Texts, keyboards and album plans (pure); callback data is built by ``bot.callbacks``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from bot import schedule, schema
from bot.callbacks import (
    JobAction,
    JobButton,
    PanelButton,
    ResetButton,
    SettingButton,
    SettingField,
    encode,
)
from bot.models import CANCELLABLE, ChatDefaults, DeliveryUnit, Job, Status, UnitKind, Usage
from bot.texts import Plural, plural, tr

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096  # a message's text
ANSWER_LIMIT = 200  # the text of a callback query's answer
ALBUM_MAX = 10
SETTINGS_COUNTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15)

USAGE_INTRO = "Make a series of related images with Seedream 4.0."

USAGE = """\
/seq [count] [ratio] [seed=N] [mode=fast|standard] prompt

• count: {min_count}–{max_count} images (default {default_count})
• ratio: {ratios} (default {default_ratio})
• seed: a whole number, to repeat a result
• mode: {modes} (default {default_mode})

Examples:
/seq 4 16:9 a lighthouse through four seasons
/seq 6 9:16 mode=standard a comic strip of a cat learning to fly
/seq 2 1:1 seed=42 a red fox in fresh snow, golden hour
/seq Generate 3 images of a calm ocean at sunset

A script makes one image per numbered line, in order:
/seq 16:9 A fox cub's first winter, watercolour
1. The cub peeks out of the den
2. It sees snow for the first time
3. It leaps into a snowdrift

While a job waits in the queue you can tap Cancel under its status message. \
/settings sets this chat's defaults."""

HELP = """\
Hi! I turn one prompt into a set of consistent images (a story, a product from several angles, \
four seasons of one place) with ByteDance Seedream 4.0 on RunComfy.

{usage}"""


def usage(lang: str | None) -> str:
    """/seq alone: what it does and how to use it."""
    return f"{tr(lang, USAGE_INTRO)}\n\n{_usage_body(lang)}"


def _usage_body(lang: str | None) -> str:
    """How to use /seq, with the allowed values from the schema."""
    return tr(
        lang,
        USAGE,
        min_count=schema.MIN_COUNT,
        max_count=schema.MAX_COUNT,
        default_count=schema.DEFAULT_COUNT,
        ratios=" ".join(schema.RATIOS),
        default_ratio=schema.DEFAULT_RATIO,
        modes=" | ".join(schema.MODES),
        default_mode=schema.DEFAULT_MODE,
    )


REFS_HELP = """\
Your own characters: send a photo (or an album of up to 10) with /seq in its caption, \
e.g. /seq 4 the woman in image 1 as a pilot, four scenes. Or reply /seq … to a photo, \
or to one of my images to continue from it. In groups, put /seq on the photo itself."""


STORY_HELP = """\
Under each set: ➡️ Continue makes the next episode with the same characters, \
✏️ Redo panel remakes one panel to match the rest."""

CAST_HELP = """\
Saved characters: /cast add NAME as the caption of a photo (or an album of up to 3, or \
an image file), or as a reply to one or to one of my images. Then use them in any chat:
/seq 4 16:9 cast=anna,rex anna walks rex through Paris at dawn
/cast lists yours; /cast remove NAME deletes one."""


STUDIO_HELP = "/studio opens your series as a gallery, with the same buttons."


def help_text(
    lang: str | None, *, refs: bool = False, cast: bool = False, studio: bool = False
) -> str:
    """/start and /help: the greeting says what the bot does, so the usage's intro is left out;
    with ``refs`` (PUBLIC_URL set) one short example of reference images and the story
    buttons, with ``cast`` (and refs) how to save and use characters, with ``studio`` (an https
    PUBLIC_URL) the studio's command."""
    text = tr(lang, HELP, usage=_usage_body(lang))
    if refs:
        text += f"\n\n{tr(lang, REFS_HELP)}\n{tr(lang, STORY_HELP)}"
    if refs and cast:
        text += f"\n\n{tr(lang, CAST_HELP)}"
    if studio:
        text += f"\n\n{tr(lang, STUDIO_HELP)}"
    return text


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-16 units, ending with an ellipsis if cut."""
    if utf16_len(text) <= limit:
        return text
    out = text
    while utf16_len(out) > limit - 1:
        # Cut in steps proportional to the overshoot, then trim whitespace before the ellipsis.
        out = out[: max(0, len(out) - max(1, (utf16_len(out) - limit + 1) // 2))]
    return out.rstrip() + "…"


def duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def params_line(job: Job) -> str:
    """``4 images · 16:9 · fast · seed 42``."""
    parts = [plural(job.lang, job.count, "image"), schema.ratio_of(job.size), job.mode]
    if job.seed is not None:
        parts.append(tr(job.lang, "seed {seed}", seed=job.seed))
    if job.refs:
        parts.append(f"🖼 {plural(job.lang, len(job.refs), 'reference')}")
    return " · ".join(parts)


def refs_line(job: Job, lang: str | None) -> str | None:
    """Details: how many references the job used and which message(s) they came from."""
    refs = job.refs
    if not refs:
        return None
    count = plural(lang, len(refs), "reference")
    results = sorted({r.job_id for r in refs if r.kind == "result" and r.job_id})
    # A character's images came from wherever it was saved (maybe another chat): named instead.
    messages = sorted({r.message_id for r in refs if r.kind not in ("result", "cast")})
    where: list[str] = []
    characters = list(dict.fromkeys(r.name for r in refs if r.kind == "cast"))
    if characters:
        where.append(tr(lang, "the characters {names}", names=", ".join(characters)))
    if len(messages) > 1:
        where.append(tr(lang, "an album in this chat ({messages})", messages=_ids(messages, lang)))
    elif messages:
        kinds = {r.kind for r in refs if r.kind not in ("result", "cast")}
        where.append(
            tr(lang, "a file in this chat (message {id})", id=messages[0])
            if kinds == {"document"}
            else tr(lang, "a photo in this chat (message {id})", id=messages[0])
        )
    for job_id in results:
        where.append(tr(lang, "one of the bot's images of job #{id}", id=job_id))
    if any(r.kind == "result" and not r.job_id for r in refs):
        where.append(tr(lang, "one of the bot's images"))
    return tr(lang, "References: {count}, from {where}", count=count, where="; ".join(where))


def _ids(messages: list[int], lang: str | None) -> str:
    """``messages 10–12`` for a run of ids, else ``messages 10, 14``."""
    if messages == list(range(messages[0], messages[-1] + 1)):
        return tr(lang, "messages {first}–{last}", first=messages[0], last=messages[-1])
    return tr(lang, "messages {ids}", ids=", ".join(map(str, messages)))


def about(seconds: float, lang: str | None) -> str:
    """A time to come, roughly: ``8`` -> ``8 s``; ``95`` -> ``2 min``."""
    if seconds < 60:
        return tr(lang, "{n} s", n=max(1, math.ceil(seconds)))
    return tr(lang, "{n} min", n=round(seconds / 60))


def _generating(job: Job, now: float, window: schedule.Window | None) -> str:
    """🎨 with a bar and the time left when history supports one, else the time so far."""
    lang = job.lang
    # Whole 10-second steps, so a fast poll does not turn into an edit per poll.
    running_for = schedule.coarse(now - (job.started_at or now))
    left = schedule.seconds_left(window, running_for) if window else None
    if window is None or left is None:
        return tr(lang, "🎨 Generating… {elapsed}", elapsed=duration(running_for))
    expected = window.expected
    progress = schedule.bar(running_for / expected if expected > 0 else 1.0)
    if left < 1:
        return tr(lang, "🎨 Generating {bar} almost done", bar=progress)
    return tr(lang, "🎨 Generating {bar} about {left} left", bar=progress, left=about(left, lang))


def status_text(
    job: Job, now: float | None = None, estimate: schedule.Estimate | None = None
) -> str:
    """The status message for the job's current state. Equal states give equal texts.

    ``estimate``: what may be said about time (history of similar jobs, the queue's pace);
    without it, none is given.
    """
    now = time.time() if now is None else now
    lang = job.lang
    head = tr(lang, "Job #{id} · {params}", id=job.id, params=params_line(job))
    status = job.status
    if status in (Status.NEW, Status.SUBMITTING, Status.QUEUED):
        wait = estimate.queue_wait if estimate and job.status == Status.QUEUED else None
        if job.cancel_requested:
            # Cancel was tapped before RunComfy had the job: asked as soon as (and until) it can be.
            line = tr(lang, "⏳ Cancelling…")
        elif job.queue_position and wait:
            line = tr(
                lang,
                "⏳ Queued (position {position}, about {wait} to wait)…",
                position=job.queue_position,
                wait=about(max(10, round(wait / 10) * 10), lang),
            )
        elif job.queue_position:
            line = tr(lang, "⏳ Queued (position {position})…", position=job.queue_position)
        else:
            line = tr(lang, "⏳ Queued…")
    elif status == Status.RUNNING:
        line = _generating(job, now, estimate.window if estimate else None)
    elif status == Status.SENDING:
        images = plural(lang, len(job.image_urls) or job.count, "image")
        line = tr(lang, "📤 Sending {images}…", images=images)
        if estimate and estimate.retry_until:
            line += "\n" + tr(
                lang,
                "Telegram is not taking them just now; the bot keeps trying until {when} UTC.",
                when=time.strftime("%Y-%m-%d %H:%M", time.gmtime(estimate.retry_until)),
            )
    elif status == Status.DONE:
        took = duration((job.finished_at or now) - (job.submitted_at or job.created_at))
        images = plural(lang, job.delivered_images, "image")
        line = tr(lang, "✅ Done: {images} in {took}.", images=images, took=took)
        if len(job.image_urls) < job.count:
            line += "\n" + tr(
                lang,
                "The model returned {got} of the {asked} images asked for.",
                got=len(job.image_urls),
                asked=job.count,
            )
        if job.error:
            line += f"\n{job.error}"
    elif status == Status.CANCELLED:
        line = tr(lang, "🚫 Cancelled.")
    elif status == Status.TIMED_OUT:
        line = tr(lang, "⌛ Timed out: RunComfy did not finish in time.")
    else:
        line = tr(lang, "❌ Failed: {error}", error=job.error or tr(lang, "something went wrong."))
    return f"{line}\n{head}"


def actions_text(job: Job) -> str:
    """The short follow-up under the images."""
    return tr(job.lang, "Job #{id} · {params}", id=job.id, params=params_line(job))


@dataclass(frozen=True)
class StudioLinks:
    """Where the studio opens: its page (a ``web_app`` button, private chats only) and the
    bot's private chat with ``?start=studio`` (a link button, for groups)."""

    app: str
    chat: str

    def button(self, lang: str | None, *, private: bool) -> InlineKeyboardButton:
        """🖼 Studio: the app itself in a private chat; in a group (where Telegram refuses
        ``web_app`` buttons) a link to the private chat, which answers with the app's button."""
        label = tr(lang, "🖼 Studio")
        if private:
            return InlineKeyboardButton(label, web_app=WebAppInfo(self.app))
        return InlineKeyboardButton(label, url=self.chat)


def studio_keyboard(
    studio: StudioLinks, lang: str | None, *, private: bool
) -> InlineKeyboardMarkup:
    """The one button /studio answers with."""
    return InlineKeyboardMarkup([[studio.button(lang, private=private)]])


def actions_keyboard(
    job: Job, studio: StudioLinks | None = None, *, story: bool = True
) -> InlineKeyboardMarkup:
    """🔁 Again, 📎 Originals, ℹ️ Details; below them 🗂 Sheet and 📦 ZIP (and 🖼 Studio); then
    ➡️ Continue and ✏️ Redo panel (``story``: reference images are on). A redone panel's own
    follow-up has only 📎 Originals and ℹ️ Details: its story goes on from the set it belongs
    to."""
    rows: tuple[tuple[tuple[str, JobAction], ...], ...]
    if job.redo_of is not None:
        rows = ((("📎 Originals", JobAction.ORIGINALS), ("ℹ️ Details", JobAction.DETAILS)),)
    else:
        rows = (
            (
                ("🔁 Again", JobAction.AGAIN),
                ("📎 Originals", JobAction.ORIGINALS),
                ("ℹ️ Details", JobAction.DETAILS),
            ),
            (
                ("🗂 Sheet", JobAction.SHEET),
                ("📦 ZIP", JobAction.ZIP),
            ),
        )
        if story:
            rows += ((("➡️ Continue", JobAction.NEXT), ("✏️ Redo panel", JobAction.REDO)),)
    keyboard = [
        [
            InlineKeyboardButton(
                tr(job.lang, label), callback_data=encode(JobButton(action, job.id))
            )
            for label, action in row
        ]
        for row in rows
    ]
    if studio is not None:
        # A job's chat is private when its id is its user's (older rows have no chat_type).
        private = job.chat_type == "private" or (job.chat_type is None and job.chat_id > 0)
        # Under Sheet and ZIP; a redone panel's one row ends with it.
        keyboard[min(1, len(keyboard) - 1)].append(studio.button(job.lang, private=private))
    return InlineKeyboardMarkup(keyboard)


def panels_keyboard(job: Job, panels: list[int], lang: str | None) -> InlineKeyboardMarkup:
    """✏️ Redo: one button per panel (``panels``: 0-based indexes), five to a row, then ↩️ Back."""
    buttons = [
        InlineKeyboardButton(str(i + 1), callback_data=encode(PanelButton(job.id, i + 1)))
        for i in panels
    ]
    rows = [buttons[n : n + 5] for n in range(0, len(buttons), 5)]
    back = encode(JobButton(JobAction.BACK, job.id))
    rows.append([InlineKeyboardButton(tr(lang, "↩️ Back"), callback_data=back)])
    return InlineKeyboardMarkup(rows)


def story_line(job: Job, lang: str | None) -> str | None:
    """Where a job stands in a story: ``episode 2 of #12`` or ``panel 3 (v2) of #12``."""
    if job.episode is not None and job.story is not None:
        return tr(lang, "episode {n} of #{id}", n=job.episode, id=job.story)
    if job.redo_of is not None and job.redo_panel is not None:
        return tr(
            lang,
            "panel {n} (v{version}) of #{id}",
            n=job.redo_panel + 1,
            version=job.redo_version or 2,
            id=job.redo_of,
        )
    return None


def versions_line(versions: list[Job], lang: str | None) -> str | None:
    """Details: the redone panels, each version with its job: ``panel 3: v2 #15, v3 #17``."""
    by_panel: dict[int, list[str]] = {}
    for redo in versions:
        if redo.redo_panel is None or redo.status != Status.DONE:
            continue
        by_panel.setdefault(redo.redo_panel, []).append(f"v{redo.redo_version or 2} #{redo.id}")
    if not by_panel:
        return None
    panels = "; ".join(
        tr(lang, "panel {n}: {versions}", n=panel + 1, versions=", ".join(found))
        for panel, found in sorted(by_panel.items())
    )
    return tr(lang, "Versions: {panels} (the latest is used)", panels=panels)


def requester(job: Job, lang: str | None) -> str | None:
    """Who asked for the job, as /jobs, Details and refusals name them."""
    if job.chat_id < 0 and job.requester_id == job.chat_id:
        # Posted as the group itself: one of its anonymous admins. (A private chat's id is
        # its user's id: that is the user.)
        return tr(lang, "an admin of {chat}", chat=job.user_name or tr(lang, "the group"))
    return job.user_name


def details_text(job: Job, lang: str | None, versions: list[Job] | None = None) -> str:
    """Everything known about a job: prompt, parameters, request id, cost and times; in a
    story, its episode or the panel it redoes, and (``versions``: its redos) each panel's
    versions."""
    seed = (
        str(job.seed) if job.seed is not None else tr(lang, "random (RunComfy does not report it)")
    )
    cost = money(job.cost) if job.cost is not None else tr(lang, "unknown")
    lines = [
        tr(lang, "Job #{id} · {status}", id=job.id, status=status_word(job.status, lang)),
        tr(lang, "Prompt: {prompt}", prompt=shorten(job.prompt, 3000)),
        tr(
            lang,
            "Images: {count} · ratio {ratio} · mode {mode} · seed {seed}",
            count=job.count,
            ratio=schema.ratio_of(job.size),
            mode=job.mode,
            seed=seed,
        ),
        tr(lang, "Request: {request}", request=job.request_id or "–"),
        tr(lang, "Cost: {cost}", cost=cost),
    ]
    refs = refs_line(job, lang)
    if refs is not None:
        lines.insert(3, refs)
    story = story_line(job, lang)
    if story is not None:
        if job.continues is not None and job.continues != job.story:
            story = tr(lang, "{where}, after #{id}", where=story, id=job.continues)
        lines.insert(1, tr(lang, "Story: {where}", where=story))
    listed = versions_line(versions or [], lang)
    if listed is not None:
        lines.append(listed)
    times = []
    if job.submitted_at and job.started_at:
        times.append(tr(lang, "queued {t}", t=duration(job.started_at - job.submitted_at)))
    if job.started_at and job.completed_at:
        times.append(tr(lang, "generating {t}", t=duration(job.completed_at - job.started_at)))
    if job.completed_at and job.finished_at:
        times.append(tr(lang, "delivering {t}", t=duration(job.finished_at - job.completed_at)))
    if times:
        lines.append(tr(lang, "Times: {times}", times=" · ".join(times)))
    who = requester(job, lang)
    if who:
        lines.append(tr(lang, "Asked by {name}", name=who))
    return "\n".join(lines)


def settings_text(defaults: ChatDefaults, lang: str | None) -> str:
    """/settings: the chat's defaults for /seq."""
    count = defaults.count or schema.DEFAULT_COUNT
    ratio = schema.ratio_of(defaults.size or schema.DEFAULT_SIZE)
    mode = defaults.mode or schema.DEFAULT_MODE
    return tr(
        lang,
        "Defaults for /seq in this chat: {images} · {ratio} · {mode}.\n"
        "Options in a command still win. Tap to change:",
        images=plural(lang, count, "image"),
        ratio=ratio,
        mode=mode,
    )


def settings_keyboard(defaults: ChatDefaults, lang: str | None) -> InlineKeyboardMarkup:
    """Buttons for count, ratio and mode; the current choice is marked."""
    count = defaults.count or schema.DEFAULT_COUNT
    size = defaults.size or schema.DEFAULT_SIZE
    mode = defaults.mode or schema.DEFAULT_MODE

    def button(field: SettingField, value: str, current: bool) -> InlineKeyboardButton:
        data = encode(SettingButton(field, value))
        return InlineKeyboardButton(f"• {value}" if current else value, callback_data=data)

    counts = [button(SettingField.COUNT, str(n), n == count) for n in SETTINGS_COUNTS]
    ratios = [button(SettingField.RATIO, schema.ratio_of(s), s == size) for s in schema.SIZES]
    modes = [button(SettingField.MODE, m, m == mode) for m in schema.MODES]
    reset = [InlineKeyboardButton(tr(lang, "Reset"), callback_data=encode(ResetButton()))]
    return InlineKeyboardMarkup([counts[:5], counts[5:], ratios[:4], ratios[4:], modes, reset])


def status_keyboard(job: Job) -> InlineKeyboardMarkup | None:
    """A Cancel button while the job can still be cancelled."""
    if job.status in CANCELLABLE and not job.cancel_requested:
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        tr(job.lang, "Cancel"),
                        callback_data=encode(JobButton(JobAction.CANCEL, job.id)),
                    )
                ]
            ]
        )
    return None


def caption(job: Job) -> str:  # the prompt is the user's; only the parameters are ours
    """The first image's caption: the prompt, shortened to fit, then the parameters."""
    tail = f"\n\n{params_line(job)}"
    return shorten(job.prompt, CAPTION_LIMIT - utf16_len(tail)) + tail


def panel_captions(job: Job, items: tuple[int, ...], *, first: bool) -> dict[int, str] | None:
    """A script's captions for ``items``, by image index: each image's own panel, numbered;
    ``first``: the first item also carries the parameters. ``None`` when the job has no panels."""
    if not job.panels:
        return None
    captions: dict[int, str] = {}
    for n, index in enumerate(items):
        tail = f"\n\n{params_line(job)}" if first and n == 0 else ""
        if index < len(job.panels):
            head = f"{index + 1}. {job.panels[index]}"
            captions[index] = shorten(head, CAPTION_LIMIT - utf16_len(tail)) + tail
        elif tail:
            captions[index] = tail.lstrip()
    return captions


def unit_captions(job: Job, items: tuple[int, ...], *, first: bool) -> dict[int, str]:
    """The captions of one photo, document or album, by image index. ``first``: it is the job's
    first unit, whose first item carries the parameters. A script's images each carry their
    panel; otherwise only that first item has a caption."""
    if job.redo_of is not None and job.redo_panel is not None and items:
        return {items[0]: redo_caption(job, job.redo_panel, job.redo_version or 2, job.prompt)}
    panels = panel_captions(job, items, first=first)
    if panels is not None:
        return panels
    return {items[0]: caption(job)} if first and items else {}


def redo_caption(job: Job, panel: int, version: int, text: str, tail: str = "") -> str:
    """A redone panel's caption: ``3 (v2). …`` (``panel`` 0-based), then ``tail``, within the
    limit."""
    return shorten(f"{panel + 1} (v{version}). {text}", CAPTION_LIMIT - utf16_len(tail)) + tail


def versioned_captions(
    job: Job, items: tuple[int, ...], latest: dict[int, Job], *, first: bool
) -> dict[int, str]:
    """:func:`unit_captions`, with each redone panel of ``latest`` captioned as its version."""
    captions = unit_captions(job, items, first=first)
    for index in items:
        redo = latest.get(index)
        if redo is not None:
            # The set's first item keeps the parameters, whichever version it shows.
            tail = f"\n\n{params_line(job)}" if first and index == items[0] else ""
            captions[index] = redo_caption(job, index, redo.redo_version or 2, redo.prompt, tail)
    return captions


def split_balanced(n: int) -> list[int]:
    """Album sizes for ``n`` items: at most 10 each, as equal as possible (11 -> 6 + 5)."""
    if n <= 0:
        return []
    k = math.ceil(n / ALBUM_MAX)
    base, extra = divmod(n, k)
    return [base + 1 if i < extra else base for i in range(k)]


def delivery_plan(photos: list[int], documents: list[int]) -> list[DeliveryUnit]:
    """The sends, in order: albums of photos, then of documents (never both in one album).

    A unit of one item is a single send, so there is never an album of one.
    """
    plan: list[DeliveryUnit] = []
    for kind, indexes in ((UnitKind.PHOTO, photos), (UnitKind.DOCUMENT, documents)):
        start = 0
        for size in split_balanced(len(indexes)):
            plan.append(DeliveryUnit(kind, tuple(indexes[start : start + size])))
            start += size
    return plan


_STATUS_WORDS = {
    Status.NEW: "⏳ queued",
    Status.SUBMITTING: "⏳ queued",
    Status.QUEUED: "⏳ queued",
    Status.RUNNING: "🎨 generating",
    Status.SENDING: "📤 sending",
    Status.DONE: "✅ done",
    Status.FAILED: "❌ failed",
    Status.CANCELLED: "🚫 cancelled",
    Status.TIMED_OUT: "⌛ timed out",
}


def status_word(status: Status, lang: str | None) -> str:
    """``✅ done`` for /jobs and Details."""
    return tr(lang, _STATUS_WORDS[status])


def age(seconds: float, lang: str | None) -> str:
    """``42`` -> ``just now``; ``300`` -> ``5 min ago``; ``7200`` -> ``2 h ago``."""
    if seconds < 60:
        return tr(lang, "just now")
    if seconds < 3600:
        return tr(lang, "{n} min ago", n=int(seconds // 60))
    if seconds < 86400 * 2:
        return tr(lang, "{n} h ago", n=int(seconds // 3600))
    return tr(lang, "{n} days ago", n=int(seconds // 86400))


def jobs_list(jobs: list[Job], now: float, lang: str | None) -> str:
    """/jobs: the chat's latest jobs, one line each."""
    if not jobs:
        return tr(lang, "No jobs in this chat yet. Start one with /seq.")
    lines = [tr(lang, "Latest jobs in this chat:")]
    for job in jobs:
        name = requester(job, lang)
        who = f" · {name}" if name else ""
        refs = f" · 🖼 {len(job.refs)}" if job.refs else ""
        story = story_line(job, lang)
        where = f" · {story}" if story else ""
        lines.append(
            f"#{job.id} {status_word(job.status, lang)} · {plural(lang, job.count, 'image')}"
            f"{refs}{where} · {schema.ratio_of(job.size)} · {age(now - job.created_at, lang)}"
            f"{who}"
        )
    done = next((job for job in jobs if job.status == Status.DONE), None)
    if done is not None:
        lines.append(tr(lang, "/show {id} sends a job's images again, free.", id=done.id))
    return "\n".join(lines)


def money(usd: float) -> str:
    """``0.12`` -> ``$0.12``."""
    return f"${usd:.2f}"


def usage_text(
    lang: str | None,
    *,
    today: Usage,
    month: Usage,
    limit: int,
    exempt: bool,
    resets_in: str,
    per_chat: list[tuple[int, int, int, float]] | None = None,
) -> str:
    """/usage: images and cost today and this month; per-chat totals for bot admins."""
    lines = [
        tr(
            lang,
            "Today (UTC): {images}, {cost}",
            images=plural(lang, today.images, "image"),
            cost=money(today.cost),
        ),
        tr(
            lang,
            "This month: {images}, {cost}",
            images=plural(lang, month.images, "image"),
            cost=money(month.cost),
        ),
    ]
    if month.unknown:
        lines.append(
            tr(
                lang,
                "Counted as spent: {images} whose request RunComfy did not answer "
                "(it may have made and billed them; their cost is not known).",
                images=Plural(month.unknown, "image"),
            )
        )
    if exempt:
        lines.append(tr(lang, "As a bot admin you have no daily limit."))
    elif limit:
        left = max(0, limit - today.images)
        lines.append(
            tr(
                lang,
                "Daily limit: {limit} images, {left} left; resets in {resets_in}.",
                limit=limit,
                left=left,
                resets_in=resets_in,
            )
        )
    if per_chat is not None:
        lines.append("")
        lines.append(
            tr(lang, "All chats this month:")
            if per_chat
            else tr(lang, "No jobs in any chat this month.")
        )
        lines += [
            f"{chat_id}: {plural(lang, jobs, 'job')}, {plural(lang, images, 'image')}, "
            f"{money(cost)}"
            for chat_id, jobs, images, cost in per_chat[:30]
        ]
    return "\n".join(lines)


def admin_totals_pointer(lang: str | None, username: str | None) -> str:
    """Under a bot admin's /usage in a group: where every chat's totals are shown instead."""
    if username:
        return tr(
            lang,
            "Totals for every chat: send /usage in your private chat with me (t.me/{bot}).",
            bot=username,
        )
    return tr(lang, "Totals for every chat: send /usage in your private chat with me.")
