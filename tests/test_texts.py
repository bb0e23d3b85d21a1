"""The catalogues: every text the bot sends exists in each language that has a ``.po`` file."""

from __future__ import annotations

import ast
import gettext
import io
import shutil
import string
import subprocess
from pathlib import Path

import polib
import pytest

from bot import command, render, texts
from bot.errors import InputError
from bot.texts import LOCALE_DIR, NOUNS, Catalogues, Plural, lang_of, plural, tr

BOT = Path(__file__).resolve().parents[1] / "bot"
CATALOGUE_FILES = sorted(LOCALE_DIR.glob("*.po"))
# Shown on stderr to the operator, never in a chat.
_NOT_CHAT = {"ConfigError", "ValueError", "RuntimeError"}  # programming errors, never shown


def _strings(node: ast.AST | None, names: dict[str, str]) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body, names) + _strings(node.orelse, names)
    if isinstance(node, ast.Name) and node.id in names:
        return [names[node.id]]
    return []


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            calls.append(
                (func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""), node)
            )
    return calls


def _trees() -> list[ast.Module]:
    return [ast.parse(path.read_text()) for path in sorted(BOT.rglob("*.py"))]


def templates() -> set[str]:
    """Every template the code passes to tr() or to a user-facing error."""
    found: set[str] = set()
    for tree in _trees():
        names = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
            for t in n.targets
            if isinstance(t, ast.Name)
        }  # fmt: skip
        for name, node in _calls(tree):
            if name == "tr" and len(node.args) >= 2:
                found.update(_strings(node.args[1], names))
            elif (name.endswith("Error") or name in ("BadImage", "DeliveryFailed")) and (
                name not in _NOT_CHAT and node.args
            ):
                found.update(_strings(node.args[0], names))
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and all(
                isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values
            ):
                parent_names = {
                    "_STATUS_WORDS",
                    "_CANCEL_ANSWERS",
                    "COMMANDS",
                    "CAST_COMMANDS",
                    "_FILES_FROM",
                }
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
                    ("🔁", "📎", "ℹ️", "🗂", "📦", "➡️", "✏️")
                ):
                    found.add(first.value)
        # Answers kept as tuples of texts per button (delivery/files.py FILES_ANSWERS), and the studio's
        # page texts (web/studio/texts.py STUDIO_TEXTS).
        for n in tree.body:
            if isinstance(n, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("FILES_ANSWERS", "STUDIO_TEXTS")
                for t in n.targets
            ):
                found.update(
                    c.value
                    for c in ast.walk(n.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
    return found


def nouns() -> set[str]:
    """Every noun the code counts with plural(lang, n, noun) or Plural(n, noun)."""
    found: set[str] = set()
    for tree in _trees():
        for name, node in _calls(tree):
            if name in ("plural", "Plural"):
                arg = node.args[-1] if node.args else None
                found.update(_strings(arg, {}))
    return found


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def read(path: Path) -> polib.POFile:
    return polib.pofile(str(path))


def nplurals(po: polib.POFile) -> int:
    rule = po.metadata["Plural-Forms"]
    return int(rule.split("nplurals=")[1].split(";")[0])


def test_the_code_walk_finds_the_texts() -> None:
    assert len(templates()) > 60
    assert nouns() == set(NOUNS)  # every noun counted has an entry; no entry unused


def test_russian_has_a_catalogue() -> None:
    assert LOCALE_DIR / "ru.po" in CATALOGUE_FILES
    assert texts.languages() == tuple(p.stem for p in CATALOGUE_FILES)


@pytest.mark.parametrize("path", CATALOGUE_FILES, ids=lambda p: p.name)
def test_catalogue_header(path: Path) -> None:
    po = read(path)
    assert po.metadata["Language"] == path.stem
    assert "charset=UTF-8" in po.metadata["Content-Type"]
    # The standard library parses the rule; every count picks one of the forms the file declares.
    rule = gettext.c2py(po.metadata["Plural-Forms"].split("plural=")[1].rstrip(";"))
    assert {rule(n) for n in range(1000)} == set(range(nplurals(po)))


@pytest.mark.parametrize("path", CATALOGUE_FILES, ids=lambda p: p.name)
def test_catalogue_has_every_template_with_the_same_placeholders(path: Path) -> None:
    po = read(path)
    singles = {e.msgid: e for e in po if not e.msgid_plural}
    missing = sorted(t for t in templates() if t not in singles)
    assert missing == []
    for entry in singles.values():
        assert entry.msgstr and not entry.fuzzy, entry.msgid  # otherwise it shows in English
        assert fields(entry.msgstr) == fields(entry.msgid), entry.msgid
        # Translators' tools check placeholders in entries flagged so.
        assert ("python-brace-format" in entry.flags) == bool(fields(entry.msgid)), entry.msgid


@pytest.mark.parametrize("path", CATALOGUE_FILES, ids=lambda p: p.name)
def test_catalogue_plurals_have_every_form(path: Path) -> None:
    po = read(path)
    counted = {e.msgid: e for e in po if e.msgid_plural}
    assert sorted(counted) == sorted(one for one, _ in NOUNS.values())
    for one, many in NOUNS.values():
        entry = counted[one]
        assert entry.msgid_plural == many and not entry.fuzzy
        assert sorted(entry.msgstr_plural) == list(range(nplurals(po))), one
        for form in entry.msgstr_plural.values():
            assert form and fields(form) == {"n"}, one
        assert "python-brace-format" in entry.flags


@pytest.mark.parametrize("path", CATALOGUE_FILES, ids=lambda p: p.name)
def test_catalogue_has_nothing_stale(path: Path) -> None:
    po = read(path)
    assert po.obsolete_entries() == []
    singles = {e.msgid for e in po if not e.msgid_plural}
    assert sorted(singles - templates()) == []


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("RU", "ru"),
        ("en", "en"),
        ("uk", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_from_telegram_code(code: str | None, lang: str) -> None:
    assert lang_of(code) == lang


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 изображений"), (1, "1 изображение"), (2, "2 изображения"), (5, "5 изображений"),
     (11, "11 изображений"), (21, "21 изображение"), (14, "14 изображений"),
     (22, "22 изображения"), (111, "111 изображений"), (1001, "1001 изображение")],
)  # fmt: skip
def test_russian_plurals(n: int, text: str) -> None:
    assert plural("ru", n, "image") == text


def test_english_plurals_need_no_catalogue() -> None:
    assert plural("en", 1, "image") == "1 image" and plural("en", 2, "image") == "2 images"
    assert plural(None, 0, "job") == "0 jobs" and plural("xx", 1, "character") == "1 character"
    assert tr("en", "Cancel") == "Cancel" and tr("xx", "Cancel") == "Cancel"


def test_errors_speak_both_languages() -> None:
    with pytest.raises(InputError) as info:
        command.parse_seq("99 a cat")
    assert info.value.user_message == "The number of images must be 1–15 (you gave 99)."
    assert info.value.text("ru") == tr("ru", info.value.template, **info.value.params)
    assert info.value.text("ru") == "Количество изображений: от 1 до 15 (указано: 99)."
    assert tr("ru", "{n}", n=Plural(3, "job")) == "3 задания"


def test_a_job_answer_is_one_language() -> None:
    answer = tr("ru", "Cancelled.")
    assert tr("ru", "Job #{id}: {answer}", id=1, answer=answer) == "Задание №1: Отменено."


def test_an_empty_text_is_not_the_catalogue_header() -> None:
    assert tr("ru", "") == ""


def test_russian_usage_lists_the_schema_values() -> None:
    text = render.usage("ru")
    assert "16:9" in text and "1–15" in text and text != render.usage("en")


DE_PO = r"""
msgid ""
msgstr ""
"Language: de\n"
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#, python-brace-format
msgid "{n} image"
msgid_plural "{n} images"
msgstr[0] "{n} Bild"
msgstr[1] "{n} Bilder"

msgid "Cancel"
msgstr "Abbrechen"

#, python-brace-format
msgid "✅ Done: {images} in {took}."
msgstr "✅ Fertig: {images} in {took}."

msgid "Make a series of images: /seq 4 16:9 prompt"
msgstr "Eine Bildserie: /seq 4 16:9 Beschreibung"

#, fuzzy
msgid "Saved."
msgstr "Gespeichert?"
"""


def test_a_third_language_is_one_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import app  # the command menu

    (tmp_path / "ru.po").write_bytes((LOCALE_DIR / "ru.po").read_bytes())
    (tmp_path / "de.po").write_text(DE_PO, encoding="utf-8")
    monkeypatch.setattr(texts, "CATALOGUES", Catalogues(tmp_path))

    assert texts.languages() == ("de", "ru")
    assert lang_of("de-AT") == "de" and lang_of("ru") == "ru" and lang_of("fr") == "en"
    assert tr("de", "Cancel") == "Abbrechen"
    assert [plural("de", n, "image") for n in (1, 2, 21)] == ["1 Bild", "2 Bilder", "21 Bilder"]
    done = tr("de", "✅ Done: {images} in {took}.", images=Plural(1, "image"), took="0:42")
    assert done == "✅ Fertig: 1 Bild in 0:42."
    # Not translated yet (or fuzzy): English, as gettext does, never an empty text.
    assert tr("de", "Saved.") == "Saved."
    assert plural("de", 2, "job") == "2 jobs"
    assert app.commands("de")[0].description == "Eine Bildserie: /seq 4 16:9 Beschreibung"
    assert app.commands("ru")[0].description == tr("ru", app.COMMANDS["seq"])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("german.po", DE_PO),
        ("de.po", 'msgid "Cancel"\nmsgstr "Abbrechen"\nthis is not gettext\n'),
        ("de.po", DE_PO.replace("plural=(n != 1)", "plural=(__import__('os'))")),
    ],
)
def test_a_broken_catalogue_stops_the_start(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=name):
        Catalogues(tmp_path)


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext is not installed")
@pytest.mark.parametrize("path", CATALOGUE_FILES, ids=lambda p: p.name)
def test_gnu_msgfmt_accepts_the_catalogue(path: Path) -> None:
    """What translators' tools check: syntax, header, plural forms, python-brace-format placeholders."""
    check = ["msgfmt", "--check", "--output-file=-", str(path)]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0


def test_catalogues_read_the_standard_library_way() -> None:
    """The .po file read with polib gives what msgfmt's .mo would: the stdlib reads both."""
    po = read(LOCALE_DIR / "ru.po")
    catalogue = gettext.GNUTranslations(io.BytesIO(po.to_binary()))
    assert catalogue.ngettext("{n} image", "{n} images", 3) == "{n} изображения"
    assert catalogue.gettext("Cancel") == tr("ru", "Cancel") == "Отменить"


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
