"""The studio's page as shipped: package data, no inline code (strict CSP), small enough."""

from __future__ import annotations

import fnmatch
import gzip
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "bot" / "web" / "static"
BUDGET_GZIP_BYTES = 60 * 1024  # all JS + CSS, issue 22


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag
        if any(name == "style" or name.startswith("on") for name, _ in attrs):
            self.inline.append(f"<{tag}> attribute")

    def handle_data(self, data: str) -> None:
        if self._open in ("script", "style") and data.strip():
            self.inline.append(f"<{self._open}> body")

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def test_pip_install_ships_every_static_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["bot"]
    files = [p.relative_to(ROOT / "bot").as_posix() for p in STATIC.iterdir()]
    assert {"web/static/index.html", "web/static/app.js", "web/static/app.css"} <= set(files)
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files


def test_the_page_has_no_inline_code_and_loads_only_its_own_files_and_telegrams() -> None:
    page = _Tags()
    page.feed((STATIC / "index.html").read_text())
    assert page.inline == []
    scripts = [a for t, a in page.tags if t == "script"]
    assert [s.get("src") for s in scripts] == [
        "https://telegram.org/js/telegram-web-app.js",
        "static/app.js",
    ]
    assert scripts[1].get("type") == "module"
    styles = [a.get("href") for t, a in page.tags if t == "link" and a.get("rel") == "stylesheet"]
    assert styles == ["static/app.css"]
    # No other origin anywhere in the shipped files (no CDN at run time).
    for path in STATIC.iterdir():
        origins = set(re.findall(r"https?://[^/\"'\s)]+", path.read_text()))
        assert origins <= {"https://telegram.org"}, (path.name, origins)


def test_the_script_never_writes_html() -> None:
    source = (STATIC / "app.js").read_text()
    assert not re.search(
        r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|eval\(", source
    )


def test_all_js_and_css_fit_the_budget() -> None:
    code = [p for p in STATIC.iterdir() if p.suffix in (".js", ".css")]
    size = sum(len(gzip.compress(p.read_bytes(), 9)) for p in code)
    assert 0 < size <= BUDGET_GZIP_BYTES
