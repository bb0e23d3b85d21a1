"""The studio's actions: each one the chat's own code (``bot.again``, ``FileRequests.request``),
landing in the person's private chat with the bot.

Continue, Redo and "use as a character" belong to the story and cast work: each is one function
set in ``StudioActions.extra`` (``wire``); until then they answer ``unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from telegram.error import Forbidden, TelegramError

from bot import again, limits, schema
from bot.callbacks import JobAction
from bot.errors import SeqbotError
from bot.models import Job, Origin, Status
from bot.repeats import Recent
from bot.texts import tr
from bot.thumbs import delivered_indexes
from bot.web.studio.service import ApiRefusal, Person, Studio
from bot.web.studio.views import ImageUrl

if TYPE_CHECKING:
    from bot.delivery import Delivery
    from bot.intake import Intake
    from bot.story import Story

log = logging.getLogger(__name__)

ACTIONS = ("again", "continue", "redo", "sheet", "zip", "originals", "cast", "hide")
_FILES = {"sheet": JobAction.SHEET, "zip": JobAction.ZIP, "originals": JobAction.ORIGINALS}
_FILES_FROM = {
    JobAction.SHEET: "🗂 Sheet, from the studio: job #{id}",
    JobAction.ZIP: "📦 ZIP, from the studio: job #{id}",
    JobAction.ORIGINALS: "📎 Originals, from the studio: job #{id}",
}
TEXT_MAX = schema.MAX_TEXT  # a Continue's or Redo's text: as much as a /seq prompt may carry
NAME_MAX = 32  # a character's name
PANEL_MAX = 999
_ANSWER_WAIT = 10.0  # seconds a files request may take to say what it does


@dataclass(frozen=True)
class ActionRequest:
    """One checked action request: what, on which panel, with which text or name."""

    action: str
    panel: int | None = None
    text: str | None = None
    name: str | None = None


# What an action answers: its message and the new job's id (or None).
Started = tuple[str, int | None]
# (person, job, request) -> Started: Continue, Redo, Cast, from their own code (``wire``).
Extra = Callable[[Person, Job, ActionRequest], Awaitable[Started]]


class CastBook(Protocol):
    """The person's saved characters, as the cast's code keeps them (``/cast``)."""

    async def list(self, person: Person, url: ImageUrl) -> list[dict]:
        """``[{"id", "name", "thumbs": [url...]}]``."""

    async def remove(self, person: Person, character_id: int) -> bool:
        """Remove one of the person's characters; False if there is no such one of theirs."""


def parse(body: Any) -> ActionRequest:
    """The JSON body of an action, checked and bounded; ApiRefusal ``bad_request`` otherwise."""
    if not isinstance(body, dict) or body.get("action") not in ACTIONS:
        raise ApiRefusal("bad_request")
    action = body["action"]
    panel = body.get("panel")
    text = body.get("text")
    name = body.get("name")
    if panel is not None and (
        not isinstance(panel, int) or isinstance(panel, bool) or not 0 <= panel <= PANEL_MAX
    ):
        raise ApiRefusal("bad_request")
    if text is not None and (not isinstance(text, str) or not 0 < len(text.strip()) <= TEXT_MAX):
        raise ApiRefusal("bad_request")
    if name is not None and (not isinstance(name, str) or not 0 < len(name.strip()) <= NAME_MAX):
        raise ApiRefusal("bad_request")
    if action in ("redo", "cast") and panel is None:
        raise ApiRefusal("bad_request")
    if action == "cast" and name is None:
        raise ApiRefusal("bad_request")
    return ActionRequest(
        action,
        panel,
        text.strip() if isinstance(text, str) else None,
        name.strip() if isinstance(name, str) else None,
    )


def private_origin(person: Person, anchor: int) -> Origin:
    """A job started from the studio: in the person's private chat, answering ``anchor``."""
    return Origin(
        chat_id=person.id,
        message_id=anchor,
        user_id=person.id,
        requester_id=person.id,
        user_name=person.first_name or None,
        thread_id=None,
        chat_type="private",
        lang=person.lang,
    )


class StudioActions:
    """Runs an action for a person on one of their jobs."""

    def __init__(
        self, studio: Studio, start: again.Starts, delivery: Delivery, intake: Intake | None
    ) -> None:
        self.studio = studio
        self.start = start  # JobRunner.start
        self.delivery = delivery
        self.intake = intake
        self.extra: dict[str, Extra] = {}  # "continue", "redo", "cast" once wired
        self.cast: CastBook | None = None  # the saved characters, once wired
        # (person, job) -> (when, new job id): an Again repeated within REPEAT_WINDOW_SECONDS
        # says so instead of starting (and billing) another job.
        # (person, job) -> the job its Again started, for REPEAT_WINDOW_SECONDS.
        self._agains: Recent[tuple[int, int], int] = Recent(studio.settings.repeat_window)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting: set[tuple[int, int, str]] = set()  # (person, job, action) under way

    def wire(self, action: str, run: Extra) -> None:
        """Make Continue, Redo or Cast one call to the story's or cast's code."""
        if action not in ("continue", "redo", "cast"):
            raise ValueError(action)
        self.extra[action] = run

    async def allowed(self, job: Job) -> list[str]:
        """The actions the job allows now, in the contract's order."""
        done = job.status == Status.DONE
        kept = done and await self._kept(job)
        names = []
        for name in ACTIONS:
            if name == "again":
                ok = job.final
            elif name in ("sheet", "zip"):
                ok = kept
            elif name == "originals":
                ok = kept or (done and all(str(i) in job.originals for i in delivered_indexes(job)))
            elif name == "hide":
                ok = job.final
            else:
                # Continue, Redo, Cast: a set's own (not a redone panel's), once wired.
                ok = done and name in self.extra and job.redo_of is None
                if name == "cast":  # characters turned off (CAST_MAX_PER_PERSON=0)
                    ok = ok and self.studio.settings.cast_max_per_person > 0
            if ok:
                names.append(name)
        return names

    async def _kept(self, job: Job) -> bool:
        indexes = delivered_indexes(job)
        return bool(indexes) and await self.studio.originals.files(job.id, indexes) is not None

    async def run(self, person: Person, job: Job, request: ActionRequest) -> dict:
        """Do it; ``{"ok": true, "message", "job_id"}``, or ApiRefusal."""
        if request.action not in await self.allowed(job):
            if request.action in ("continue", "redo", "cast") and request.action not in self.extra:
                raise ApiRefusal("unavailable")
            raise ApiRefusal(
                "bad_request", tr(person.lang, "This cannot be done with job #{id} now.", id=job.id)
            )
        # A paid action starts once at a time per person and job: two taps (a phone and a
        # desktop, say) before the first is answered start one job, not two.
        key = (person.id, job.id, request.action)
        if key in self._starting:
            raise ApiRefusal("bad_request", tr(person.lang, "That is being started already."))
        self._starting.add(key)
        try:
            return await self._run(person, job, request)
        finally:
            self._starting.discard(key)

    async def _run(self, person: Person, job: Job, request: ActionRequest) -> dict:
        try:
            if request.action != "hide":
                limits.check_access(self.studio.settings, user_id=person.id, chat_id=person.id)
            if request.action == "again":
                message, new = await self._again(person, job)
            elif request.action in _FILES:
                message, new = await self._files(person, job, _FILES[request.action]), None
            elif request.action == "hide":
                message, new = await self._hide(person, job), None
            else:
                message, new = await self.extra[request.action](person, job, request)
        except SeqbotError as exc:
            raise ApiRefusal("bad_request", exc.text(person.lang)) from None
        return {"ok": True, "message": message, "job_id": new}

    # ---- each action ----------------------------------------------------------------------------

    async def anchor(self, person: Person, text: str) -> int:
        """A message in the person's private chat that what follows answers."""
        try:
            message = await self.studio.bot.send_message(chat_id=person.id, text=text)
        except Forbidden:
            raise ApiRefusal(
                "bad_request",
                tr(
                    person.lang,
                    "Open the chat with the bot first (press Start there), then try again.",
                ),
            ) from None
        except TelegramError as exc:
            log.warning("studio: no message to %d: %s", person.id, type(exc).__name__)
            raise ApiRefusal("unavailable") from None
        return int(message.message_id)

    async def _again(self, person: Person, job: Job) -> tuple[str, int | None]:
        earlier = self._agains.get((person.id, job.id))
        if earlier is not None:
            return tr(person.lang, "Already started: job #{id}.", id=earlier), earlier
        if job.chat_id == person.id and job.actions_message_id is not None:
            # The job's own follow-up in this chat: one Again per follow-up, as its button.
            anchor = job.actions_message_id
        else:
            anchor = await self.anchor(
                person, tr(person.lang, "🔁 Again, from the studio: job #{id}", id=job.id)
            )
        origin = private_origin(person, anchor)
        assert self.intake is not None, "the studio runs with the bot's intake"
        started = await again.start_again(
            job,
            origin,
            start=self.start,
            intake=self.intake,
            store=self.studio.store,
            settings=self.studio.settings,
        )
        if started is None:
            return tr(person.lang, "Already started from this message: see the job below."), None
        self._agains.put((person.id, job.id), started.id)
        return tr(person.lang, "Job #{id}: same settings, new seed.", id=started.id), started.id

    async def _files(self, person: Person, job: Job, action: JobAction) -> str:
        """Sheet, ZIP, Originals: the chat's own request; answered as soon as it says what it
        does, the send going on in the background."""
        said: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def answer(text: str) -> None:
            if not said.done():
                said.set_result(text)

        in_private = job.chat_id == person.id
        if in_private:
            reply_to = job.actions_message_id
        else:
            # A group job's files go to the private chat: a first message there says which job
            # they are, and refuses at once (not in a background send) if that chat is closed.
            reply_to = await self.anchor(person, tr(person.lang, _FILES_FROM[action], id=job.id))

        async def send() -> None:
            sent = await self.delivery.request(
                job,
                action,
                reply_to=reply_to,
                lang=person.lang,
                answer=answer,
                to=None if in_private else (person.id, None),
            )
            if sent is False:
                await self.studio.bot.send_message(
                    chat_id=person.id,
                    text=tr(
                        person.lang,
                        "The original files of job #{id} are no longer kept.",
                        id=job.id,
                    ),
                )

        task = asyncio.create_task(self._guarded(send(), job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(said), _ANSWER_WAIT)
        except TimeoutError:
            raise ApiRefusal("unavailable") from None

    async def _guarded(self, work: Awaitable[None], job: Job) -> None:
        try:
            await work
        except Exception:
            log.exception("job %d: a studio request failed", job.id)

    async def _hide(self, person: Person, job: Job) -> str:
        if any(not redo.final for redo in self.studio.store.redos(job.id)):
            # Its files are the running redo's references: hidden once that one has ended.
            raise ApiRefusal(
                "bad_request",
                tr(
                    person.lang,
                    "A panel of job #{id} is being redone; hide it after that.",
                    id=job.id,
                ),
            )
        for hidden in self.studio.store.hide(job.id):
            await self.studio.originals.remove(hidden)
        log.info("job %d: hidden from the studio by its requester; kept files removed", job.id)
        return tr(
            person.lang,
            "Job #{id} is hidden from the studio; its kept files were deleted.",
            id=job.id,
        )

    async def stop(self) -> None:
        """Wait for the sends under way (the bot is stopping)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))


def wire_story(actions: StudioActions, story: Story) -> None:
    """➡️ Continue and ✏️ Redo panel from the studio: the story's own calls (``Story``), as the
    answer to the chat's question makes them, in the person's private chat."""

    async def next_episode(person: Person, job: Job, request: ActionRequest) -> Started:
        if request.text is None:
            raise ApiRefusal("bad_request")
        story.check(job)  # before anything is posted
        anchor = await actions.anchor(
            person,
            tr(person.lang, "➡️ Continue, from the studio: job #{id}", id=job.id)
            + f"\n{request.text}",
        )
        started = await story.start_continue(job, private_origin(person, anchor), request.text)
        return _started(person, started)

    async def redo(person: Person, job: Job, request: ActionRequest) -> Started:
        if request.panel is None or request.text is None:
            raise ApiRefusal("bad_request")
        story.check(job)
        if request.panel not in story.panels(job):
            raise ApiRefusal("bad_request", tr(person.lang, "Job #{id} has no panel {n}.",
                                               id=job.id, n=request.panel + 1))  # fmt: skip
        anchor = await actions.anchor(
            person,
            tr(
                person.lang,
                "✏️ Redo panel {n}, from the studio: job #{id}",
                n=request.panel + 1,
                id=job.id,
            )
            + f"\n{request.text}",
        )
        origin = private_origin(person, anchor)
        started = await story.start_redo(job, request.panel, origin, request.text)
        return _started(person, started)

    actions.wire("continue", next_episode)
    actions.wire("redo", redo)


def _started(person: Person, job: Job | None) -> Started:
    if job is None:  # the anchor is new each time: only a message delivered twice gets here
        return tr(person.lang, "Already started from this message: see the job below."), None
    return tr(person.lang, "Job #{id} started: see the chat.", id=job.id), job.id
