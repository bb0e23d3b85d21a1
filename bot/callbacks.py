"""Callback data of every inline button: one way to build it, one way to read it (pure).

Every button's data starts with a version (``v1:cancel:12``, ``v1:set:count:4``). When the format
changes, the version goes up: buttons still showing under old messages then match no handler but
the catch-all, which answers "This button no longer works." instead of misreading them.

Telegram hands back whatever a client sends, so :func:`parse` treats data as untrusted: ASCII
digits only, bounded lengths, at most 64 bytes, nothing but what :func:`encode` can produce.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from bot import schema

VERSION = "v1"
MAX_BYTES = 64  # Telegram's limit for callback_data
MAX_JOB_ID = 10**18 - 1  # 18 digits: fits SQLite's 64-bit integers

_SETTINGS = "set"
_RESET = "reset"


class JobAction(enum.StrEnum):
    """What a button under a job's message does; the value is its word in the data."""

    CANCEL = "cancel"  # under the status message
    AGAIN = "again"  # the five under the images
    ORIGINALS = "orig"
    SHEET = "sheet"
    ZIP = "zip"
    DETAILS = "info"
    NEXT = "next"  # ➡️ Continue: ask what happens next
    REDO = "redo"  # ✏️ Redo panel: show one button per panel
    BACK = "back"  # from the panel buttons back to the follow-up's own


class SettingField(enum.StrEnum):
    """Which default a /settings button changes."""

    COUNT = "count"
    RATIO = "ratio"
    MODE = "mode"


class CastAction(enum.StrEnum):
    """What a /cast button does to one saved character (named by its id, never its name: a
    name may take 96 bytes)."""

    ASK_REMOVE = "ask"  # under the /cast list: asks "Remove anna?"
    REMOVE = "rm"  # the confirmation
    BACK = "back"  # not removed after all: the list's buttons again
    REPLACE = "rep"  # a name already taken: the new images replace the saved ones
    KEEP = "keep"  # ... or are dropped


@dataclass(frozen=True)
class CastButton:
    """A /cast button: ``v1:cast:<action>:<character id>``."""

    action: CastAction
    member_id: int


@dataclass(frozen=True)
class JobButton:
    """A button about one job: ``v1:<action>:<job id>``."""

    action: JobAction
    job_id: int


@dataclass(frozen=True)
class PanelButton:
    """✏️ Redo's choice of a panel: ``v1:redo:<job id>:<panel>``, the panel 1-based."""

    job_id: int
    panel: int


@dataclass(frozen=True)
class SettingButton:
    """A /settings button that sets one default: ``v1:set:<field>:<value>``."""

    field: SettingField
    value: str


@dataclass(frozen=True)
class ResetButton:
    """The /settings button that clears the chat's defaults: ``v1:set:reset``."""


@dataclass(frozen=True)
class BuyButton:
    """A /buy button (payments on): send an invoice for the pack of ``images``: ``v1:buy:<n>``;
    ``v1:buy:<n>:<chat id>`` buys the credits of a chat identity (``/buy`` sent as a channel or
    as a group's anonymous admin), paid by whoever taps."""

    images: int
    chat_id: int | None = None


SettingsButton = SettingButton | ResetButton
Button = JobButton | PanelButton | SettingButton | ResetButton | BuyButton | CastButton

# Python's [0-9] is ASCII only (\d and str.isdigit() also take "²" or "١"); no leading zeros, so
# each button has exactly one spelling.
_JOB_RE = re.compile(
    rf"{VERSION}:(?P<action>{'|'.join(a.value for a in JobAction)}):(?P<id>[1-9][0-9]{{0,17}})"
)
_PANEL_RE = re.compile(
    rf"{VERSION}:{JobAction.REDO.value}:(?P<id>[1-9][0-9]{{0,17}}):(?P<panel>[1-9][0-9]?)"
)
_SETTING_RE = re.compile(
    rf"{VERSION}:{_SETTINGS}:(?:{_RESET}|(?P<field>[a-z]{{1,8}}):(?P<value>[0-9a-z:]{{1,16}}))"
)
_BUY = "buy"
_BUY_RE = re.compile(
    rf"{VERSION}:{_BUY}:(?P<images>[1-9][0-9]{{0,5}})(?::(?P<chat>-[1-9][0-9]{{0,17}}))?"
)
_CAST = "cast"
_CAST_RE = re.compile(
    rf"{VERSION}:{_CAST}:(?P<action>{'|'.join(a.value for a in CastAction)}):"
    r"(?P<id>[1-9][0-9]{0,17})"
)
_FIELDS = {f.value: f for f in SettingField}
_VALUE_RES = {
    SettingField.COUNT: re.compile(r"[1-9][0-9]?"),
    SettingField.RATIO: re.compile(r"[1-9][0-9]?:[1-9][0-9]?"),
    SettingField.MODE: re.compile(r"[a-z]{1,16}"),
}


def _allowed(field: SettingField, value: str) -> bool:
    """Whether ``value`` is one the schema offers for ``field``."""
    if not _VALUE_RES[field].fullmatch(value):
        return False
    if field == SettingField.COUNT:
        return int(value) in schema.COUNTS
    if field == SettingField.RATIO:
        return value in schema.RATIOS
    return value in schema.MODES


def parse(data: str | None) -> Button | None:
    """The button ``data`` stands for, or None if it is not current data of ours.

    None for old formats (no or another version), forged or malformed data, and values the
    schema does not offer.
    """
    if not isinstance(data, str) or len(data.encode("utf-8")) > MAX_BYTES:
        return None
    if m := _JOB_RE.fullmatch(data):
        return JobButton(JobAction(m["action"]), int(m["id"]))
    if m := _PANEL_RE.fullmatch(data):
        panel = int(m["panel"])
        return PanelButton(int(m["id"]), panel) if panel <= schema.MAX_COUNT else None
    if m := _CAST_RE.fullmatch(data):
        return CastButton(CastAction(m["action"]), int(m["id"]))
    if m := _BUY_RE.fullmatch(data):
        return BuyButton(int(m["images"]), int(m["chat"]) if m["chat"] else None)
    if m := _SETTING_RE.fullmatch(data):
        if m["field"] is None:
            return ResetButton()
        field = _FIELDS.get(m["field"])
        if field is None or not _allowed(field, m["value"]):
            return None
        return SettingButton(field, m["value"])
    return None


def encode(button: Button) -> str:
    """The callback data for ``button``; ValueError if :func:`parse` would not read it back."""
    if isinstance(button, JobButton):
        data = f"{VERSION}:{JobAction(button.action).value}:{button.job_id}"
    elif isinstance(button, PanelButton):
        data = f"{VERSION}:{JobAction.REDO.value}:{button.job_id}:{button.panel}"
    elif isinstance(button, CastButton):
        data = f"{VERSION}:{_CAST}:{CastAction(button.action).value}:{button.member_id}"
    elif isinstance(button, BuyButton):
        data = f"{VERSION}:{_BUY}:{button.images}"
        if button.chat_id is not None:
            data += f":{button.chat_id}"
    elif isinstance(button, SettingButton):
        data = f"{VERSION}:{_SETTINGS}:{SettingField(button.field).value}:{button.value}"
    else:
        data = f"{VERSION}:{_SETTINGS}:{_RESET}"
    if parse(data) != button:
        raise ValueError(f"not valid callback data: {button!r}")
    return data


def job_pattern(action: JobAction) -> re.Pattern[str]:
    """For ``CallbackQueryHandler``: the current data of ``action``'s buttons.

    Only the version and the action are matched; the handler parses the rest and answers
    malformed data itself.
    """
    return re.compile(rf"^{VERSION}:{JobAction(action).value}:")


# For ``CallbackQueryHandler``: the current data of the /settings buttons.
SETTINGS_PATTERN = re.compile(rf"^{VERSION}:{_SETTINGS}:")

# For ``CallbackQueryHandler``: the current data of the /buy buttons.
BUY_PATTERN = re.compile(rf"^{VERSION}:{_BUY}:")

# For ``CallbackQueryHandler``: the current data of the /cast buttons.
CAST_PATTERN = re.compile(rf"^{VERSION}:{_CAST}:")
