"""Who may use the bot, and how much: allowlists, active-job caps and the daily image quota."""

from __future__ import annotations

import datetime as dt

from bot.config import Settings
from bot.errors import RefusedError
from bot.store import Store
from bot.texts import Plural, tr

UTC = dt.UTC


def day_start(now: float) -> float:
    """Midnight UTC at or before ``now`` (epoch seconds)."""
    d = dt.datetime.fromtimestamp(now, UTC)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_start(now: float) -> float:
    """The first of this month, midnight UTC."""
    d = dt.datetime.fromtimestamp(now, UTC)
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def _until_reset(now: float) -> tuple[int, int]:
    seconds = int(day_start(now) + 86400 - now)
    hours, minutes = divmod(max(60, seconds) // 60, 60)
    return hours, minutes


def until_reset(now: float, lang: str | None) -> str:
    """How long until the quota resets at midnight UTC, e.g. ``3 h 12 min``."""
    hours, minutes = _until_reset(now)
    return tr(lang, "{hours} h {minutes} min", hours=hours, minutes=minutes)


def check_access(settings: Settings, *, user_id: int | None, chat_id: int | None) -> None:
    """Raise RefusedError unless both the user and the chat are allowed (admins always are;
    ALLOWED_USER_IDS and ALLOWED_CHAT_IDS: the one place that reads them)."""
    if user_id is not None and user_id in settings.admin_user_ids:
        return
    if settings.allowed_chat_ids and chat_id not in settings.allowed_chat_ids:
        raise RefusedError("Sorry, this bot is not available in this chat.")
    check_user(settings, user_id)


def check_user(settings: Settings, user_id: int | None) -> None:
    """Raise RefusedError unless the user is allowed (ALLOWED_USER_IDS; admins always are),
    wherever they are: the studio, which is no chat, asks only this."""
    if user_id is not None and user_id in settings.admin_user_ids:
        return
    if settings.allowed_user_ids and user_id not in settings.allowed_user_ids:
        raise RefusedError("Sorry, this bot is not available to you.")


def check_spend(
    store: Store,
    settings: Settings,
    *,
    user_id: int | None,
    requester_id: int | None,
    chat_id: int,
    count: int,
    now: float,
) -> None:
    """Raise RefusedError when a new job of ``count`` images would exceed a limit.

    Limits apply to the requester (a channel or group posting as itself is its own requester),
    and the daily image limit to the chat as well (DAILY_IMAGE_LIMIT_PER_CHAT), whoever asks
    there: one person posting as several chat identities gets no more per chat than a person;
    bot admins, known by their own user id, have none.
    """
    if user_id is not None and user_id == requester_id and user_id in settings.admin_user_ids:
        return
    # A submit left unanswered may still be running at RunComfy until the deadline has passed.
    unknown_since = now - settings.job_deadline
    if requester_id is not None:
        active = store.active_jobs(requester_id=requester_id, unknown_since=unknown_since)
        if active >= settings.max_active_jobs_per_user:
            raise RefusedError(
                "You already have {active} in progress (the most is {most}). "
                "Wait for one to finish, or cancel one.",
                active=Plural(active, "job"),
                most=settings.max_active_jobs_per_user,
            )
    active = store.active_jobs(chat_id=chat_id, unknown_since=unknown_since)
    if active >= settings.max_active_jobs_per_chat:
        raise RefusedError(
            "This chat already has {active} in progress (the most is {most}). "
            "Please wait for one to finish.",
            active=Plural(active, "job"),
            most=settings.max_active_jobs_per_chat,
        )
    limit = settings.daily_image_limit_per_user
    hours, minutes = _until_reset(now)
    if limit and requester_id is not None:
        used = store.usage(requester_id, day_start(now)).images
        left = max(0, limit - used)
        if count > left:
            if left == 0:
                raise RefusedError(
                    "You have used all {limit} images of today's limit. "
                    "It resets at midnight UTC (in {hours} h {minutes} min).",
                    limit=limit,
                    hours=hours,
                    minutes=minutes,
                )
            raise RefusedError(
                "You have {left} of today's {limit} images left; ask for {left} or fewer. "
                "The limit resets at midnight UTC (in {hours} h {minutes} min).",
                left=left,
                limit=limit,
                hours=hours,
                minutes=minutes,
            )
    limit = settings.daily_image_limit_per_chat
    if limit and chat_id < 0:  # groups and channels (a private chat has the per-user limit)
        left = max(0, limit - store.chat_images(chat_id, day_start(now)))
        if count > left:
            if left == 0:
                raise RefusedError(
                    "This chat has used all {limit} images of today's limit. "
                    "It resets at midnight UTC (in {hours} h {minutes} min).",
                    limit=limit,
                    hours=hours,
                    minutes=minutes,
                )
            raise RefusedError(
                "This chat has {left} of today's {limit} images left; ask for {left} or fewer. "
                "The limit resets at midnight UTC (in {hours} h {minutes} min).",
                left=left,
                limit=limit,
                hours=hours,
                minutes=minutes,
            )
