"""Reference images published to RunComfy: signed URLs, the key behind them, and their handler.

A URL is ``{PUBLIC_URL}/refs/{job}/{ref}/{sig}.jpg``: ``ref`` is the bot's own random id and
``sig`` an HMAC over the job and the reference with a key kept beside the database, so a URL
made before a restart still works after it (RunComfy may fetch only when the job leaves its
queue), and nobody can make one. It answers only while the job is unfinished and the reference
is its own; everything else is a bare 404, whatever the reason, so a probe learns nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import tornado.web

from bot.models import Job

log = logging.getLogger(__name__)

SIG_CHARS = 32  # of the urlsafe-base64 HMAC-SHA256 (43 chars): 192 bits
KEY_BYTES = 32
_KEY_MODE = 0o600
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{32}")
_REF_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
# A job id in a URL path: digits only, no sign, no leading zero, bounded.
_JOB_RE = re.compile(r"[1-9][0-9]{0,17}")
# The route: anything that does not match it falls to the server's 404 handler.
ROUTE = r"/refs/([0-9]{1,18})/([A-Za-z0-9_-]{8,64})/([A-Za-z0-9_-]{32})\.jpg"


class ReferenceLinks:
    """Makes and checks the signed URLs of reference images."""

    def __init__(self, public_url: str, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the reference URL key is too short")
        self.public_url = public_url.rstrip("/")
        self._key = key

    def _sig(self, job_id: int, ref_id: str) -> str:
        digest = hmac.new(self._key, f"{job_id}/{ref_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:SIG_CHARS]

    def url(self, job_id: int, ref_id: str) -> str:
        """The public URL RunComfy fetches this reference image from."""
        if not _REF_RE.fullmatch(ref_id):
            raise ValueError("not a reference id")
        return f"{self.public_url}/refs/{job_id}/{ref_id}/{self._sig(job_id, ref_id)}.jpg"

    def check(self, job_id: int, ref_id: str, sig: str) -> bool:
        """Whether ``sig`` is this reference's signature (compared in constant time)."""
        if not (_REF_RE.fullmatch(ref_id) and _SIG_RE.fullmatch(sig)):
            return False
        return hmac.compare_digest(self._sig(job_id, ref_id).encode(), sig.encode())


def prefix_of(public_url: str) -> str:
    """The path part of PUBLIC_URL (``""`` or ``/seqbot``): the proxy forwards it unchanged."""
    return urlsplit(public_url).path.rstrip("/")


def key_path(database_path: Path) -> Path:
    """``<DATABASE_PATH>.webkey``: beside the database, so a backup of the folder keeps it."""
    return database_path.with_name(database_path.name + ".webkey")


def load_key(database_path: Path) -> bytes:
    """The URL key: made once (owner-only), then the same across restarts.

    A new key would break the URLs of jobs still waiting in RunComfy's queue.
    """
    path = key_path(database_path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) >= KEY_BYTES:
        return key
    if key:
        log.warning("%s is too short to be a key; making a new one", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _KEY_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return key


class Quiet(tornado.web.RequestHandler):
    """A handler that says nothing about itself: no Server header, a bare text 404 for
    everything it refuses (a method other than GET/HEAD included, not tornado's 405)."""

    def set_default_headers(self) -> None:
        """No Server header; nothing is cached, nothing sniffed."""
        self.clear_header("Server")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def compute_etag(self) -> None:
        """No ETag: nothing is cached, and hashing a megabyte image was a third of a GET's CPU."""
        return None

    def send_error(self, status_code: int = 500, **kwargs: object) -> None:
        """Every refusal is a 404 (a 405 would say the path exists)."""
        super().send_error(404 if status_code == 405 else status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: object) -> None:
        """A bare text line, never a traceback or an HTML page."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Not Found\n" if status_code == 404 else f"{status_code}\n")


@tornado.web.stream_request_body
class ReferenceHandler(Quiet):
    """GET/HEAD of one reference image of one unfinished job; every other case is a 404."""

    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(
        self,
        links: ReferenceLinks,
        job: Callable[[int], Job | None],
        path: Callable[[int, str], Path],
    ) -> None:
        """Tornado's per-request set-up: the links, a job by id, a reference's file."""
        self.links = links
        self.job = job
        self.path = path

    def data_received(self, chunk: bytes) -> None:
        """A GET has no body worth reading; a POST never gets here (404 before its body)."""

    async def get(self, job_text: str, ref_id: str, sig: str) -> None:
        """The image, if the URL is signed, the job unfinished and the reference its own."""
        data = await self._image(job_text, ref_id, sig)
        if data is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Content-Length", str(len(data)))
        if self.request.method != "HEAD":
            # Headers first, on their own: tornado would copy the whole image to put them in
            # front of it (a tenth of a GET's CPU at 1 MB).
            await self.flush()
            self.write(data)

    head = get

    async def _image(self, job_text: str, ref_id: str, sig: str) -> bytes | None:
        if not _JOB_RE.fullmatch(job_text):
            return None
        job_id = int(job_text)
        if not self.links.check(job_id, ref_id, sig):
            log.debug("refused a reference URL with a wrong signature")
            return None
        job = self.job(job_id)
        if job is None or job.final or ref_id not in {ref.id for ref in job.refs}:
            return None
        try:
            return await asyncio.to_thread(self.path(job_id, ref_id).read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            log.warning("job %d: reference %s was asked for, but its file is gone", job_id, ref_id)
            return None


@tornado.web.stream_request_body
class HealthHandler(Quiet):
    """``{PUBLIC_URL}/healthz``: this process's start nonce, so ``doctor`` knows who answered."""

    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(self, nonce: str) -> None:
        """Tornado's per-request set-up."""
        self.nonce = nonce

    def data_received(self, chunk: bytes) -> None:
        """Never a body worth reading."""

    def get(self) -> None:
        """``seqbot <nonce>``."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if self.request.method != "HEAD":
            self.write(f"seqbot {self.nonce}\n")

    head = get
