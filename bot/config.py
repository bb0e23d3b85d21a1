"""Settings from the environment (and ``.env``); fails fast with one clear line."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import ConfigError

_TELEGRAM_TOKEN_RE = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    """Everything the bot reads from its environment. Tokens are left out of ``repr``."""

    telegram_token: str = field(repr=False)
    runcomfy_token: str = field(repr=False)
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    runcomfy_api_base_url: str = "https://model-api.runcomfy.net"
    database_path: Path = Path("data/seqbot.sqlite3")
    poll_interval: float = 2.0
    job_deadline: float = 1800.0
    log_level: str = "INFO"
    http_timeout: float = 30.0
    allowed_user_ids: frozenset[int] = frozenset()  # empty: any user
    allowed_chat_ids: frozenset[int] = frozenset()  # empty: any chat
    admin_user_ids: frozenset[int] = frozenset()
    max_active_jobs_per_user: int = 2
    max_active_jobs_per_chat: int = 3
    daily_image_limit_per_user: int = 60  # 0: no limit

    @property
    def telegram_file_base_url(self) -> str:
        """Where Telegram serves files: ``…/bot`` becomes ``…/file/bot``."""
        base = self.telegram_api_base_url
        if base.endswith("/bot"):
            return base[: -len("bot")] + "file/bot"
        return base.rstrip("/") + "/file/bot"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed."""
        return (self.telegram_token, self.runcomfy_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and check every variable; raise ConfigError naming the first bad one."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        telegram_token = get("TELEGRAM_BOT_TOKEN")
        if telegram_token is None:
            raise ConfigError("TELEGRAM_BOT_TOKEN", "is not set (get one from @BotFather)")
        if not _TELEGRAM_TOKEN_RE.match(telegram_token):
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN", "is malformed (expected <digits>:<secret> from @BotFather)"
            )
        runcomfy_token = get("RUNCOMFY_API_TOKEN")
        if runcomfy_token is None:
            raise ConfigError(
                "RUNCOMFY_API_TOKEN", "is not set (create one in your RunComfy profile)"
            )
        if any(c.isspace() for c in runcomfy_token):
            raise ConfigError("RUNCOMFY_API_TOKEN", "is malformed (it contains whitespace)")

        log_level = (get("LOG_LEVEL") or cls.log_level).upper()
        if log_level not in _LOG_LEVELS:
            raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(_LOG_LEVELS)}")

        return cls(
            telegram_token=telegram_token,
            runcomfy_token=runcomfy_token,
            telegram_api_base_url=_url(get, "TELEGRAM_API_BASE_URL", cls.telegram_api_base_url),
            runcomfy_api_base_url=_url(
                get, "RUNCOMFY_API_BASE_URL", cls.runcomfy_api_base_url
            ).rstrip("/"),
            database_path=Path(get("DATABASE_PATH") or cls.database_path),
            poll_interval=_positive(get, "POLL_INTERVAL_SECONDS", cls.poll_interval),
            job_deadline=_positive(get, "JOB_DEADLINE_SECONDS", cls.job_deadline),
            log_level=log_level,
            http_timeout=_positive(get, "HTTP_TIMEOUT_SECONDS", cls.http_timeout),
            allowed_user_ids=_ids(get, "ALLOWED_USER_IDS"),
            allowed_chat_ids=_ids(get, "ALLOWED_CHAT_IDS"),
            admin_user_ids=_ids(get, "ADMIN_USER_IDS"),
            max_active_jobs_per_user=_count(
                get, "MAX_ACTIVE_JOBS_PER_USER", cls.max_active_jobs_per_user, minimum=1
            ),
            max_active_jobs_per_chat=_count(
                get, "MAX_ACTIVE_JOBS_PER_CHAT", cls.max_active_jobs_per_chat, minimum=1
            ),
            daily_image_limit_per_user=_count(
                get, "DAILY_IMAGE_LIMIT_PER_USER", cls.daily_image_limit_per_user, minimum=0
            ),
        )

    @property
    def log_level_number(self) -> int:
        """The ``logging`` level for ``log_level``."""
        return logging.getLevelNamesMapping()[self.log_level]


def _url(get: Callable[[str], str | None], name: str, default: str) -> str:
    value = get(name) or default
    if not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(name, "must be an http:// or https:// URL")
    return value


def _positive(get: Callable[[str], str | None], name: str, default: float) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds (got {raw[:20]!r})") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(name, "must be a positive number of seconds")
    return value


def _ids(get: Callable[[str], str | None], name: str) -> frozenset[int]:
    raw = get(name) or ""
    ids: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not re.fullmatch(r"-?\d{1,20}", part):
            raise ConfigError(
                name, f"must be a comma-separated list of numeric ids (got {part[:20]!r})"
            )
        ids.add(int(part))
    return frozenset(ids)


def _count(get: Callable[[str], str | None], name: str, default: int, *, minimum: int) -> int:
    raw = get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or int(raw) < minimum:
        raise ConfigError(name, f"must be a whole number of at least {minimum} (got {raw[:20]!r})")
    return int(raw)
