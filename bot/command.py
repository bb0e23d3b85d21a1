"""Parsing ``/seq [count] [ratio] [seed=N] [mode=fast|standard] prompt…`` into a request (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot import schema
from bot.errors import InputError

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15,
}  # fmt: skip
_IMAGE_NOUNS = (
    r"images?|pictures?|pics?|photos?|photographs?|illustrations?|frames?|panels?|shots?|"
    r"renders?|drawings?|paintings?|artworks?|variations?|versions?|scenes?|slides?|stills?"
)
# "4 images", "four consecutive images", "6 comic-style panels": a number, at most two words,
# then a noun that names pictures. "four seasons" is not a count of images.
_PROMPT_COUNT_RE = re.compile(
    rf"\b(?P<n>\d+|{'|'.join(_NUMBER_WORDS)})\s+(?:[\w'-]+\s+){{0,2}}?(?:{_IMAGE_NOUNS})\b",
    re.IGNORECASE,
)
_COMMAND_RE = re.compile(r"^/\w+(?:@\w+)?")
_INT_RE = re.compile(r"^[+-]?\d+$")
_RATIO_RE = re.compile(r"^\d+[:x×]\d+$")
_OPTION_RE = re.compile(r"^(?P<key>[A-Za-z_]+)=(?P<value>.*)$")
_TOKEN_RE = re.compile(r"\s*(\S+)")


@dataclass(frozen=True)
class ChatDefaults:
    """A chat's defaults (from /settings) for options a /seq command leaves out."""

    count: int | None = None
    size: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class SeqRequest:
    """A validated /seq command, ready to be sent."""

    count: int
    size: str  # the exact schema string, e.g. "2560:1440 (16:9)"
    mode: str
    seed: int | None
    prompt: str  # what the user wrote
    text: str  # what RunComfy gets: the prompt, stating the number of images

    @property
    def ratio(self) -> str:
        """The short ratio, e.g. ``16:9``."""
        return schema.ratio_of(self.size)


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
        numbers = " and ".join(str(n) for n in sorted(found))
        raise InputError(
            f"Your prompt mentions {numbers} images. Say one number, or leave it out and "
            "put the count first: /seq 4 …"
        )
    return found.pop() if found else None


def _count_error(given: str) -> InputError:
    return InputError(
        f"The number of images must be {schema.MIN_COUNT}–{schema.MAX_COUNT}"
        f" (you gave {_short(given)})."
    )


def _check_count(n: int) -> int:
    if not schema.MIN_COUNT <= n <= schema.MAX_COUNT:
        raise _count_error(str(n))
    return n


def _short(s: str, limit: int = 20) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _allowed_ratios() -> str:
    return " ".join(schema.RATIOS)


def parse_seq(
    args: str, *, replied_text: str | None = None, defaults: ChatDefaults | None = None
) -> SeqRequest | None:
    """Parse what follows ``/seq``. ``None`` means no arguments at all: show usage.

    ``replied_text`` (the text of the message the command replies to) is the prompt when the
    command itself gives none.

    Raises InputError with a short, friendly explanation for anything we will not submit.
    """
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
                    f"Aspect ratio {_short(token)} is not available. Use one of: {_allowed_ratios()}."
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
                        f"mode must be {' or '.join(schema.MODES)} (you gave {_short(value)!r})."
                    )
                mode = value.lower()
            else:
                raise InputError(
                    f"Unknown option {_short(key)}=. Options are seed=N and "
                    f"mode={'|'.join(schema.MODES)}."
                )
        else:
            break
        pos = m.end()

    prompt = args[pos:].strip() or (replied_text or "").strip()
    if not prompt:
        if count is None and size is None and seed is None and mode is None:
            return None
        raise InputError(
            "Add a prompt after the options, e.g. /seq 4 16:9 a lighthouse in four seasons"
        )
    chat = defaults or ChatDefaults()
    return _build(
        prompt, count=count, size=size or chat.size, seed=seed, mode=mode or chat.mode,
        default_count=chat.count,
    )  # fmt: skip


def _parse_seed(value: str) -> int:
    allowed = f"Seed must be a whole number from {schema.MIN_SEED} to {schema.MAX_SEED}"
    if not _INT_RE.match(value):
        raise InputError(f"{allowed} (you gave {_short(value)!r}).")
    if len(value) > 12 or not schema.MIN_SEED <= int(value) <= schema.MAX_SEED:
        raise InputError(f"{allowed} (you gave {_short(value)}).")
    return int(value)


def _build(
    prompt: str,
    *,
    count: int | None,
    size: str | None,
    seed: int | None,
    mode: str | None,
    default_count: int | None = None,
) -> SeqRequest:
    stated = prompt_count(prompt)
    if stated is not None:
        _check_count(stated)
        if count is not None and count != stated:
            raise InputError(
                f"You asked for {count} images but the prompt says {stated}. "
                "Use one number, or leave the count out of the prompt."
            )
        count, text = stated, prompt
    else:
        count = count or default_count or schema.DEFAULT_COUNT
        noun = "image" if count == 1 else "images"
        text = f"Generate {count} {noun}: {prompt}"
    if len(text) > schema.MAX_TEXT:
        over = len(text) - schema.MAX_TEXT
        raise InputError(
            f"Your prompt is {over} character{'s' if over != 1 else ''} too long "
            f"(the limit is {schema.MAX_TEXT}, counting the “Generate N images:” the bot adds)."
            if stated is None
            else f"Your prompt is {over} character{'s' if over != 1 else ''} too long "
            f"(the limit is {schema.MAX_TEXT})."
        )
    return SeqRequest(
        count=count,
        size=size or schema.DEFAULT_SIZE,
        mode=mode or schema.DEFAULT_MODE,
        seed=seed,
        prompt=prompt,
        text=text,
    )
