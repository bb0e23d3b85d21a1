"""The bundled RunComfy input schema: allowed values, defaults and payload validation."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from bot.errors import InputError

_SCHEMA: dict[str, Any] = json.loads(
    resources.files("bot").joinpath("input.schema.json").read_text(encoding="utf-8")
)
_PROPS: dict[str, Any] = _SCHEMA["properties"]
# edit-sequential: the same request plus ``images``, the reference images' URLs.
_EDIT_SCHEMA: dict[str, Any] = json.loads(
    resources.files("bot").joinpath("edit.input.schema.json").read_text(encoding="utf-8")
)
MAX_REFS: int = _EDIT_SCHEMA["properties"]["images"]["maxItems"]
# ByteDance's rule for this model: references plus requested images at most 15.
MAX_REFS_AND_IMAGES = 15

COUNTS: tuple[int, ...] = tuple(_PROPS["sequential_image_generation_options"]["enum"])
MIN_COUNT, MAX_COUNT = min(COUNTS), max(COUNTS)
DEFAULT_COUNT: int = _PROPS["sequential_image_generation_options"]["default"]

SIZES: tuple[str, ...] = tuple(_PROPS["image_size"]["enum"])
DEFAULT_SIZE: str = _PROPS["image_size"]["default"]

MODES: tuple[str, ...] = tuple(_PROPS["optimize_prompt_options"]["enum"])
DEFAULT_MODE: str = _PROPS["optimize_prompt_options"]["default"]

MAX_TEXT: int = _PROPS["text"]["maxLength"]

# The schema sets no bounds on the seed; we allow 0 to 2**31 - 1 (a signed 32-bit integer's range).
MIN_SEED, MAX_SEED = 0, 2**31 - 1

_SIZE_RE = re.compile(r"^(?P<w>\d+):(?P<h>\d+) \((?P<ratio>\d+:\d+)\)$")


def _size_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for size in SIZES:
        m = _SIZE_RE.match(size)
        if not m:  # pragma: no cover - guards a changed schema
            raise RuntimeError(f"unexpected image_size value in schema: {size!r}")
        aliases[m["ratio"]] = size
        aliases[f"{m['w']}:{m['h']}"] = size
    return aliases


SIZE_ALIASES: dict[str, str] = _size_aliases()
RATIOS: tuple[str, ...] = tuple(_SIZE_RE.match(s)["ratio"] for s in SIZES)  # type: ignore[index]
DEFAULT_RATIO: str = _SIZE_RE.match(DEFAULT_SIZE)["ratio"]  # type: ignore[index]


def dimensions(size: str) -> tuple[int, int] | None:
    """(width, height) of a size string such as ``"2560:1440 (16:9)"``; None if unreadable."""
    w, _, rest = size.partition(":")
    h = rest.split(" ")[0]
    if w.isascii() and w.isdigit() and h.isascii() and h.isdigit() and int(w) and int(h):
        return int(w), int(h)
    return None


def ratio_of(size: str) -> str:
    """``"2560:1440 (16:9)"`` -> ``"16:9"``."""
    m = _SIZE_RE.match(size)
    return m["ratio"] if m else size


@cache
def _validator(edit: bool = False) -> jsonschema.protocols.Validator:
    schema = _EDIT_SCHEMA if edit else _SCHEMA
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def build_payload(
    *, text: str, count: int, size: str, mode: str, seed: int | None
) -> dict[str, Any]:
    """The submit body for RunComfy, validated against the bundled schema."""
    payload: dict[str, Any] = {
        "text": text,
        "sequential_image_generation_options": count,
        "image_size": size,
        "optimize_prompt_options": mode,
        "sequential_image_generation": _PROPS["sequential_image_generation"]["default"],
    }
    if seed is not None:
        payload["seed"] = seed
    _check(payload, edit=False)
    return payload


def check_refs(refs: int, count: int) -> None:
    """Raise InputError when there are too many references, or no room for ``count`` images
    (references plus images at most 15): checked at intake and again right before the submit."""
    if refs > MAX_REFS:
        raise InputError(
            "At most {limit} reference images can be used at once; you sent {refs}.",
            limit=MAX_REFS,
            refs=refs,
        )
    room = min(MAX_REFS_AND_IMAGES - refs, MAX_COUNT)
    if count > room:
        raise InputError(
            "1 reference image leaves room for at most {room} images; you asked for {count}."
            if refs == 1
            else "{refs} reference images leave room for at most {room} images; "
            "you asked for {count}.",
            refs=refs,
            room=room,
            count=count,
        )


def build_edit_payload(
    *, text: str, count: int, size: str, mode: str, seed: int | None, images: list[str]
) -> dict[str, Any]:
    """The edit-sequential submit body: the sequential one plus ``images`` (the references'
    URLs, in the order the model reads them), validated against the bundled edit schema and
    the 15-image rule."""
    if not images:
        raise InputError("That request is not allowed (images: none given).")
    check_refs(len(images), count)
    payload = build_payload(text=text, count=count, size=size, mode=mode, seed=seed)
    payload["images"] = list(images)
    _check(payload, edit=True)
    return payload


def _check(payload: dict[str, Any], *, edit: bool) -> None:
    errors = sorted(_validator(edit).iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.path) or "request"
        raise InputError(f"That request is not allowed ({field}: {first.message}).")
