"""Parsing ``/seq [count] [ratio] [seed=N] [mode=fast|standard] prompt…`` into a request (pure).

A prompt that is a numbered list (a script) makes one image per item, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import cast as cast_names
from bot import schema
from bot.errors import InputError
from bot.models import ChatDefaults, SeqRequest
from bot.texts import Plural

if TYPE_CHECKING:
    from telegram import Message

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15,
}  # fmt: skip
_RUSSIAN_NUMBER_WORDS = {
    "одно": 1, "одна": 1, "один": 1, "два": 2, "две": 2, "три": 3, "четыре": 4, "пять": 5,
    "шесть": 6, "семь": 7, "восемь": 8, "девять": 9, "десять": 10, "одиннадцать": 11,
    "двенадцать": 12, "тринадцать": 13, "четырнадцать": 14, "пятнадцать": 15,
}  # fmt: skip
_NUMBER_WORDS.update(_RUSSIAN_NUMBER_WORDS)
_RUSSIAN_NOUNS = (
    r"|изображени[еяй]|картин(?:ка|ки|ок)|фото(?:графи[йия])?|иллюстраци[йия]"
    r"|кадр(?:а|ов)?|рисун(?:ок|ка|ков)|сцен[аы]?"
)
_IMAGE_NOUNS = (
    r"images?|pictures?|pics?|photos?|photographs?|illustrations?|frames?|panels?|shots?|"
    r"renders?|drawings?|paintings?|artworks?|variations?|versions?|scenes?|slides?|stills?"
    + _RUSSIAN_NOUNS
)
# "4 images", "four consecutive images", "6 comic-style panels": a number, at most two words,
# then a noun that names pictures. "four seasons" is not a count of images.
_PROMPT_COUNT_RE = re.compile(
    rf"\b(?P<n>[0-9]+|{'|'.join(_NUMBER_WORDS)})\s+(?:[\w'-]+\s+){{0,2}}?(?:{_IMAGE_NOUNS})\b",
    re.IGNORECASE,
)
_COMMAND_RE = re.compile(r"^/\w+(?:@\w+)?")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")  # ASCII digits only, like every number the bot reads
_RATIO_RE = re.compile(r"^[0-9]+[:x×][0-9]+$")
_OPTION_RE = re.compile(r"^(?P<key>[A-Za-z_]+)=(?P<value>.*)$")
_TOKEN_RE = re.compile(r"\s*(\S+)")
# One panel of a script, alone on its line: "1. …", "1) …", "Panel 1: …", "Кадр 1: …".
_PANEL_RE = re.compile(
    r"^(?:(?:panel|frame|scene|shot|кадр|сцена|панель)\s*(?P<word_n>[0-9]{1,3})\s*[:.)\-–—]"
    r"|(?P<n>[0-9]{1,3})(?:\.\s|\)))\s*(?P<text>\S.*)$",
    re.IGNORECASE,
)
_END_RE = re.compile(r"[.!?…:;]$")


def command_args(text: str) -> str:
    """The text after ``/seq`` or ``/seq@bot``, line breaks kept."""
    m = _COMMAND_RE.match(text)
    return text[m.end() :] if m else text


def prompt_count(prompt: str) -> int | None:
    """The number of images the prompt itself states, if any.

    Raises InputError when it states two different numbers.
    """
    found = {
        int(m["n"]) if m["n"].isdigit() else _NUMBER_WORDS[m["n"].lower()]
        for m in _PROMPT_COUNT_RE.finditer(prompt)
    }
    if len(found) > 1:
        numbers = ", ".join(str(n) for n in sorted(found))  # no words: any language
        raise InputError(
            "Your prompt mentions {numbers} images. Say one number, or leave it out and "
            "put the count first: /seq 4 …",
            numbers=numbers,
        )
    return found.pop() if found else None


def as_one_image(prompt: str) -> str:
    """``prompt`` with any count of images it states made one ("Generate 4 images of a cat" ->
    "Generate 1 image of a cat"): a redone panel's text, which RunComfy must not read as
    asking for several."""
    return _PROMPT_COUNT_RE.sub("1 image", prompt)


def _count_error(given: str) -> InputError:
    return InputError(
        "The number of images must be {low}–{high} (you gave {given}).",
        low=schema.MIN_COUNT,
        high=schema.MAX_COUNT,
        given=_short(given),
    )


def _check_count(n: int) -> int:
    if not schema.MIN_COUNT <= n <= schema.MAX_COUNT:
        raise _count_error(str(n))
    return n


def _short(s: str, limit: int = 20) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _allowed_ratios() -> str:
    return " ".join(schema.RATIOS)


@dataclass(frozen=True)
class SeqCommand:
    """A parsed /seq: the request, and the saved characters it names (``cast=``), whose images
    are added as its first references before it is started."""

    request: SeqRequest
    cast: tuple[str, ...] = ()


def parse_seq(
    args: str, *, replied_text: str | None = None, defaults: ChatDefaults | None = None
) -> SeqRequest | None:
    """:func:`parse_seq_command` for a /seq that names no characters; InputError if it does
    (a caller that does not add their images must not drop them silently)."""
    parsed = parse_seq_command(args, replied_text=replied_text, defaults=defaults)
    if parsed is not None and parsed.cast:
        raise InputError("cast= cannot be used here.")
    return parsed.request if parsed else None


def parse_answer(text: str, *, count: int, size: str, mode: str) -> SeqRequest | None:
    """An answer to ➡️ Continue's question: a prompt or a numbered script, never options (its
    "10 years later…" is a story, not ten images), with the previous job's ``count``, ``size``
    and ``mode``; a script makes one image per item. None for an empty answer."""
    prompt = text.strip()
    if not prompt:
        return None
    return _build(prompt, count=None, size=size, seed=None, mode=mode, default_count=count)


def parse_seq_command(
    args: str, *, replied_text: str | None = None, defaults: ChatDefaults | None = None
) -> SeqCommand | None:
    """Parse what follows ``/seq``. ``None`` means no arguments at all: show usage.

    ``replied_text`` (the text of the message the command replies to) is the prompt when the
    command itself gives none.

    Raises InputError with a short, friendly explanation for anything we will not submit.
    """
    cast: tuple[str, ...] | None = None
    count: int | None = None
    size: str | None = None
    seed: int | None = None
    mode: str | None = None
    pos = 0
    while True:
        m = _TOKEN_RE.match(args, pos)
        if not m:
            pos = len(args)
            break
        token = m.group(1)
        if _INT_RE.match(token):
            if count is not None:
                break  # a second bare number belongs to the prompt
            # Signs and long digit strings are refused before int() sees a 4,000-digit number.
            if token.startswith(("-", "+")) or len(token) > 3:
                raise _count_error(token)
            count = _check_count(int(token))
        elif _RATIO_RE.match(token):
            if size is not None:
                raise InputError("Give the aspect ratio only once.")
            key = re.sub(r"[x×]", ":", token)
            if key not in schema.SIZE_ALIASES:
                raise InputError(
                    "Aspect ratio {ratio} is not available. Use one of: {allowed}.",
                    ratio=_short(token),
                    allowed=_allowed_ratios(),
                )
            size = schema.SIZE_ALIASES[key]
        elif om := _OPTION_RE.match(token):
            key, value = om["key"].lower(), om["value"]
            if key == "seed":
                if seed is not None:
                    raise InputError("Give seed= only once.")
                seed = _parse_seed(value)
            elif key == "mode":
                if mode is not None:
                    raise InputError("Give mode= only once.")
                if value.lower() not in schema.MODES:
                    raise InputError(
                        "mode must be one of: {modes} (you gave {given!r}).",
                        modes=", ".join(schema.MODES),
                        given=_short(value),
                    )
                mode = value.lower()
            elif key == "cast":
                if cast is not None:
                    raise InputError("Give cast= only once.")
                cast = cast_names.parse_names(value)
            else:
                raise InputError(
                    "Unknown option {key}=. Options are seed=N, mode={modes} and cast=NAME.",
                    key=_short(key),
                    modes="|".join(schema.MODES),
                )
        else:
            break
        pos = m.end()

    prompt = args[pos:].strip() or (replied_text or "").strip()
    if not prompt:
        if count is None and size is None and seed is None and mode is None and cast is None:
            return None
        raise InputError(
            "Add a prompt after the options, e.g. /seq 4 16:9 a lighthouse in four seasons"
        )
    chat = defaults or ChatDefaults()
    request = _build(
        prompt, count=count, size=size or chat.size, seed=seed, mode=mode or chat.mode,
        default_count=chat.count,
    )  # fmt: skip
    return SeqCommand(request, cast or ())


def _parse_seed(value: str) -> int:
    if (
        not _INT_RE.match(value)
        or len(value) > 12
        or not schema.MIN_SEED <= int(value) <= schema.MAX_SEED
    ):
        raise InputError(
            "Seed must be a whole number from {low} to {high} (you gave {given}).",
            low=schema.MIN_SEED,
            high=schema.MAX_SEED,
            given=_short(value) or "nothing",
        )
    return int(value)


def script_panels(prompt: str) -> tuple[str, list[str]] | None:
    """The shared context and the panels of a script, or ``None`` if the prompt is not one.

    A script is a numbered list, one item per line, running to the end of the prompt, after
    any lines of shared context; at least two items. Raises InputError when its numbers are not
    1, 2, 3… in order.
    """
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    matches = [_PANEL_RE.match(line) for line in lines]
    first = next((i for i, m in enumerate(matches) if m), None)
    if first is None or len(lines) - first < 2:
        return None
    panels: list[str] = []
    numbers: list[int] = []
    for m in matches[first:]:
        if m is None:
            return None  # a line that is not an item: prose with a list in it, not a script
        numbers.append(int(m["n"] or m["word_n"]))
        panels.append(m["text"].strip())
    if numbers != list(range(1, len(numbers) + 1)):
        raise InputError(
            "Number the panels of a script 1, 2, 3… in order, one per line (yours go {numbers}).",
            numbers=_short(", ".join(str(n) for n in numbers), 40),
        )
    return " ".join(lines[:first]), panels


def _sentence(text: str) -> str:
    return text if _END_RE.search(text) else text + "."


def _build_script(context: str, panels: list[str], *, count: int | None) -> tuple[int, str]:
    """The count and RunComfy's text for a script: ``Generate 4 images. Context. Panel 1: …``."""
    n = len(panels)
    if n > schema.MAX_COUNT:
        raise InputError(
            "Your script has {panels} panels, but at most {limit} images can be made at once: "
            "cut {cut}.",
            panels=n,
            limit=schema.MAX_COUNT,
            cut=n - schema.MAX_COUNT,
        )
    stated = prompt_count(context) if context else None
    for asked in (count, stated):
        if asked is not None and asked != n:
            raise InputError(
                "You asked for {count} images but the script has {panels} panels. "
                "Leave the count out: the script sets it.",
                count=asked,
                panels=n,
            )
    parts = [f"Generate {n} images."]
    if context:
        parts.append(_sentence(context))
    parts += [f"Panel {i}: {_sentence(panel)}" for i, panel in enumerate(panels, 1)]
    text = " ".join(parts)
    if len(text) > schema.MAX_TEXT:
        raise InputError(
            "Your script is {over} too long (the limit is {limit}, counting the "
            "“Generate N images.” and “Panel N:” the bot adds).",
            over=Plural(len(text) - schema.MAX_TEXT, "character"),
            limit=schema.MAX_TEXT,
        )
    return n, text


def _build(
    prompt: str,
    *,
    count: int | None,
    size: str | None,
    seed: int | None,
    mode: str | None,
    default_count: int | None = None,
) -> SeqRequest:
    script = script_panels(prompt)
    panels: tuple[str, ...] = ()
    if script is not None:
        context, items = script
        count, text = _build_script(context, items, count=count)
        panels = tuple(items)
    else:
        count, text = _plain_text(prompt, count=count, default_count=default_count)
    return SeqRequest(
        count=count,
        size=size or schema.DEFAULT_SIZE,
        mode=mode or schema.DEFAULT_MODE,
        seed=seed,
        prompt=prompt,
        text=text,
        panels=panels,
    )


def _plain_text(prompt: str, *, count: int | None, default_count: int | None) -> tuple[int, str]:
    """The count and RunComfy's text for a prompt that is not a script."""
    stated = prompt_count(prompt)
    if stated is not None:
        _check_count(stated)
        if count is not None and count != stated:
            raise InputError(
                "You asked for {count} images but the prompt says {stated}. "
                "Use one number, or leave the count out of the prompt.",
                count=count,
                stated=stated,
            )
        count, text = stated, prompt
    else:
        count = count or default_count or schema.DEFAULT_COUNT
        noun = "image" if count == 1 else "images"
        text = f"Generate {count} {noun}: {prompt}"
    if len(text) > schema.MAX_TEXT:
        over = len(text) - schema.MAX_TEXT
        raise InputError(
            "Your prompt is {over} too long (the limit is {limit}, counting the "
            "“Generate N images:” the bot adds)."
            if stated is None
            else "Your prompt is {over} too long (the limit is {limit}).",
            over=Plural(over, "character"),
            limit=schema.MAX_TEXT,
        )
    return count, text


def replied_text(message: Message, bot_id: int) -> str | None:
    """The prompt a command without one takes from the message it replies to: that message's
    text or caption, unless it is the bot's own (a caption with parameters, not a prompt), a
    command, or the forum topic's first message (every topic message "replies" to it)."""
    replied = message.reply_to_message
    if replied is None or (replied.from_user and replied.from_user.id == bot_id):
        return None
    if message.is_topic_message and replied.message_id == message.message_thread_id:
        return None
    text = replied.text or replied.caption
    if not text or text.startswith("/"):
        return None
    return text
