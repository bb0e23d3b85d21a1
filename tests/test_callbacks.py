"""Callback data: one way to build it and one to read it, with a version for old buttons."""

from __future__ import annotations

import dataclasses

import pytest
from telegram import InlineKeyboardMarkup

from bot import callbacks, render, schema
from bot.callbacks import (
    JobAction,
    JobButton,
    PanelButton,
    ResetButton,
    SettingButton,
    SettingField,
    encode,
    parse,
)
from bot.models import ChatDefaults, Job, Status

ALL_SETTINGS: list[callbacks.Button] = [
    *(SettingButton(SettingField.COUNT, str(n)) for n in render.SETTINGS_COUNTS),
    *(SettingButton(SettingField.RATIO, r) for r in schema.RATIOS),
    *(SettingButton(SettingField.MODE, m) for m in schema.MODES),
    ResetButton(),
]


@pytest.mark.parametrize("action", list(JobAction))
@pytest.mark.parametrize("job_id", [1, 12, 10**17, callbacks.MAX_JOB_ID])
def test_job_buttons_round_trip_within_64_bytes(action: JobAction, job_id: int) -> None:
    button = JobButton(action, job_id)
    data = encode(button)
    assert data == f"v1:{action.value}:{job_id}"
    assert len(data.encode()) <= callbacks.MAX_BYTES
    assert parse(data) == button


@pytest.mark.parametrize("button", ALL_SETTINGS, ids=str)
def test_every_settings_button_round_trips(button: callbacks.Button) -> None:
    data = encode(button)
    assert data.startswith("v1:set:")
    assert len(data.encode()) <= callbacks.MAX_BYTES
    assert parse(data) == button


@pytest.mark.parametrize("panel", [1, 9, 10, schema.MAX_COUNT])
def test_panel_buttons_round_trip(panel: int) -> None:
    button = PanelButton(callbacks.MAX_JOB_ID, panel)
    data = encode(button)
    assert data == f"v1:redo:{callbacks.MAX_JOB_ID}:{panel}"
    assert len(data.encode()) <= callbacks.MAX_BYTES
    assert parse(data) == button
    assert parse(f"v1:redo:{callbacks.MAX_JOB_ID}") == JobButton(
        JobAction.REDO, callbacks.MAX_JOB_ID
    )


@pytest.mark.parametrize(
    "data",
    [
        "v1:redo:1:0",
        "v1:redo:1:01",
        f"v1:redo:1:{schema.MAX_COUNT + 1}",
        "v1:redo:1:100",
        "v1:redo:1:-1",
        "v1:redo:1:²",
        "v1:redo:1:1:1",
        "v1:redo:1:",
        "v1:redo:0:1",
        "v1:next:1:1",
        "v1:back:1:1",
    ],
)
def test_forged_panel_buttons_are_not_read(data: str) -> None:
    assert parse(data) is None


def test_the_format_is_the_documented_one() -> None:
    assert encode(JobButton(JobAction.CANCEL, 12)) == "v1:cancel:12"
    assert encode(SettingButton(SettingField.COUNT, "4")) == "v1:set:count:4"
    assert encode(SettingButton(SettingField.RATIO, "16:9")) == "v1:set:ratio:16:9"
    assert encode(ResetButton()) == "v1:set:reset"


@pytest.mark.parametrize(
    "button",
    [
        JobButton(JobAction.CANCEL, 0),
        JobButton(JobAction.CANCEL, -1),
        JobButton(JobAction.AGAIN, callbacks.MAX_JOB_ID + 1),
        SettingButton(SettingField.COUNT, "99"),
        SettingButton(SettingField.COUNT, "04"),
        SettingButton(SettingField.RATIO, "7:5"),
        SettingButton(SettingField.MODE, "turbo"),
        SettingButton(SettingField.MODE, ""),
    ],
    ids=str,
)
def test_encode_refuses_what_parse_would_not_read(button: callbacks.Button) -> None:
    with pytest.raises(ValueError, match="not valid callback data"):
        encode(button)


@pytest.mark.parametrize(
    "data",
    ["cancel:12", "again:1", "orig:1", "info:1", "set:count:4", "set:reset", "v0:cancel:1"],
)
def test_old_formats_are_not_read(data: str) -> None:
    """Buttons from before the version prefix go to the catch-all ("no longer works")."""
    assert parse(data) is None
    assert not any(p.match(data) for p in patterns())


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "v1",
        "v1:",
        "v1:cancel:",
        "v1:cancel:abc",
        "v1:cancel:1:2",
        "v1:cancel:01",
        "v1:cancel:0",
        "v1:cancel:-1",
        "v1:cancel:+1",
        "v1:cancel: 1",
        "v1:cancel:1\n",
        "v1:cancel:²",
        "v1:cancel:١",
        "v1:cancel:" + "9" * 19,
        "v1:cancel:" + "9" * 40,
        "v1:CANCEL:1",
        "V1:cancel:1",
        "v1:other:1",
        "v1:set:",
        "v1:set:count:",
        "v1:set:count:²",
        "v1:set:count:١",
        "v1:set:count:99",
        "v1:set:count:04",
        "v1:set:count:4:4",
        "v1:set:ratio:16",
        "v1:set:ratio:7:5",
        "v1:set:ratio:16:9:1",
        "v1:set:mode:turbo",
        "v1:set:mode:FAST",
        "v1:set:colour:red",
        "v1:set:reset:1",
        "v1:set:reset\n",
        "v1:set:" + "a" * 60,
        "v1:info:1" + "\u200b",
        "é" * 40,
    ],
)
def test_forged_data_is_not_read(data: str | None) -> None:
    assert parse(data) is None


def test_data_over_64_bytes_is_not_read_even_if_well_formed() -> None:
    # 18 digits is the longest id; a longer one would not fit in an int64 anyway.
    assert parse("v1:cancel:" + "1" * 18) == JobButton(JobAction.CANCEL, int("1" * 18))
    assert parse("v1:cancel:" + "1" * 19) is None
    assert all(len(encode(JobButton(a, callbacks.MAX_JOB_ID)).encode()) <= 64 for a in JobAction)


def patterns() -> list:
    return [callbacks.job_pattern(a) for a in JobAction] + [callbacks.SETTINGS_PATTERN]


@pytest.mark.parametrize("button", [*(JobButton(a, 7) for a in JobAction), *ALL_SETTINGS], ids=str)
def test_each_button_matches_exactly_its_handlers_pattern(button: callbacks.Button) -> None:
    data = encode(button)
    matched = [p.pattern for p in patterns() if p.match(data)]
    expected = (
        callbacks.job_pattern(button.action).pattern
        if isinstance(button, JobButton)
        else callbacks.SETTINGS_PATTERN.pattern
    )
    assert matched == [expected]


def _job(status: Status = Status.QUEUED) -> Job:
    return Job(
        id=42,
        chat_id=1,
        user_id=1,
        message_id=1,
        prompt="a fox",
        text="a fox",
        count=4,
        size=schema.DEFAULT_SIZE,
        mode=schema.DEFAULT_MODE,
        seed=None,
        status=status,
        created_at=0.0,
    )


def parsed(markup: InlineKeyboardMarkup | None) -> list[callbacks.Button | None]:
    assert markup is not None
    return [
        parse(b.callback_data) if isinstance(b.callback_data, str) else None
        for row in markup.inline_keyboard
        for b in row
    ]


def test_render_keyboards_build_their_data_here() -> None:
    assert parsed(render.status_keyboard(_job())) == [JobButton(JobAction.CANCEL, 42)]
    assert parsed(render.actions_keyboard(_job(Status.DONE))) == [
        JobButton(JobAction.AGAIN, 42),
        JobButton(JobAction.ORIGINALS, 42),
        JobButton(JobAction.DETAILS, 42),
        JobButton(JobAction.SHEET, 42),
        JobButton(JobAction.ZIP, 42),
        JobButton(JobAction.NEXT, 42),
        JobButton(JobAction.REDO, 42),
    ]
    # Without reference images (no PUBLIC_URL) there is no Continue or Redo.
    assert JobButton(JobAction.NEXT, 42) not in parsed(
        render.actions_keyboard(_job(Status.DONE), story=False)
    )
    # A redone panel's own follow-up: Originals and Details only.
    redone = dataclasses.replace(_job(Status.DONE), redo_of=7, redo_panel=0)
    assert parsed(render.actions_keyboard(redone)) == [
        JobButton(JobAction.ORIGINALS, 42),
        JobButton(JobAction.DETAILS, 42),
    ]
    # ✏️ Redo's panel buttons, then ↩️ Back.
    assert parsed(render.panels_keyboard(_job(Status.DONE), [0, 1, 2], "en")) == [
        PanelButton(42, 1),
        PanelButton(42, 2),
        PanelButton(42, 3),
        JobButton(JobAction.BACK, 42),
    ]
    assert parsed(render.settings_keyboard(ChatDefaults(), "en")) == ALL_SETTINGS
