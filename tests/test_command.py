"""Parsing /seq: a table of inputs and what they become (pure)."""

from __future__ import annotations

import pytest

from bot import schema
from bot.command import command_args, parse_seq, prompt_count
from bot.errors import InputError
from bot.models import ChatDefaults


@pytest.mark.parametrize(
    ("args", "count", "size", "mode", "seed", "text"),
    [
        (
            " 4 16:9 a lighthouse through four seasons",
            4, "2560:1440 (16:9)", "fast", None,
            "Generate 4 images: a lighthouse through four seasons",
        ),
        (" a cat", 3, "2560:1440 (16:9)", "fast", None, "Generate 3 images: a cat"),
        (" 1 1:1 a cat", 1, "2048:2048 (1:1)", "fast", None, "Generate 1 image: a cat"),
        # Options in any order, pixel form of the ratio, seed and mode.
        (
            " mode=standard seed=42 1440:2560 7 a fox",
            7, "1440:2560 (9:16)", "standard", 42, "Generate 7 images: a fox",
        ),
        (" 21:9 MODE=Fast a fox", 3, "3024:1296 (21:9)", "fast", None, "Generate 3 images: a fox"),
        # The prompt states the count: it is used as it is.
        (
            " Generate 5 images of a calm ocean",
            5, "2560:1440 (16:9)", "fast", None, "Generate 5 images of a calm ocean",
        ),
        (
            " 6 a series of six comic panels",
            6, "2560:1440 (16:9)", "fast", None, "a series of six comic panels",
        ),
        # Line breaks in the prompt are kept.
        (" 2 line one\nline two", 2, "2560:1440 (16:9)", "fast", None, "Generate 2 images: line one\nline two"),
        # A second bare number belongs to the prompt.
        (" 2 3 cats on a sofa", 2, "2560:1440 (16:9)", "fast", None, "Generate 2 images: 3 cats on a sofa"),
        (" 15 x", 15, "2560:1440 (16:9)", "fast", None, "Generate 15 images: x"),
    ],
)  # fmt: skip
def test_valid_commands(
    args: str, count: int, size: str, mode: str, seed: int | None, text: str
) -> None:
    request = parse_seq(args)
    assert request is not None
    assert (request.count, request.size, request.mode, request.seed, request.text) == (
        count,
        size,
        mode,
        seed,
        text,
    )
    assert request.size in schema.SIZES


@pytest.mark.parametrize("args", ["", "   ", "\n"])
def test_no_arguments_asks_for_usage(args: str) -> None:
    assert parse_seq(args) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("0 a cat", "must be 1–15 (you gave 0)"),
        ("16 a cat", "must be 1–15 (you gave 16)"),
        ("-3 a cat", "must be 1–15 (you gave -3)"),
        ("9" * 40 + " a cat", "must be 1–15"),
        ("5:4 a cat", "Use one of: 1:1 4:3 3:4 16:9 9:16 3:2 2:3 21:9"),
        ("16:9 4:3 a cat", "ratio only once"),
        ("seed=abc a cat", "Seed must be a whole number from 0 to 2147483647"),
        ("seed=-1 a cat", "Seed must be a whole number"),
        ("seed=" + "1" * 30 + " a cat", "Seed must be a whole number"),
        ("seed=1 seed=2 a cat", "seed= only once"),
        ("mode=turbo a cat", "mode must be one of: fast, standard"),
        ("style=anime a cat", "Unknown option style="),
        ("4 16:9", "Add a prompt"),
        ("seed=5", "Add a prompt"),
        ("4 Generate 3 images of a cat", "You asked for 4 images but the prompt says 3"),
        ("Make 3 images and then 5 images", "mentions 3, 5 images"),
        ("Generate 20 images of a cat", "must be 1–15 (you gave 20)"),
    ],
)
def test_invalid_commands_explain_what_is_allowed(args: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        parse_seq(args)
    assert expected in info.value.user_message


def test_too_long_prompt_says_by_how_much() -> None:
    prefix = "Generate 3 images: "
    with pytest.raises(InputError) as info:
        parse_seq("x" * (schema.MAX_TEXT - len(prefix) + 7))
    assert "7 characters too long" in info.value.user_message
    # Exactly at the limit is fine.
    request = parse_seq("x" * (schema.MAX_TEXT - len(prefix)))
    assert request is not None and len(request.text) == schema.MAX_TEXT


def test_prompt_that_states_count_is_checked_against_the_limit_without_prefix() -> None:
    prompt = "Generate 2 images of " + "y" * (schema.MAX_TEXT - 21 + 1)
    with pytest.raises(InputError) as info:
        parse_seq(prompt)
    assert "1 character too long" in info.value.user_message


@pytest.mark.parametrize(
    ("prompt", "count"),
    [
        ("a lighthouse through four seasons", None),
        ("Generate 4 images of a fox", 4),
        ("three consecutive images of a fox", 3),
        ("a 4-panel comic", None),
        ("ten photos", 10),
        ("1 image only", 1),
        ("a story in 6 comic-style panels", 6),
    ],
)
def test_prompt_count(prompt: str, count: int | None) -> None:
    assert prompt_count(prompt) == count


def test_command_args_strips_command_and_bot_name() -> None:
    assert command_args("/seq@SeqImageBot 4 a\nb") == " 4 a\nb"
    assert command_args("/seq") == ""


# ---- Scripts: a numbered list, one image per item ------------------------------------------------

_FOUR = "Panel 1: a fox wakes. Panel 2: it sees snow. Panel 3: it jumps. Panel 4: it sleeps."


@pytest.mark.parametrize(
    ("args", "text", "panels"),
    [
        # Every list style, with and without a line of shared context.
        (
            " 1. a fox wakes\n2. it sees snow\n3. it jumps\n4. it sleeps",
            "Generate 4 images. " + _FOUR,
            ("a fox wakes", "it sees snow", "it jumps", "it sleeps"),
        ),
        (
            " 1) a fox wakes\n2) it sees snow\n3) it jumps\n4) it sleeps",
            "Generate 4 images. " + _FOUR,
            ("a fox wakes", "it sees snow", "it jumps", "it sleeps"),
        ),
        (
            " Winter, watercolour\nPanel 1: a fox wakes\npanel 2: it sees snow\n"
            "Panel 3: it jumps\nPanel 4: it sleeps",
            "Generate 4 images. Winter, watercolour. " + _FOUR,
            ("a fox wakes", "it sees snow", "it jumps", "it sleeps"),
        ),
        (
            " Зима, акварель\nКадр 1: лиса просыпается\nКадр 2: видит снег!",
            "Generate 2 images. Зима, акварель. Panel 1: лиса просыпается. Panel 2: видит снег!",
            ("лиса просыпается", "видит снег!"),
        ),
        # Blank lines and spaces around items are dropped; the items keep their order.
        (
            "\nA comic strip:\n\n  1. b first  \n\n2. a second\n",
            "Generate 2 images. A comic strip: Panel 1: b first. Panel 2: a second.",
            ("b first", "a second"),
        ),
    ],
)
def test_a_script_makes_one_image_per_panel(args: str, text: str, panels: tuple[str, ...]) -> None:
    request = parse_seq(args)
    assert request is not None
    assert (request.count, request.text, request.panels) == (len(panels), text, panels)
    assert request.prompt == args.strip()


def test_a_script_with_options_and_a_matching_count() -> None:
    request = parse_seq(" 3 9:16 seed=7 A story in three panels\n1. a\n2. b\n3. c")
    assert request is not None
    assert (request.count, request.size, request.seed) == (3, "1440:2560 (9:16)", 7)
    assert (
        request.text
        == "Generate 3 images. A story in three panels. Panel 1: a. Panel 2: b. Panel 3: c."
    )


def test_a_script_may_be_the_replied_message() -> None:
    request = parse_seq("", replied_text="1. a\n2. b")
    assert request is not None and request.panels == ("a", "b")


@pytest.mark.parametrize(
    "args",
    [
        " A comic: 1. a fox 2. an owl 3. a bear",  # not at line starts
        " 1. only one item",
        " 1. a fox\nand then it snows\n2. an owl",  # a line that is not an item
        " 1. a fox\n2. an owl\nthe end",
        " 1.5 kg of flour\n2.5 kg of sugar",  # decimals, not items
    ],
)
def test_not_a_script(args: str) -> None:
    request = parse_seq(args)
    assert request is not None and request.panels == ()
    assert request.text.startswith("Generate 3 images: ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            " " + "\n".join(f"{i}. p{i}" for i in range(1, 17)),
            "Your script has 16 panels, but at most 15 images can be made at once: cut 1.",
        ),
        (
            " " + "\n".join(f"{i}) p{i}" for i in range(1, 21)),
            "Your script has 20 panels, but at most 15 images can be made at once: cut 5.",
        ),
        (
            " 4 1. a\n2. b\n3. c",
            "You asked for 4 images but the script has 3 panels. Leave the count out",
        ),
        (
            " Generate 4 images of a fox\n1. a\n2. b",
            "You asked for 4 images but the script has 2 panels.",
        ),
        (" 1. a\n3. b", "Number the panels of a script 1, 2, 3… in order, one per line (yours go 1, 3)."),
        (" 2. a\n3. b", "(yours go 2, 3)"),
    ],
)  # fmt: skip
def test_a_script_that_cannot_be_sent_says_why(args: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        parse_seq(args)
    assert expected in info.value.user_message


def test_a_script_too_long_says_by_how_much() -> None:
    def script(width: int) -> str:
        return "\n".join(f"{i}. " + "x" * width for i in range(1, 11))

    overhead = len("Generate 10 images.") + sum(len(f" Panel {i}: .") for i in range(1, 11))
    # 10 panels of 56 characters are exactly at the limit.
    width = (schema.MAX_TEXT - overhead) // 10
    assert overhead + 10 * width == schema.MAX_TEXT
    request = parse_seq(script(width))
    assert request is not None and len(request.text) == schema.MAX_TEXT
    with pytest.raises(InputError) as info:
        parse_seq(script(width + 1))
    assert "Your script is 10 characters too long (the limit is 600" in info.value.user_message


def test_a_script_in_russian_is_refused_in_russian() -> None:
    with pytest.raises(InputError) as info:
        parse_seq(" " + "\n".join(f"Кадр {i}: к{i}" for i in range(1, 18)))
    assert info.value.text("ru").startswith("Кадров в сценарии: 17")
    assert "(их 2)" in info.value.text("ru")


def test_a_script_sets_the_count_over_the_chat_default() -> None:
    request = parse_seq(" 1. a\n2. b", defaults=ChatDefaults(count=6, mode="standard"))
    assert request is not None and (request.count, request.mode) == (2, "standard")
