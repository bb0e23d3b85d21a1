"""🔁 Again, the one implementation: the chat's button and the studio both start the new job here.

The same parameters with a new seed, the kept reference images copied under new ids, under the
same rules as /seq (``JobRunner.start``: access, limits, credits).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from bot import cast, schema
from bot.errors import RefusedError
from bot.models import Job, Origin, Reference, SeqRequest

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.intake import Intake
    from bot.store import Store


class Starts(Protocol):
    """``JobRunner.start``: check the limits, record the job, start it."""

    async def __call__(
        self, request: SeqRequest, origin: Origin, *, ref_files: Mapping[str, bytes] | None = None
    ) -> Job | None:
        """The new job; None when ``origin``'s message made one already."""


class NoReferencesError(RefusedError):
    """The job had reference images, but this bot is not set up for them (PUBLIC_URL unset)."""


class ReferencesGoneError(RefusedError):
    """The job's reference images are no longer kept: nothing was started or charged."""


async def start_again(
    job: Job,
    origin: Origin,
    *,
    start: Starts,
    intake: Intake,
    store: Store,
    settings: Settings,
) -> Job | None:
    """Start ``job`` again for ``origin``; None when ``origin``'s message started one already.

    Raises SeqbotError (NoReferencesError, ReferencesGoneError, or whatever /seq's rules say) with nothing
    written or billed.
    """
    refs: tuple[Reference, ...] = ()
    ref_files: dict[str, bytes] | None = None
    if job.refs:
        if settings.public_url is None:
            raise NoReferencesError(
                "This bot is not set up for reference images. Send /seq with text only."
            )
        # Started from this message already: ``start`` says so (nothing copied for nothing).
        if store.job_for_message(origin.chat_id, origin.message_id) is None:
            kept = await intake.kept_refs(job)
            if kept is None:
                raise ReferencesGoneError(
                    "The reference images of job #{id} are no longer kept, so it cannot be "
                    "run again; nothing was charged. Send them again with /seq.",
                    id=job.id,
                )
            refs, ref_files = kept
        _check_cast(job, origin, store)
    request = SeqRequest(
        count=job.count,
        size=job.size,
        mode=job.mode,
        seed=secrets.randbelow(schema.MAX_SEED + 1),
        prompt=job.prompt,
        text=job.text,
        panels=tuple(job.panels),
        refs=refs,
    )
    return await start(request, origin, ref_files=ref_files)


def _check_cast(job: Job, origin: Origin, store: Store) -> None:
    """Again repeats the job's text, which names its characters: refused unless every one of
    them may still be used by whoever asks (the owner, with the character still saved)."""
    used = [ref for ref in job.refs if ref.kind == "cast"]
    if not used or job.requester_id is None:
        return
    saved = (cast.key(m.name) for m in store.cast_list(job.requester_id))
    if len(cast.carried(job, origin.requester_id, saved)) < len(used):
        raise RefusedError(
            "Job #{id} used saved characters that are not yours, or were removed, so it cannot "
            "be run again; nothing was charged. Start a new one with /seq cast=….",
            id=job.id,
        )
