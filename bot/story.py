"""➡️ Continue and ✏️ Redo one panel (issue 21): a finished job's next episode, or a new version
of one of its panels, as a new job with reference images.

:class:`Story` is called by the chat handlers (``story_handlers``) and may be by any other front
(the Mini App's API): ``start_continue`` and ``start_redo`` take the job, who asks (an
``Origin``) and their text, and return the new job, ``None`` when that origin made one already,
or raise a user-safe ``SeqbotError`` with nothing written or billed. Every new job goes the way a
``/seq`` goes (``JobRunner.start``: quotas, spend caps, Stars, the row before the submit).

The pure parts (which panels, in which order, what RunComfy is told) are the module's functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
from itertools import groupby

from bot import cast, limits, refimages, schema
from bot.cast import naming_text
from bot.command import as_one_image, parse_answer, script_panels
from bot.config import Settings
from bot.errors import InputError
from bot.intake import StartJob
from bot.models import Job, Origin, Reference, SeqRequest, Status
from bot.originals import OriginalsCache
from bot.refimages import UnusableImage
from bot.store import Store

log = logging.getLogger(__name__)

CONTINUE_PANELS = 3  # the previous episode's last panels a Continue shows the model
REDO_PANELS = 9  # the other panels a redo shows the model, nearest first
# An answer to ✏️ Redo's question that keeps the panel's text.
_SAME = re.compile(r"(?:same|the same|keep|=|то же|тот же|та же|так же|также|same text)[.!]?", re.I)


# ---- pure ---------------------------------------------------------------------------------------


def cast_of(job: Job) -> list[Reference]:
    """The job's saved characters (references of kind "cast"), in their order."""
    return [r for r in job.refs if r.kind == "cast"]


def delivered_panels(job: Job) -> list[int]:
    """The indexes of the job's delivered images, in panel order."""
    return sorted({i for n in job.delivered for i in (job.plan or [])[n].items})


def nearest(panels: list[int], panel: int, limit: int) -> list[int]:
    """``panels`` other than ``panel``, nearest first (the earlier of two equally near), at most
    ``limit``."""
    others = [p for p in panels if p != panel]
    return sorted(others, key=lambda p: (abs(p - panel), p))[: max(limit, 0)]


def is_same(text: str) -> bool:
    """Whether an answer to ✏️ Redo's question means "keep the panel's text"."""
    return bool(_SAME.fullmatch(text.strip()))


def panel_text(job: Job, panel: int) -> str:
    """The text panel ``panel`` (0-based) was made from: its script item, else the prompt."""
    if panel < len(job.panels):
        return job.panels[panel]
    return job.prompt


def _numbers(first: int, count: int) -> str:
    return f"Image {first}" if count == 1 else f"Images {first}–{first + count - 1}"


def reference_note(cast: list[Reference], panels: int, what: str) -> str:
    """What RunComfy is told about the references: each character by name (the cast comes
    first), then the ``panels`` images after them, ``what`` they are."""
    named = [(name, len(list(group))) for name, group in groupby(ref.name for ref in cast)]
    parts = [naming_text(named)] if cast else []
    if panels:
        verb = "is" if panels == 1 else "are"
        parts.append(f"{_numbers(len(cast) + 1, panels)} {verb} {what}.")
    return " ".join(parts)


def _fits(text: str) -> str:
    if len(text) > schema.MAX_TEXT:
        raise InputError(
            "That text is too long by {over} characters, with what the bot tells the model about "
            "the reference images. Please shorten it.",
            over=len(text) - schema.MAX_TEXT,
        )
    return text


def continue_request(job: Job, text: str) -> SeqRequest:
    """The next episode's request, without its references yet: the answer, a prompt or a
    numbered script, with the previous job's count, ratio and mode (a script: one image per
    item)."""
    request = parse_answer(text, count=job.count, size=job.size, mode=job.mode)
    if request is None:
        raise InputError("Reply with what happens next, in words or as a numbered script.")
    return dataclasses.replace(
        request,
        continues=job.id,
        story=job.story or job.id,
        episode=(job.episode or 1) + 1,
    )


def continue_panel_room(cast: int, count: int) -> int:
    """How many of the last panels fit beside ``cast`` references and ``count`` new images."""
    return min(CONTINUE_PANELS, schema.MAX_REFS - cast, schema.MAX_REFS_AND_IMAGES - count - cast)


def redo_text(job: Job, panel: int, text: str, cast: list[Reference], others: int) -> str:
    """What RunComfy is told for a redo: one image, the script's shared context, what the
    references are, then the panel's text."""
    parts = ["Generate 1 image."]
    script = script_panels(job.prompt) if job.panels else None
    if script is not None and script[0]:
        parts.append(script[0])
    note = reference_note(cast, others, "other panels of the same series: match them")
    if note:
        parts.append(note)
    parts.append(as_one_image(text))
    return _fits(" ".join(parts))


# ---- the service --------------------------------------------------------------------------------


class Story:
    """Starts the next episode of a job, or a new version of one of its panels."""

    def __init__(
        self, settings: Settings, store: Store, originals: OriginalsCache, start_job: StartJob
    ) -> None:
        self.settings = settings
        self.store = store
        self.originals = originals
        self.start_job = start_job

    def _cast(self, job: Job, origin: Origin) -> list[Reference]:
        """The job's characters the new job takes: its requester's own, still saved."""
        if not cast_of(job) or job.requester_id is None:
            return []
        saved = (cast.key(m.name) for m in self.store.cast_list(job.requester_id))
        return cast.carried(job, origin.requester_id, saved)

    def check(self, job: Job) -> None:
        """Whether the job can be continued or redone at all; InputError says why not."""
        if not self.settings.public_url:
            raise InputError(
                "This bot is not set up for reference images. Send /seq with text only."
            )
        if job.redo_of is not None:
            raise InputError(
                "Continue or redo the set this panel belongs to, #{id}.", id=job.redo_of
            )
        if job.status != Status.DONE or not delivered_panels(job):
            raise InputError("Job #{id} has no delivered images to go on from.", id=job.id)

    def _may(self, origin: Origin) -> None:
        """The allowlists, as for /seq (RefusedError); the spend limits follow in the start."""
        limits.check_access(self.settings, user_id=origin.user_id, chat_id=origin.chat_id)

    def panels(self, job: Job) -> list[int]:
        """The panels ✏️ Redo offers: the delivered ones (0-based)."""
        return delivered_panels(job)

    async def start_continue(self, job: Job, origin: Origin, text: str) -> Job | None:
        """➡️ Continue: ``text`` (a prompt or a numbered script) becomes the next episode, with
        the job's last panels (their latest versions, up to 3) and its cast as references."""
        self._may(origin)
        self.check(job)
        request = continue_request(job, text)
        cast = self._cast(job, origin)
        room = continue_panel_room(len(cast), request.count)
        if room < 1 and len(cast) < schema.MAX_REFS:
            raise InputError(
                "An episode of {count} images leaves no room for the previous panels as "
                "references: ask for at most {most}.",
                count=request.count,
                most=schema.MAX_REFS_AND_IMAGES - len(cast) - 1,
            )
        # A cast of ten leaves no room for panels: the characters alone carry the story on.
        panels = delivered_panels(job)[-room:] if room > 0 else []
        schema.check_refs(len(cast) + len(panels), request.count)
        note = reference_note(
            cast, len(panels), "the last panels of the previous episode: continue from them"
        )
        request = dataclasses.replace(request, text=_fits(f"{note} {request.text}"))
        refs, files = await self._references(job, cast, panels)
        return await self.start_job(
            dataclasses.replace(request, refs=tuple(refs)), origin, ref_files=files
        )

    async def start_redo(self, job: Job, panel: int, origin: Origin, text: str) -> Job | None:
        """✏️ Redo: a one-image job for panel ``panel`` (0-based), with ``text`` (or "same": the
        panel's own), the cast and the other panels (nearest first) as references."""
        self._may(origin)
        self.check(job)
        if panel not in delivered_panels(job):
            raise InputError("Job #{id} has no panel {n}.", id=job.id, n=panel + 1)
        wanted = text.strip()
        if not wanted:
            raise InputError("Reply with the panel's new text, or “same” to keep it.")
        wanted = panel_text(job, panel) if is_same(wanted) else wanted
        cast = self._cast(job, origin)
        others = nearest(
            delivered_panels(job), panel, min(REDO_PANELS, schema.MAX_REFS - len(cast))
        )
        schema.check_refs(len(cast) + len(others), 1)
        request = SeqRequest(
            count=1,
            size=job.size,
            mode=job.mode,
            seed=None,
            prompt=wanted,
            text=redo_text(job, panel, wanted, cast, len(others)),
            redo_of=job.id,
            redo_panel=panel,
            redo_version=self.store.next_version(job.id, panel),
        )
        refs, files = await self._references(job, cast, others)
        return await self.start_job(
            dataclasses.replace(request, refs=tuple(refs)), origin, ref_files=files
        )

    async def _references(
        self, job: Job, cast: list[Reference], panels: list[int]
    ) -> tuple[list[Reference], dict[str, bytes]]:
        """The new job's references: the cast (its kept files, under new ids), then each panel's
        latest version, cleaned as any reference is. InputError when any is no longer kept."""
        refs: list[Reference] = []
        files: dict[str, bytes] = {}
        for ref in cast:
            data = await self.originals.load_ref(job.id, ref.id)
            if data is None:
                raise self._gone(job)
            new = dataclasses.replace(ref, id=secrets.token_urlsafe(12))
            refs.append(new)
            files[new.id] = data
        latest = self.store.latest_versions(job.id)
        for panel in panels:
            redo = latest.get(panel)
            data = await self.originals.load(redo.id, 0) if redo is not None else None
            if data is None:
                data = await self.originals.load(job.id, panel)
            if data is None:
                raise self._gone(job)
            try:
                image = await asyncio.to_thread(refimages.clean, data)
            except UnusableImage:
                log.warning("job %d: panel %d cannot be a reference", job.id, panel + 1)
                raise self._gone(job) from None
            new = Reference(
                id=secrets.token_urlsafe(12),
                kind="result",
                chat_id=job.chat_id,
                message_id=job.actions_message_id or job.message_id,
                width=image.width,
                height=image.height,
                size=len(image.data),
                job_id=redo.id if redo is not None else job.id,
            )
            refs.append(new)
            files[new.id] = image.data
        return refs, files

    @staticmethod
    def _gone(job: Job) -> InputError:
        return InputError(
            "The images of job #{id} are no longer kept, so it cannot go on; nothing was "
            "charged. Start again with /seq.",
            id=job.id,
        )
