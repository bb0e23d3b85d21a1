"""The pure parts of ➡️ Continue and ✏️ Redo: which panels, in which order, what RunComfy is told."""

from __future__ import annotations

import pytest

from bot import render, schema
from bot.errors import InputError
from bot.models import DeliveryUnit, Job, Reference, Status, UnitKind
from bot.story import (
    continue_panel_room,
    continue_request,
    delivered_panels,
    is_same,
    nearest,
    panel_text,
    redo_text,
    reference_note,
)


def _job(**extra: object) -> Job:
    base: dict[str, object] = {
        "id": 12,
        "chat_id": 1,
        "message_id": 2,
        "count": 5,
        "size": "2560:1440 (16:9)",
        "mode": "standard",
        "prompt": "A fox.\n1. wakes\n2. eats\n3. runs\n4. sleeps\n5. dreams",
        "text": "",
        "status": Status.DONE,
        "panels": ["wakes", "eats", "runs", "sleeps", "dreams"],
        "plan": [DeliveryUnit(UnitKind.PHOTO, (0, 1, 2, 3)), DeliveryUnit(UnitKind.DOCUMENT, (4,))],
        "delivered": [0, 1],
    }
    base.update(extra)
    return Job(**base)  # type: ignore[arg-type]


def _cast(name: str) -> Reference:
    return Reference(f"id-{name}-xxxxxxxx", "cast", 1, 1, 64, 64, 100, name=name)


def test_the_other_panels_nearest_first_the_earlier_of_two_equally_near() -> None:
    assert nearest([0, 1, 2, 3, 4], 2, 9) == [1, 3, 0, 4]
    assert nearest([0, 1, 2, 3, 4], 0, 9) == [1, 2, 3, 4]
    assert nearest(list(range(15)), 14, 9) == [13, 12, 11, 10, 9, 8, 7, 6, 5]
    assert nearest([0, 1, 2], 1, 0) == []


def test_only_delivered_panels_count() -> None:
    assert delivered_panels(_job()) == [0, 1, 2, 3, 4]
    assert delivered_panels(_job(delivered=[0])) == [0, 1, 2, 3]


@pytest.mark.parametrize("text", ["same", "Same.", " SAME ", "=", "то же", "keep"])
def test_same_keeps_the_text(text: str) -> None:
    assert is_same(text)


@pytest.mark.parametrize("text", ["same fox, but red", "the same as before but at night", "s"])
def test_anything_else_is_a_new_text(text: str) -> None:
    assert not is_same(text)


def test_a_panels_text_is_its_script_item_else_the_prompt() -> None:
    assert panel_text(_job(), 2) == "runs"
    assert panel_text(_job(panels=[], prompt="a fox at dawn"), 2) == "a fox at dawn"


def test_the_note_names_the_cast_then_the_panels() -> None:
    cast = [_cast("anna"), _cast("rex")]
    assert reference_note(cast, 3, "the panels") == (
        "Image 1 is anna. Image 2 is rex. Images 3–5 are the panels."
    )
    assert reference_note([], 1, "the panel") == "Image 1 is the panel."
    assert reference_note(cast, 0, "x") == "Image 1 is anna. Image 2 is rex."
    # A character's images are named once, as /seq's cast= names them (cast.naming_text).
    two = [_cast("anna"), _cast("anna"), _cast("rex")]
    assert reference_note(two, 1, "the panel") == (
        "Images 1 and 2 are anna. Image 3 is rex. Image 4 is the panel."
    )


def test_room_for_the_last_panels_within_10_references_and_15_images() -> None:
    assert continue_panel_room(0, 4) == 3
    assert continue_panel_room(8, 4) == 2  # 10 references at most
    assert continue_panel_room(0, 13) == 2  # 15 images and references at most
    assert continue_panel_room(2, 12) == 1
    assert continue_panel_room(0, 15) == 0


def test_continue_keeps_count_ratio_and_mode_whatever_the_answer_says() -> None:
    request = continue_request(_job(), "they reach the sea")
    assert (request.count, request.size, request.mode) == (5, "2560:1440 (16:9)", "standard")
    assert (request.continues, request.story, request.episode) == (12, 12, 2)
    later = continue_request(_job(id=14, story=12, episode=3), "9:16 3 and then")
    assert (later.count, later.size, later.story, later.episode) == (5, "2560:1440 (16:9)", 12, 4)
    # An answer is the story's words: numbers and ratios in it change nothing that is billed.
    assert later.prompt == "9:16 3 and then"
    years = continue_request(_job(), "10 years later, anna returns")
    assert (years.count, years.prompt) == (5, "10 years later, anna returns")
    assert years.text == "Generate 5 images: 10 years later, anna returns"
    # A script makes one image per item.
    assert continue_request(_job(), "1. one\n2. two").count == 2
    with pytest.raises(InputError):
        continue_request(_job(), "   ")


def test_a_redo_text_carries_the_context_the_note_and_the_panel() -> None:
    text = redo_text(_job(), 2, "runs", [_cast("anna")], 4)
    assert text == (
        "Generate 1 image. A fox. Image 1 is anna. Images 2–5 are other panels of the same "
        "series: match them. runs"
    )
    with pytest.raises(InputError, match="too long"):
        redo_text(_job(), 2, "x" * schema.MAX_TEXT, [], 4)


def test_a_cast_of_ten_leaves_no_room_for_panels() -> None:
    assert continue_panel_room(10, 4) == 0
    assert continue_panel_room(9, 5) == 1


def test_a_redone_first_panel_keeps_the_sets_parameters_in_show() -> None:
    job = _job()
    redo = _job(id=15, prompt="wakes in the rain", panels=[], redo_of=12, redo_panel=0)
    captions = render.versioned_captions(job, (0, 1), {0: redo}, first=True)
    assert captions[0] == f"1 (v2). wakes in the rain\n\n{render.params_line(job)}"
    assert captions[1].startswith("2. eats")
    # Not the set's first unit: no parameters.
    later = render.versioned_captions(job, (0, 1), {0: redo}, first=False)
    assert later[0] == "1 (v2). wakes in the rain"


def test_a_redo_of_a_prompt_that_states_its_count_asks_for_one_image() -> None:
    job = _job(prompt="Generate 4 images of a cat in four seasons", panels=[])
    text = redo_text(job, 1, panel_text(job, 1), [], 3)
    assert text == (
        "Generate 1 image. Images 1–3 are other panels of the same series: match them. "
        "Generate 1 image of a cat in four seasons"
    )
