"""The studio page's texts: the list /app/api/me sends is exactly what app.js shows, translated."""

from __future__ import annotations

import re
from pathlib import Path

import polib
import pytest

from bot.texts import LOCALE_DIR
from bot.web.studio.texts import ERROR_TEXTS, STUDIO_TEXTS, page_texts

APP_JS = Path(__file__).resolve().parents[1] / "bot" / "web" / "static" / "app.js"


def page_msgids() -> set[str]:
    """Every msgid app.js asks for: t("...") and the per-panel labels it fills later."""
    source = APP_JS.read_text()
    found = set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', source))
    found |= set(re.findall(r'labelKey: "((?:[^"\\]|\\.)*)"', source))
    return found


def test_the_list_is_what_the_page_shows() -> None:
    assert len(STUDIO_TEXTS) == len(set(STUDIO_TEXTS))
    # What app.js shows, and the API's error messages it shows as sent (one is also the page's).
    assert set(STUDIO_TEXTS) == page_msgids() | set(ERROR_TEXTS.values())


@pytest.mark.parametrize("path", sorted(LOCALE_DIR.glob("*.po")), ids=lambda p: p.stem)
def test_every_catalogue_translates_the_page(path: Path) -> None:
    po = polib.pofile(str(path))
    done = {e.msgid for e in po.translated_entries()}
    missing = [m for m in STUDIO_TEXTS if m not in done]
    assert missing == []
    for entry in po:
        if entry.msgid in STUDIO_TEXTS:
            assert set(re.findall(r"\{\w+\}", entry.msgstr)) == set(
                re.findall(r"\{\w+\}", entry.msgid)
            ), entry.msgid


def test_texts_in_russian_and_english() -> None:
    ru, en = page_texts("ru"), page_texts("en")
    assert ru["Studio"] == "Студия" and en["Studio"] == "Studio"
    assert ru["Panels: {n}"] == "Кадров: {n}"
    assert set(ru) == set(en) == set(STUDIO_TEXTS)
