"""``python -m bot [run|doctor|healthcheck|backup FILE]``."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

from dotenv import load_dotenv

from bot import doctor
from bot.config import Settings
from bot.errors import ConfigError

CONFIGURATION = """\
configuration (environment variables, or .env in the working directory):
  TELEGRAM_BOT_TOKEN          required: the bot's token from @BotFather
  RUNCOMFY_API_TOKEN          required: your RunComfy API token
  TELEGRAM_API_BASE_URL       default https://api.telegram.org/bot
  RUNCOMFY_API_BASE_URL       default https://model-api.runcomfy.net
  DATABASE_PATH               default data/seqbot.sqlite3
  POLL_INTERVAL_SECONDS       default 2
  JOB_DEADLINE_SECONDS        default 1800
  HTTP_TIMEOUT_SECONDS        default 30
  DOWNLOAD_TIMEOUT_SECONDS    default 120: the whole download of one result image
  ALBUM_WAIT_SECONDS          default 1: an album is complete once no item came for this long
  REFERENCE_FETCH_TIMEOUT_SECONDS  default 30: one reference image from Telegram
  TELEGRAM_RETRY_SECONDS      default 1: first wait after a network error sending to Telegram
  TELEGRAM_RETRY_MAX_SECONDS  default 60: longest wait between tries of a delivery
  DELIVERY_DEADLINE_SECONDS   default 10800: how long a job's images are retried through
                              Telegram trouble (then kept for /show)
  TELEGRAM_BUSY_AT            default 15: skip progress edits while this many messages wait
  SENDING_EDIT_DELAY_SECONDS  default 2: show "Sending N images" only for an album not in by then
  PRIVATE_CHAT_BURST          default 3: messages a quiet private chat gets at once
  PRIVATE_CHAT_MESSAGE_INTERVAL_SECONDS  default 1: then one message per this many seconds
  RUNCOMFY_MAX_REQUESTS_PER_SECOND  default 100 (all jobs together)
  LOG_LEVEL                   DEBUG, INFO (default), WARNING, ERROR
  LOG_FORMAT                  text (default) or json
  ORIGINALS_KEEP_DAYS         default 2: how long original files are kept for Originals
  ORIGINALS_MAX_MB            default 2048: cap on the kept originals, oldest jobs removed first (0: none)
  CAST_MAX_PER_PERSON         default 20: saved characters (/cast) per person, 3 images each (0: /cast off)
  WEBHOOK_URL                 public https URL: webhook mode (unset: long polling)
  WEBHOOK_SECRET              required with WEBHOOK_URL: 16-256 of A-Z a-z 0-9 _ -
  WEBHOOK_LISTEN              default 127.0.0.1 (the Docker image sets 0.0.0.0)
  WEBHOOK_PORT                default 8080
  WEBHOOK_TIMEOUT_SECONDS     default 10: headers, body, idle connection of a webhook request
  PUBLIC_URL                  https address of the bot's web server behind your TLS proxy:
                              reference images are published under it (unset: none)
  WEB_LISTEN, WEB_PORT        where that server listens (default: WEBHOOK_LISTEN, WEBHOOK_PORT)
  METRICS_PORT                set: serve Prometheus metrics on this port (unset: off)
  METRICS_LISTEN              default 127.0.0.1: where the metrics server listens
  ALLOWED_USER_IDS            comma-separated; empty: anyone
  ALLOWED_CHAT_IDS            comma-separated; empty: any chat
  ADMIN_USER_IDS              comma-separated bot admins
  MAX_ACTIVE_JOBS_PER_USER    default 2
  MAX_ACTIVE_JOBS_PER_CHAT    default 3
  DAILY_IMAGE_LIMIT_PER_USER  default 60 (0: no limit)
  REPEAT_WINDOW_SECONDS       default 60: a repeated /show or Details posts nothing new
  OUTSIDER_REPLY_SECONDS      default 600: one refusal per outsider chat in this time
  STUDIO_AUTH_MAX_AGE_SECONDS default 86400: the studio's Telegram sign-in is good this long
  STUDIO_IMAGE_URL_SECONDS    default 3600: how long the studio's signed image URLs work
  STUDIO_REQUESTS_PER_SECOND  default 20: each person's studio API requests per second
  STUDIO_REQUEST_BURST        default 40: ... and the burst allowed above that pace
  DAILY_IMAGE_LIMIT_PER_CHAT  a group's or channel's images per day, whoever asks
                              (default: DAILY_IMAGE_LIMIT_PER_USER; 0: no limit)
  STARS_PACKS                 images:stars packs, e.g. 10:75,50:300: users pay in Telegram Stars
                              (unset: payments off)
  FREE_IMAGES_PER_DAY         default 0: with STARS_PACKS, free images per person and day
  PAYSUPPORT_TEXT             the /paysupport answer (default: a built-in text; \n: new line)
  TERMS_TEXT                  the /terms answer (default: a built-in text; \n: new line)
"""
HEALTHY_SECONDS = 120.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="seqbot: a Telegram bot for Seedream 4.0 sequential images on RunComfy.",
        epilog=CONFIGURATION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run the bot (the default)")
    sub.add_parser("doctor", help="check the configuration, both tokens and the database")
    sub.add_parser("healthcheck", help="exit 0 if the running bot is alive (for Docker)")
    backup = sub.add_parser("backup", help="copy the database safely, even while the bot runs")
    backup.add_argument("file", type=Path, help="where to write the copy")
    return parser


def _settings() -> Settings | None:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"seqbot: configuration error: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand; exit code 2 for bad configuration."""
    args = _parser().parse_args(argv)
    # Opt in to python-telegram-bot's coming behaviour (durations as timedelta, e.g. RetryAfter);
    # without it every flood wait raises a deprecation warning. Our code reads both forms.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    # .env in the working directory; variables already in the environment win.
    load_dotenv(Path.cwd() / ".env", override=False)
    if args.command == "doctor":
        return doctor.main()
    settings = _settings()
    if settings is None:
        return 2
    if args.command == "healthcheck":
        return healthcheck(settings)
    if args.command == "backup":
        return backup(settings, args.file)
    # Imported here so `doctor`, `healthcheck` and `backup` start quickly.
    from bot.app import run
    from bot.logs import setup_logging

    setup_logging(
        settings.log_level_number, settings.secrets, json_lines=settings.log_format == "json"
    )
    return run(settings)


def healthcheck(settings: Settings) -> int:
    """0 when the bot touched its heartbeat file recently."""
    try:
        age = time.time() - settings.health_file.stat().st_mtime
    except FileNotFoundError:
        print("unhealthy: the bot has not started", file=sys.stderr)
        return 1
    if age > HEALTHY_SECONDS:
        print(f"unhealthy: no sign of life for {age:.0f} s", file=sys.stderr)
        return 1
    return 0


def backup(settings: Settings, target: Path) -> int:
    """SQLite's online backup: a consistent copy while the bot keeps writing."""
    if not settings.database_path.exists():
        print(f"seqbot: no database at {settings.database_path}", file=sys.stderr)
        return 1
    # A new copy is readable by the owner only, like the database itself.
    target.touch(mode=0o600, exist_ok=True)
    source = sqlite3.connect(settings.database_path)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    print(f"backed up {settings.database_path} to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
