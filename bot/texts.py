"""Every text the bot sends, in the reader's language.

Texts are written in English where they are used, as ``str.format`` templates passed to
:func:`tr`; counts go through :func:`plural` (or a :class:`Plural` parameter) so that each language
picks its own plural form. The translations are gettext catalogues, one per language:
``bot/locale/<lang>.po``, where ``msgid`` is the English template and ``msgstr`` its translation,
and counts are ``msgid``/``msgid_plural`` entries ("{n} image"/"{n} images") with one ``msgstr[i]``
per plural form that the file's ``Plural-Forms`` header defines (three for Russian). English is the
source language and needs no file. The languages are the files present: adding one is one new file
and a restart, no code change. A test walks the code and fails on any template a catalogue lacks.

Why ``.po`` files read at start-up: ``.po`` is the format translators' tools (Poedit, Weblate,
Crowdin, Lokalise, ``msgfmt --check``) open, and it carries plural rules per language, which a dict
of our own would have to reinvent. Each file is parsed with ``polib`` (small, pure Python, no
dependencies of its own) and turned in memory into the standard library's
:class:`gettext.GNUTranslations`, so lookups, the fallback to English for an entry not (yet)
translated, and the evaluation of the ``Plural-Forms`` expression (a C expression the standard
library checks and translates safely, never ``eval`` on raw text) are the standard library's.
Committed ``.mo`` files would spare ``polib`` but make a language two files, one of them a build
product to keep in step; parsing about 150 entries per language takes milliseconds.

A catalogue that cannot be read stops the bot at start (a clear error beats half-translated chats).
Fuzzy and untranslated entries are left out, as ``msgfmt`` does: those texts show in English.
"""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path
from typing import Any, NamedTuple

import polib

LOCALE_DIR = Path(__file__).with_name("locale")
SOURCE_LANG = "en"

NOUNS: dict[str, tuple[str, str]] = {
    # noun: the English singular and plural, the msgid and msgid_plural of its catalogue entry
    "image": ("{n} image", "{n} images"),
    "job": ("{n} job", "{n} jobs"),
    "character": ("{n} character", "{n} characters"),
    "reference": ("{n} reference image", "{n} reference images"),
}

# Telegram gives a user's language as an IETF tag ("ru", "pt-br") and takes a command menu's as a
# two-letter ISO 639-1 code: a catalogue is named with the latter.
_LANG_FILE = re.compile(r"[a-z]{2}")


class Plural(NamedTuple):
    """A count whose noun is chosen in the reader's language when the text is made."""

    n: int
    noun: str


class Catalogues:
    """The translations in ``folder``: one ``<lang>.po`` file per language besides English."""

    def __init__(self, folder: Path = LOCALE_DIR) -> None:
        self.folder = folder
        self._by_lang: dict[str, gettext.NullTranslations] = {
            path.stem: _read(path) for path in sorted(folder.glob("*.po"))
        }
        self._source = gettext.NullTranslations()

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages with a catalogue, sorted (English has none unless one was added)."""
        return tuple(self._by_lang)

    def lang_of(self, code: str | None) -> str:
        """The user's language (Telegram's ``language_code``) when it has a catalogue, else English."""
        lang = (code or "").lower().replace("_", "-").split("-")[0]
        return lang if lang in self._by_lang else SOURCE_LANG

    def tr(self, lang: str | None, template: str, **params: Any) -> str:
        """``template`` in ``lang`` (English when unknown), with ``params`` filled in."""
        # gettext("") is the catalogue's header, never a text.
        text = self._translations(lang).gettext(template) if template else template
        if not params:
            return text
        values = {
            k: self.plural(lang, *v) if isinstance(v, Plural) else v for k, v in params.items()
        }
        return text.format(**values)

    def plural(self, lang: str | None, n: int, noun: str) -> str:
        """``4 images`` / ``4 изображения``: the form the language's Plural-Forms rule picks."""
        one, many = NOUNS[noun]
        return self._translations(lang).ngettext(one, many, n).format(n=n)

    def _translations(self, lang: str | None) -> gettext.NullTranslations:
        return self._by_lang.get(lang or SOURCE_LANG, self._source)


def _read(path: Path) -> gettext.GNUTranslations:
    """``path`` parsed, as the standard library's catalogue (the ``.mo`` made in memory)."""
    if not _LANG_FILE.fullmatch(path.stem):
        raise ValueError(f"{path}: a catalogue is named <two-letter language code>.po, e.g. de.po")
    try:
        po = polib.pofile(str(path))  # OSError on a syntax error, ValueError on bad bytes
        # Whatever the file's own charset, the catalogue made from it is UTF-8.
        po.encoding = "utf-8"
        po.metadata["Content-Type"] = "text/plain; charset=UTF-8"
        return gettext.GNUTranslations(io.BytesIO(po.to_binary()))  # ValueError: Plural-Forms
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable gettext catalogue: {exc}") from exc


# The catalogues the bot uses; tests may put a Catalogues of another folder in its place.
CATALOGUES = Catalogues()


def languages() -> tuple[str, ...]:
    """The languages with a catalogue: each gets the command menu in its language."""
    return CATALOGUES.languages


def lang_of(code: str | None) -> str:
    """The user's language (Telegram's ``language_code``) when it has a catalogue, else ``en``."""
    return CATALOGUES.lang_of(code)


def tr(lang: str | None, template: str, **params: Any) -> str:
    """``template`` in ``lang`` (English when unknown), with ``params`` filled in."""
    return CATALOGUES.tr(lang, template, **params)


def plural(lang: str | None, n: int, noun: str) -> str:
    """``4 images`` / ``4 изображения``."""
    return CATALOGUES.plural(lang, n, noun)
