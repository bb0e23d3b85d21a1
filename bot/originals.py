"""The original image files, kept on disk for a while for the Originals button and for resuming.

Readable by the bot's user only (folders 0700, files 0600): they are other people's pictures. Their
total size is capped (``ORIGINALS_MAX_MB``): past it, the jobs written longest ago go first, so a
full disk never stops new jobs or payments. A job whose files are gone answers its buttons with
"no longer kept". A job not yet wholly delivered is pinned (an empty file ``.pinned/<job id>``,
so a restart knows): the cap never takes its files, which a resumed delivery or /show still needs;
only ``ORIGINALS_KEEP_DAYS`` does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_PINS = ".pinned"
_REFS = "refs"  # <job>/refs/<id>.jpg: the job's reference images, removed with its results
_REF_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True)
class KeptFile:
    """One kept image: where it is, its size, and its first bytes (which tell its format)."""

    index: int
    path: Path
    size: int
    head: bytes


class OriginalsCache:
    """``<folder>/<job id>/<image index>``: written at delivery, pruned after ``keep_days``, and
    the oldest jobs removed while all of them together are over ``max_bytes`` (None: no cap)."""

    def __init__(self, folder: Path, keep_days: float = 2.0, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.keep_seconds = keep_days * 86400
        self.max_bytes = max_bytes
        # Per job: (when last written, bytes on disk). Read from the disk on first use; kept up
        # to date by every save and removal, so the cap costs no walk of the folder per file.
        self._sizes: dict[int, tuple[float, int]] | None = None
        self._pinned: set[int] = set()  # read with the sizes
        self._lock = threading.Lock()  # saves run in worker threads

    def _path(self, job_id: int, index: int) -> Path:
        return self.folder / str(job_id) / str(index)

    @property
    def total_bytes(self) -> int:
        """The bytes kept now (as the cache counts them)."""
        with self._lock:
            return sum(size for _, size in self._scanned().values())

    async def pin(self, job_id: int) -> None:
        """Keep the job's files whatever the cap, until :meth:`unpin` (its delivery is under way)."""

        def mark() -> None:
            with self._lock:
                self._scanned()
                pins = self.folder / _PINS
                pins.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
                os.close(os.open(pins / str(job_id), os.O_WRONLY | os.O_CREAT, _FILE_MODE))
                self._pinned.add(job_id)

        await asyncio.to_thread(mark)

    async def unpin(self, job_id: int) -> None:
        """Every image of the job was delivered: the cap may take its files from now on."""

        def unmark() -> None:
            with self._lock:
                self._scanned()
                self._pinned.discard(job_id)
                (self.folder / _PINS / str(job_id)).unlink(missing_ok=True)

        await asyncio.to_thread(unmark)

    async def pinned(self) -> set[int]:
        """The jobs pinned now (as the pins on disk say)."""

        def read() -> set[int]:
            with self._lock:
                self._scanned()
                return set(self._pinned)

        return await asyncio.to_thread(read)

    def ref_path(self, job_id: int, ref_id: str) -> Path:
        """Where a job's reference image is kept (``ref_id``: the bot's own random id)."""
        if not _REF_ID.fullmatch(ref_id):
            raise ValueError("not a reference id")
        return self.folder / str(job_id) / _REFS / f"{ref_id}.jpg"

    async def save(self, job_id: int, index: int, data: bytes) -> None:
        """Keep one image (off the event loop), then make room under the cap."""
        await asyncio.to_thread(self._save, job_id, self._path(job_id, index), data)

    def save_here(self, job_id: int, index: int, data: bytes) -> None:
        """:meth:`save` in the calling thread: for work already in a worker thread."""
        self._save(job_id, self._path(job_id, index), data)

    async def save_ref(self, job_id: int, ref_id: str, data: bytes) -> None:
        """Keep one reference image of the job (a cleaned JPEG), as :meth:`save` keeps results."""
        await asyncio.to_thread(self._save, job_id, self.ref_path(job_id, ref_id), data)

    async def load_ref(self, job_id: int, ref_id: str) -> bytes | None:
        """A kept reference image, or None once removed."""

        def read() -> bytes | None:
            try:
                return self.ref_path(job_id, ref_id).read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    def _save(self, job_id: int, path: Path, data: bytes) -> None:
        with self._lock:
            sizes = self._scanned()
            self.folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)  # removed by hand?
            path.parent.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
            path.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
            try:
                replaced = path.stat().st_size
            except FileNotFoundError:
                replaced = 0
            tmp = path.with_suffix(".part")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            tmp.replace(path)  # whole files only, even if the process dies mid-write
            _, size = sizes.get(job_id, (0.0, 0))
            sizes[job_id] = (time.time(), size - replaced + len(data))
            self._make_room(sizes, keep=job_id)

    def _scanned(self) -> dict[int, tuple[float, int]]:
        """The per-job sizes, read from the disk the first time (call with the lock held)."""
        if self._sizes is None:
            self._sizes = self._scan()
        return self._sizes

    def _scan(self) -> dict[int, tuple[float, int]]:
        self.folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        # Made by an older version with the default mode: nobody else may look inside.
        os.chmod(self.folder, _DIR_MODE)
        sizes: dict[int, tuple[float, int]] = {}
        for job_dir in self.folder.iterdir():
            if not (job_dir.name.isdigit() and job_dir.is_dir()):
                continue
            try:
                files = [f.stat().st_size for f in job_dir.rglob("*") if f.is_file()]
                sizes[int(job_dir.name)] = (job_dir.stat().st_mtime, sum(files))
            except FileNotFoundError:  # removed meanwhile
                continue
        pins = self.folder / _PINS
        self._pinned = (
            {int(p.name) for p in pins.iterdir() if p.name.isdigit()} if pins.is_dir() else set()
        )
        return sizes

    def _make_room(self, sizes: dict[int, tuple[float, int]], *, keep: int) -> None:
        """Remove the jobs written longest ago while over the cap; never ``keep`` (the job
        being written: it may be the only one, and its delivery reads the files back), nor a
        pinned one."""
        if self.max_bytes is None:
            return
        total = sum(size for _, size in sizes.values())
        removed = []
        for job_id in sorted(sizes, key=lambda j: (sizes[j][0], j)):
            if total <= self.max_bytes:
                break
            if job_id == keep or job_id in self._pinned:
                continue
            shutil.rmtree(self.folder / str(job_id), ignore_errors=True)
            total -= sizes.pop(job_id)[1]
            removed.append(job_id)
        if removed:
            log.info(
                "originals: over %d MB; removed the files of %d older job(s) (%s)",
                self.max_bytes // (1024 * 1024),
                len(removed),
                ", ".join(map(str, removed[:10])) + (" …" if len(removed) > 10 else ""),
            )

    async def load(self, job_id: int, index: int) -> bytes | None:
        """The kept image, or None once pruned."""

        def read() -> bytes | None:
            try:
                return self._path(job_id, index).read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def files(self, job_id: int, indexes: Sequence[int]) -> list[KeptFile] | None:
        """The kept files of ``indexes``, in that order, without reading them whole; None if
        any is gone."""

        def look() -> list[KeptFile] | None:
            found = []
            for index in indexes:
                path = self._path(job_id, index)
                try:
                    with path.open("rb") as f:
                        head = f.read(16)
                        size = os.fstat(f.fileno()).st_size
                except FileNotFoundError:
                    return None
                if not size:
                    return None
                found.append(KeptFile(index, path, size, head))
            return found

        return await asyncio.to_thread(look)

    async def remove(self, job_id: int) -> None:
        """Remove the job's kept files (results and references) and its pin now: the person
        hid it from the studio."""

        def rm() -> None:
            with self._lock:
                sizes = self._scanned()
                shutil.rmtree(self.folder / str(job_id), ignore_errors=True)
                sizes.pop(job_id, None)
                self._pinned.discard(job_id)
                (self.folder / _PINS / str(job_id)).unlink(missing_ok=True)

        await asyncio.to_thread(rm)

    async def prune(self) -> int:
        """Remove jobs older than the keep time; returns how many. Also counts the folder
        afresh (files removed by hand stop counting toward the cap)."""

        def remove() -> int:
            if not self.folder.exists():
                return 0
            with self._lock:
                cutoff, removed = time.time() - self.keep_seconds, 0
                for job_dir in self.folder.iterdir():
                    if job_dir.name.isdigit() and job_dir.stat().st_mtime < cutoff:
                        shutil.rmtree(job_dir, ignore_errors=True)
                        removed += 1
                pins = self.folder / _PINS
                for pin in pins.iterdir() if pins.is_dir() else ():
                    if pin.stat().st_mtime < cutoff:  # its files are past the keep time, too
                        pin.unlink(missing_ok=True)
                self._sizes = self._scan()
                return removed

        return await asyncio.to_thread(remove)
