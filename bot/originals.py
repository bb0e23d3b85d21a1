"""The original image files, kept on disk for a while for the Originals button and for resuming."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path


class OriginalsCache:
    """``<folder>/<job id>/<image index>``: written at delivery, pruned after ``keep_days``."""

    def __init__(self, folder: Path, keep_days: float = 2.0) -> None:
        self.folder = folder
        self.keep_seconds = keep_days * 86400

    def _path(self, job_id: int, index: int) -> Path:
        return self.folder / str(job_id) / str(index)

    async def save(self, job_id: int, index: int, data: bytes) -> None:
        """Keep one image (off the event loop)."""

        def write() -> None:
            path = self._path(job_id, index)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)  # whole files only, even if the process dies mid-write

        await asyncio.to_thread(write)

    async def load(self, job_id: int, index: int) -> bytes | None:
        """The kept image, or None once pruned."""

        def read() -> bytes | None:
            try:
                return self._path(job_id, index).read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def prune(self) -> int:
        """Remove jobs older than the keep time; returns how many."""

        def remove() -> int:
            if not self.folder.exists():
                return 0
            cutoff, removed = time.time() - self.keep_seconds, 0
            for job_dir in self.folder.iterdir():
                if job_dir.is_dir() and job_dir.stat().st_mtime < cutoff:
                    shutil.rmtree(job_dir, ignore_errors=True)
                    removed += 1
            return removed

        return await asyncio.to_thread(remove)
