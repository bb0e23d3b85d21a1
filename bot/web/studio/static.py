"""The studio's page and its files: ``bot/web/static/`` (package data, no build step), read once
at start; only the files there are served, by name, so nothing else on the disk can be."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(NAME_RE)
MAX_FILE_BYTES = 2 * 1024 * 1024
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class StaticFile:
    """One file: its bytes, type and a strong ETag."""

    data: bytes
    content_type: str
    etag: str


def load(folder: Path | None = None) -> dict[str, StaticFile]:
    """The servable files of ``folder`` by name: plain files only (no folders, no links, no
    hidden files), of a known type, not too big."""
    folder = folder or STATIC_DIR
    files: dict[str, StaticFile] = {}
    if not folder.is_dir():
        log.warning("studio: %s is missing: the studio's page is not served", folder)
        return files
    for path in sorted(folder.iterdir()):
        kind = TYPES.get(path.suffix.lower())
        if kind is None or not _NAME.fullmatch(path.name) or path.is_symlink():
            continue
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            continue
        data = path.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        files[path.name] = StaticFile(data, kind, etag)
    return files
