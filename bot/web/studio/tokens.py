"""The studio's image URLs: ``/app/img/<token>``, the token signed for one person, one job, one
image and a short while (pure). Signed with the key of the reference URLs (``web/references.py``)
under a label of its own, so a signature of one kind is never valid as the other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

# t: a panel's thumbnail (WebP); f: a panel full size; r: a reference image's thumbnail;
# c: a saved character's image (the "job" is the character's id).
KINDS = frozenset({"t", "f", "r", "c"})
_LABEL = b"studio-image\n"
_SIG_CHARS = 32
IMAGE_PATH_RE = r"[0-9]{1,18}\.[0-9]{1,18}\.[0-9]{1,3}\.[tfrc]\.[0-9]{1,12}\.[A-Za-z0-9_-]{32}"
_TOKEN = re.compile(IMAGE_PATH_RE)


@dataclass(frozen=True)
class ImageToken:
    """What a token grants: ``person`` may see image ``index`` of ``job`` (``kind``) until
    ``expires`` (unix seconds)."""

    person: int
    job: int
    index: int
    kind: str
    expires: int


class ImageTokens:
    """Makes and checks image tokens with ``key``."""

    def __init__(self, key: bytes, lifetime: float) -> None:
        if len(key) < 16:
            raise ValueError("the image URL key is too short")
        self._key = key
        self.lifetime = lifetime

    def _sig(self, payload: str) -> str:
        digest = hmac.new(self._key, _LABEL + payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:_SIG_CHARS]

    def make(self, person: int, job: int, index: int, kind: str, now: float) -> str:
        """A token for this image, good for ``lifetime`` seconds from ``now``. Tokens made in the
        same minute are the same, so the browser's cache keeps the image."""
        if kind not in KINDS:
            raise ValueError("not an image kind")
        # Rounded up to the next minute: a page's URLs stay the same while it is re-read.
        expires = int(now + self.lifetime) // 60 * 60 + 60
        payload = f"{person}.{job}.{index}.{kind}.{expires}"
        return f"{payload}.{self._sig(payload)}"

    def check(self, token: str, now: float) -> ImageToken | None:
        """What ``token`` grants, if it is ours (constant-time compare) and not expired."""
        if not _TOKEN.fullmatch(token):
            return None
        payload, _, sig = token.rpartition(".")
        if not hmac.compare_digest(self._sig(payload).encode(), sig.encode()):
            return None
        person, job, index, kind, expires = payload.split(".")
        if int(expires) < now:
            return None
        return ImageToken(int(person), int(job), int(index), kind, int(expires))
