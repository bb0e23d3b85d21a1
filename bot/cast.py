"""Saved characters (``/cast``): names, the command's arguments, and the text that names the
characters' images for the model (pure).

A name is 1–24 letters, digits or ``_`` in any alphabet, kept as written (NFC) and matched
case-insensitively (its ``key``: casefolded). The images of the characters a ``/seq`` names go
first among its references, so the text RunComfy gets starts with "Image 1 is anna. Image 2 is
rex." and the prompt follows within the schema's 600 characters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot import schema
from bot.errors import InputError
from bot.models import Job, Reference
from bot.texts import Plural

NAME_MAX = 24
MAX_IMAGES = 3  # images per character
# A character's images are kept for good, in the database: smaller than a one-off reference
# (4096 px), plenty for the model to know a face or a logo, and a third of the bytes.
IMAGE_MAX_SIDE = 2048
# One character per reference at most: more names than references could never be sent.
MAX_NAMES = schema.MAX_REFS

_ADD = frozenset({"add", "save", "new"})
_REMOVE = frozenset({"remove", "rm", "delete", "del"})
_LIST = frozenset({"", "list", "ls"})


@dataclass(frozen=True)
class CastCommand:
    """What ``/cast …`` asks: ``list``, ``add`` or ``remove`` (with a name), or ``help``."""

    action: str
    name: str = ""


def _short(s: str, limit: int = 30) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def check_name(raw: str) -> str:
    """The name as kept (NFC); InputError when it breaks the rules."""
    name = unicodedata.normalize("NFC", raw.strip())
    if not name:
        raise InputError("Give the character a name, e.g. /cast add anna")
    if len(name) > NAME_MAX or not all(c.isalnum() or c == "_" for c in name):
        raise InputError(
            "A character's name is 1–{limit} letters, digits or _ (you gave {given!r}).",
            limit=NAME_MAX,
            given=_short(name),
        )
    return name


def key(name: str) -> str:
    """How names are matched: ``Anna``, ``ANNA`` and ``anna`` are one character."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def parse_command(args: str) -> CastCommand:
    """``/cast``, ``/cast add NAME``, ``/cast remove NAME``; ``help`` for anything else.

    Raises InputError for a name that breaks the rules."""
    words = args.split()
    verb = words[0].lower() if words else ""
    if verb in _LIST and len(words) <= 1:
        return CastCommand("list")
    if verb in _ADD | _REMOVE:
        if len(words) != 2:
            if len(words) == 1:
                raise InputError("Give the character a name, e.g. /cast add anna")
            raise InputError("A character's name is one word: letters, digits or _ (e.g. anna_2).")
        return CastCommand("add" if verb in _ADD else "remove", check_name(words[1]))
    return CastCommand("help")


def parse_names(value: str) -> tuple[str, ...]:
    """``cast=anna,rex`` -> ``("anna", "rex")``: each checked, none twice, at most MAX_NAMES."""
    names = tuple(check_name(part) for part in value.split(","))
    if len(names) > MAX_NAMES:
        raise InputError(
            "At most {limit} characters can be in one job; you named {names}.",
            limit=MAX_NAMES,
            names=len(names),
        )
    seen: set[str] = set()
    for name in names:
        if key(name) in seen:
            raise InputError("You named {name} twice in cast=.", name=name)
        seen.add(key(name))
    return names


def _numbers(first: int, count: int) -> str:
    numbers = [str(n) for n in range(first, first + count)]
    if count == 1:
        return f"Image {numbers[0]} is"
    return f"Images {', '.join(numbers[:-1])} and {numbers[-1]} are"


def naming_text(cast: Sequence[tuple[str, int]]) -> str:
    """ "Image 1 is anna. Images 2 and 3 are rex.": each character's name and how many images
    it has, in the order its images go to the model (first, before any other reference)."""
    parts = []
    first = 1
    for name, count in cast:
        parts.append(f"{_numbers(first, count)} {name}.")
        first += count
    return " ".join(parts)


def with_naming(text: str, cast: Sequence[tuple[str, int]]) -> str:
    """RunComfy's ``text`` with the characters named first; InputError past the schema's limit."""
    if not cast:
        return text
    full = f"{naming_text(cast)} {text}"
    if len(full) > schema.MAX_TEXT:
        raise InputError(
            "Your prompt is {over} too long with its characters named (the limit is {limit}, "
            "counting the “Image 1 is anna.” the bot adds for each character).",
            over=Plural(len(full) - schema.MAX_TEXT, "character"),
            limit=schema.MAX_TEXT,
        )
    return full


def carried(job: Job, requester_id: int | None, saved: Iterable[str]) -> list[Reference]:
    """The job's characters (its references of kind "cast") that a new job of ``requester_id``
    may carry on: only if it is the job's own requester (a cast is its owner's, never a group's
    to pass around), and only those still saved (``saved``: the keys of the owner's names)."""
    if requester_id is None or requester_id != job.requester_id:
        return []
    keys = set(saved)
    return [ref for ref in job.refs if ref.kind == "cast" and key(ref.name) in keys]
