"""Settings from the environment (and ``.env``); fails fast with one clear line."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

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
    runcomfy_max_rate: float = 100.0  # requests per second, all jobs together
    allowed_user_ids: frozenset[int] = frozenset()  # empty: any user
    allowed_chat_ids: frozenset[int] = frozenset()  # empty: any chat
    admin_user_ids: frozenset[int] = frozenset()
    max_active_jobs_per_user: int = 2
    max_active_jobs_per_chat: int = 3
    daily_image_limit_per_user: int = 60  # 0: no limit
    daily_image_limit_per_chat: int = 60  # a chat's images per day, all senders; 0: no limit
    webhook_url: str | None = None  # set: webhook mode; unset: long polling
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_listen: str = "127.0.0.1"  # behind a TLS proxy on this host; Docker sets 0.0.0.0
    webhook_port: int = 8080
    # Reference images: the bot's own web server publishes them to RunComfy under PUBLIC_URL (the
    # TLS proxy's address for this server). Unset: no reference images. In webhook mode the web
    # server is the webhook's: WEB_LISTEN / WEB_PORT default to WEBHOOK_LISTEN / WEBHOOK_PORT.
    public_url: str | None = None
    web_listen: str = "127.0.0.1"
    web_port: int = 8080
    album_wait: float = 1.0  # an album is complete once no item came for this long
    reference_fetch_timeout: float = 30.0  # one reference image from Telegram: getFile + download
    webhook_timeout: float = 10.0  # a request's headers, its body, an idle connection: each
    log_format: str = "text"
    originals_keep_days: float = 2.0
    originals_max_mb: int = 2048  # the kept originals together; 0: no cap
    cast_max_per_person: int = 20  # saved characters (/cast) per person or chat identity
    download_timeout: float = 120.0  # one result image, every attempt and byte together
    telegram_retry_delay: float = 1.0  # first wait after a network error sending to Telegram
    telegram_retry_max: float = 60.0  # the longest wait between two tries (the waits double)
    delivery_deadline: float = 3 * 3600.0  # a job's images wait out Telegram trouble this long
    telegram_busy_at: int = 15  # progress edits are skipped while this many messages wait
    # "Sending N images" is shown only for a delivery still under way after this long.
    sending_edit_delay: float = 2.0
    # A private chat's own pace (Telegram asks for about one message a second per chat).
    private_chat_interval: float = 1.0  # seconds between messages once the burst is spent
    private_chat_burst: int = 3  # messages a quiet private chat may get at once
    metrics_port: int | None = None  # set: Prometheus metrics served there; unset: none
    metrics_listen: str = "127.0.0.1"
    # Telegram Stars: (images, stars) per pack; empty: payments off (nothing changes for users).
    stars_packs: tuple[tuple[int, int], ...] = ()
    free_images_per_day: int = 0  # with payments on: free images per requester and day, used first
    paysupport_text: str | None = None  # None: the built-in text (translated)
    terms_text: str | None = None  # None: the built-in text (translated)
    repeat_window: float = 60.0  # the same /show or ℹ️ Details again within this posts nothing
    outsider_reply_window: float = 600.0  # one refusal per chat outside the allowlists per this
    # The studio (Mini App, under PUBLIC_URL/app/): how old a signed initData may be, how long a
    # signed image URL lives, and each person's request rate on its API.
    studio_auth_max_age: float = 86400.0
    studio_image_token_seconds: float = 3600.0
    studio_rate_per_second: float = 20.0
    studio_rate_burst: int = 40

    @property
    def payments(self) -> bool:
        """Whether users pay for their images with Telegram Stars (STARS_PACKS is set)."""
        return bool(self.stars_packs)

    @property
    def studio_url(self) -> str | None:
        """The studio's page (``PUBLIC_URL/app/``) when Telegram can open it: https only."""
        if self.public_url and self.public_url.lower().startswith("https://"):
            return self.public_url + "/app/"
        return None

    @property
    def webhook_path(self) -> str:
        """The path part of WEBHOOK_URL, where the local server listens (e.g. ``seqbot``)."""
        return urlsplit(self.webhook_url or "").path.strip("/")

    @property
    def health_file(self) -> Path:
        """A file the running bot touches regularly; the Docker health check reads its age."""
        return self.database_path.with_name(self.database_path.name + ".alive")

    @property
    def telegram_file_base_url(self) -> str:
        """Where Telegram serves files: ``…/bot`` becomes ``…/file/bot``."""
        base = self.telegram_api_base_url
        if base.endswith("/bot"):
            return base[: -len("bot")] + "file/bot"
        return base.rstrip("/") + "/file/bot"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed (the bot token's secret half on its own, too)."""
        secret_half = self.telegram_token.partition(":")[2]
        return tuple(
            s
            for s in (self.telegram_token, secret_half, self.runcomfy_token, self.webhook_secret)
            if s
        )

    @property
    def plain_http_urls(self) -> list[tuple[str, str]]:
        """(variable, host) of each base URL that sends a token unencrypted off this machine."""
        out = []
        for name, url in (
            ("TELEGRAM_API_BASE_URL", self.telegram_api_base_url),
            ("RUNCOMFY_API_BASE_URL", self.runcomfy_api_base_url),
        ):
            parts = urlsplit(url)
            if parts.scheme.lower() == "http" and not _is_loopback(parts.hostname or ""):
                out.append((name, parts.hostname or ""))
        return out

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

        webhook_url = get("WEBHOOK_URL")
        webhook_secret = get("WEBHOOK_SECRET")
        if webhook_url is not None:
            if not re.match(r"^https://[^\s/]+", webhook_url):
                raise ConfigError("WEBHOOK_URL", "must be a public https:// URL")
            if webhook_secret is None:
                raise ConfigError("WEBHOOK_SECRET", "is required when WEBHOOK_URL is set")
            if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", webhook_secret):
                raise ConfigError(
                    "WEBHOOK_SECRET", "must be 16–256 characters of A-Z, a-z, 0-9, _ and -"
                )
        metrics_port = _port(get, "METRICS_PORT")
        metrics_listen = get("METRICS_LISTEN") or cls.metrics_listen
        if not _is_address(metrics_listen):
            raise ConfigError(
                "METRICS_LISTEN",
                f"must be an IP address or a host name (got {metrics_listen[:40]!r})",
            )
        webhook_listen = get("WEBHOOK_LISTEN") or cls.webhook_listen
        if not _is_address(webhook_listen):
            raise ConfigError(
                "WEBHOOK_LISTEN",
                f"must be an IP address or a host name (got {webhook_listen[:40]!r})",
            )
        webhook_port = _count(get, "WEBHOOK_PORT", cls.webhook_port, minimum=1)
        public_url = _public_url(get("PUBLIC_URL"))
        web_listen = get("WEB_LISTEN") or webhook_listen
        if not _is_address(web_listen):
            raise ConfigError(
                "WEB_LISTEN", f"must be an IP address or a host name (got {web_listen[:40]!r})"
            )
        web_port = _count(get, "WEB_PORT", webhook_port, minimum=1)
        per_user = _count(
            get, "DAILY_IMAGE_LIMIT_PER_USER", cls.daily_image_limit_per_user, minimum=0
        )
        # The web server (webhook mode or reference images) listens on WEB_PORT, which is
        # WEBHOOK_PORT unless set.
        if (webhook_url is not None or public_url is not None) and metrics_port == web_port:
            raise ConfigError("METRICS_PORT", "must differ from WEB_PORT (the web server's port)")
        log_format = (get("LOG_FORMAT") or cls.log_format).lower()
        if log_format not in ("text", "json"):
            raise ConfigError("LOG_FORMAT", "must be text or json")

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
            runcomfy_max_rate=_positive(
                get, "RUNCOMFY_MAX_REQUESTS_PER_SECOND", cls.runcomfy_max_rate
            ),
            allowed_user_ids=_ids(get, "ALLOWED_USER_IDS"),
            allowed_chat_ids=_ids(get, "ALLOWED_CHAT_IDS"),
            admin_user_ids=_ids(get, "ADMIN_USER_IDS"),
            max_active_jobs_per_user=_count(
                get, "MAX_ACTIVE_JOBS_PER_USER", cls.max_active_jobs_per_user, minimum=1
            ),
            max_active_jobs_per_chat=_count(
                get, "MAX_ACTIVE_JOBS_PER_CHAT", cls.max_active_jobs_per_chat, minimum=1
            ),
            daily_image_limit_per_user=per_user,
            # Unset: the per-user limit, so one chat (or one person as many chat identities'
            # anonymous admin) spends no more than one person may.
            daily_image_limit_per_chat=_count(
                get, "DAILY_IMAGE_LIMIT_PER_CHAT", per_user, minimum=0
            ),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            webhook_listen=webhook_listen,
            webhook_port=webhook_port,
            public_url=public_url,
            web_listen=web_listen,
            web_port=web_port,
            album_wait=_positive(get, "ALBUM_WAIT_SECONDS", cls.album_wait),
            reference_fetch_timeout=_positive(
                get, "REFERENCE_FETCH_TIMEOUT_SECONDS", cls.reference_fetch_timeout
            ),
            webhook_timeout=_positive(get, "WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout),
            log_format=log_format,
            originals_keep_days=_positive(get, "ORIGINALS_KEEP_DAYS", cls.originals_keep_days),
            originals_max_mb=_count(get, "ORIGINALS_MAX_MB", cls.originals_max_mb, minimum=0),
            cast_max_per_person=_cast_cap(get, cls.cast_max_per_person),
            download_timeout=_positive(get, "DOWNLOAD_TIMEOUT_SECONDS", cls.download_timeout),
            telegram_retry_delay=_positive(get, "TELEGRAM_RETRY_SECONDS", cls.telegram_retry_delay),
            telegram_retry_max=_positive(get, "TELEGRAM_RETRY_MAX_SECONDS", cls.telegram_retry_max),
            delivery_deadline=_positive(get, "DELIVERY_DEADLINE_SECONDS", cls.delivery_deadline),
            telegram_busy_at=_count(get, "TELEGRAM_BUSY_AT", cls.telegram_busy_at, minimum=0),
            sending_edit_delay=_positive(get, "SENDING_EDIT_DELAY_SECONDS", cls.sending_edit_delay),
            private_chat_interval=_positive(
                get, "PRIVATE_CHAT_MESSAGE_INTERVAL_SECONDS", cls.private_chat_interval
            ),
            private_chat_burst=_count(get, "PRIVATE_CHAT_BURST", cls.private_chat_burst, minimum=1),
            metrics_port=metrics_port,
            metrics_listen=metrics_listen,
            stars_packs=_packs(get("STARS_PACKS")),
            free_images_per_day=_count(get, "FREE_IMAGES_PER_DAY", 0, minimum=0),
            paysupport_text=_text(get, "PAYSUPPORT_TEXT"),
            terms_text=_text(get, "TERMS_TEXT"),
            repeat_window=_positive(get, "REPEAT_WINDOW_SECONDS", cls.repeat_window),
            outsider_reply_window=_positive(
                get, "OUTSIDER_REPLY_SECONDS", cls.outsider_reply_window
            ),
            studio_auth_max_age=_positive(
                get, "STUDIO_AUTH_MAX_AGE_SECONDS", cls.studio_auth_max_age
            ),
            studio_image_token_seconds=_positive(
                get, "STUDIO_IMAGE_URL_SECONDS", cls.studio_image_token_seconds
            ),
            studio_rate_per_second=_positive(
                get, "STUDIO_REQUESTS_PER_SECOND", cls.studio_rate_per_second
            ),
            studio_rate_burst=_count(get, "STUDIO_REQUEST_BURST", cls.studio_rate_burst, minimum=1),
        )

    @property
    def log_level_number(self) -> int:
        """The ``logging`` level for ``log_level``."""
        return logging.getLevelNamesMapping()[self.log_level]


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _is_address(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", value) is not None
    return True


def _public_url(raw: str | None) -> str | None:
    """PUBLIC_URL without its trailing slash: https, or http on loopback only (tests, local runs)."""
    if raw is None:
        return None
    parts = urlsplit(raw)
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https" or (
        parts.scheme.lower() == "http" and _is_loopback(host)
    )
    if not https or not host or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            "PUBLIC_URL",
            "must be the https:// address of this bot's web server behind your TLS proxy, "
            "without a query or a user name (e.g. https://bot.example.org/seqbot)",
        )
    return raw.rstrip("/")


def _port(get: Callable[[str], str | None], name: str) -> int | None:
    raw = get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"\d{1,5}", raw) or int(raw) > 65535:
        raise ConfigError(name, f"must be a port number from 0 to 65535 (got {raw[:20]!r})")
    return int(raw)


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


# The /cast list has a button per character, and a message takes at most 100 buttons.
MAX_CAST_PER_PERSON = 100


def _cast_cap(get: Callable[[str], str | None], default: int) -> int:
    cap = _count(get, "CAST_MAX_PER_PERSON", default, minimum=0)
    if cap > MAX_CAST_PER_PERSON:
        raise ConfigError(
            "CAST_MAX_PER_PERSON", f"must be at most {MAX_CAST_PER_PERSON} (got {cap})"
        )
    return cap


MAX_PACK_IMAGES = 100_000
MAX_PACK_STARS = 100_000


def _packs(raw: str | None) -> tuple[tuple[int, int], ...]:
    """``10:75,50:300`` (images:stars per pack) as ((10, 75), (50, 300)); unset: ()."""
    if raw is None:
        return ()
    packs: list[tuple[int, int]] = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([0-9]{1,6}):([0-9]{1,6})", part)
        if m is None:
            raise ConfigError(
                "STARS_PACKS", f"must be images:stars pairs like 10:75,50:300 (got {part[:20]!r})"
            )
        images, stars = int(m[1]), int(m[2])
        if not (1 <= images <= MAX_PACK_IMAGES and 1 <= stars <= MAX_PACK_STARS):
            raise ConfigError(
                "STARS_PACKS",
                f"images must be 1-{MAX_PACK_IMAGES} and stars 1-{MAX_PACK_STARS} (got {part!r})",
            )
        if any(images == known for known, _ in packs):
            raise ConfigError("STARS_PACKS", f"has two packs of {images} images")
        packs.append((images, stars))
    if len(packs) > 8:
        raise ConfigError("STARS_PACKS", "may list at most 8 packs")
    return tuple(packs)


def _text(get: Callable[[str], str | None], name: str) -> str | None:
    value = get(name)
    if value is not None and len(value) > 2000:
        raise ConfigError(name, "must be at most 2000 characters")
    return value.replace("\\n", "\n") if value is not None else None
