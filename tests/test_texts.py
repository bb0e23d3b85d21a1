"""One catalogue: every text the bot sends exists in English and Russian."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from bot import command, render
from bot.errors import InputError
from bot.texts import RU, Plural, lang_of, plural, tr

BOT = Path(__file__).resolve().parents[1] / "bot"
# Shown on stderr to the operator, never in a chat.
_NOT_CHAT = {"ConfigError"}


def _strings(node: ast.AST | None, names: dict[str, str]) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body, names) + _strings(node.orelse, names)
    if isinstance(node, ast.Name) and node.id in names:
        return [names[node.id]]
    return []


def templates() -> set[str]:
    """Every template the code passes to tr() or to a user-facing error."""
    found: set[str] = set()
    for path in BOT.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
            for t in n.targets
            if isinstance(t, ast.Name)
        }  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name == "tr" and len(node.args) >= 2:
                    found.update(_strings(node.args[1], names))
                elif (name.endswith("Error") or name in ("BadImage", "DeliveryFailed")) and (
                    name not in _NOT_CHAT and node.args
                ):
                    found.update(_strings(node.args[0], names))
            if isinstance(node, ast.Dict) and all(
                isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values
            ):
                parent_names = {"_STATUS_WORDS", "_CANCEL_ANSWERS", "COMMANDS"}
                for n in tree.body:
                    if (
                        isinstance(n, ast.Assign)
                        and n.value is node
                        and any(isinstance(t, ast.Name) and t.id in parent_names for t in n.targets)
                    ):
                        found.update(v.value for v in node.values)  # type: ignore[attr-defined]
            if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                first = node.elts[0]
                if isinstance(first, ast.Constant) and str(first.value).startswith(
                    ("🔁", "📎", "ℹ️")
                ):
                    found.add(first.value)
    return found


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_template_has_a_russian_form_with_the_same_placeholders() -> None:
    found = templates()
    assert len(found) > 60  # the walk really finds the texts
    missing = sorted(t for t in found if t not in RU)
    assert missing == []
    for english, russian in RU.items():
        assert fields(english) == fields(russian), english
    assert sorted(set(RU) - found) == []  # nothing stale in the catalogue


@pytest.mark.parametrize(
    ("code", "lang"), [("ru", "ru"), ("ru-RU", "ru"), ("en", "en"), ("uk", "en"), (None, "en")]
)
def test_language_from_telegram_code(code: str | None, lang: str) -> None:
    assert lang_of(code) == lang


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "1 изображение"), (2, "2 изображения"), (5, "5 изображений"), (11, "11 изображений"),
     (21, "21 изображение"), (14, "14 изображений"), (22, "22 изображения")],
)  # fmt: skip
def test_russian_plurals(n: int, text: str) -> None:
    assert plural("ru", n, "image") == text
    assert plural("en", 1, "image") == "1 image" and plural("en", 2, "image") == "2 images"


def test_errors_speak_both_languages() -> None:
    with pytest.raises(InputError) as info:
        command.parse_seq("99 a cat")
    assert info.value.user_message == "The number of images must be 1–15 (you gave 99)."
    assert info.value.text("ru") == tr("ru", info.value.template, **info.value.params)
    assert info.value.text("ru") == "Количество изображений: от 1 до 15 (указано: 99)."
    assert tr("ru", "{n}", n=Plural(3, "job")) == "3 задания"


def test_russian_usage_lists_the_schema_values() -> None:
    text = render.usage("ru")
    assert "16:9" in text and "1–15" in text and text != render.usage("en")


@pytest.mark.parametrize(
    ("prompt", "count"),
    [
        ("4 изображения маяка в разные времена года", 4),
        ("сделай четыре картинки с лисой", 4),
        ("Сгенерируй 6 иллюстраций про кота", 6),
        ("маяк в четыре времени года", None),
        ("две фотографии кота", 2),
    ],
)
def test_russian_prompts_state_their_count(prompt: str, count: int | None) -> None:
    assert command.prompt_count(prompt) == count
