"""Logging set-up that keeps secrets out of every line: readable text, or JSON for collectors."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[REDACTED]`` (the longest first)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then blanks out every secret (messages, arguments and tracebacks)."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED]``."""
        return redact(text, self._secrets)

    def format(self, record: logging.LogRecord) -> str:
        """Format the record with secrets replaced by ``[REDACTED]``."""
        return self.redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON, secrets redacted."""
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, ensure_ascii=False))


def setup_logging(level: int, secrets: Iterable[str], *, json_lines: bool = False) -> None:
    """Log to stderr at ``level``; httpx and aiohttp stay at WARNING (their request lines and
    errors may carry the bot token)."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    formatter = JsonFormatter(fmt, secrets) if json_lines else RedactingFormatter(fmt, secrets)
    formatter.converter = time.gmtime  # timestamps in UTC, like the quotas
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # python-telegram-bot logs a traceback with the whole page for every answer that is not JSON
    # (a proxy's 502 page): during an outage, one per try. The bot's own line names the call and
    # the error ("job 12: sendMediaGroup failed (try 3): Bad Gateway (502)").
    logging.getLogger("telegram.request.BaseRequest").setLevel(logging.CRITICAL)
