"""Telegram handlers: thin, turning updates into runner calls and errors into replies."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Update
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot import render
from bot.command import command_args, parse_seq
from bot.errors import InputError, SeqbotError
from bot.jobs import JobRunner

log = logging.getLogger(__name__)

# How long a Cancel tap waits for RunComfy before answering "Cancelling…" instead.
_CANCEL_ANSWER_WAIT = 5.0


def runner_of(context: ContextTypes.DEFAULT_TYPE) -> JobRunner:
    """The JobRunner created at start-up."""
    runner: JobRunner = context.application.bot_data["runner"]
    return runner


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start and /help: what the bot does and how to use it."""
    if update.message:
        await update.message.reply_text(render.HELP, do_quote=False)


async def seq(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/seq: parse, then start a job, or explain what is wrong."""
    message = update.message
    if message is None or message.text is None:
        return
    try:
        request = parse_seq(command_args(message.text))
    except InputError as exc:
        await message.reply_text(exc.user_message, do_quote=True)
        return
    if request is None:
        await message.reply_text(render.USAGE, do_quote=True)
        return
    await runner_of(context).start(request, message)


async def cancel_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The Cancel button under a status message."""
    query = update.callback_query
    if query is None:
        return
    runner = runner_of(context)
    job_id = render.parse_cancel_data(query.data)
    job = runner.find(job_id) if job_id is not None else None
    chat = query.message.chat if query.message else None
    if job is None or chat is None or job.chat_id != chat.id:
        await query.answer("This button no longer works.")
        return
    if query.from_user.id != job.user_id and not await _is_admin(
        context, chat.id, query.from_user.id
    ):
        await query.answer(
            "Only the person who asked for this job, or a chat admin, can cancel it.",
            show_alert=True,
        )
        return
    task = asyncio.ensure_future(runner.cancel(job))
    try:
        outcome = await asyncio.wait_for(asyncio.shield(task), _CANCEL_ANSWER_WAIT)
    except TimeoutError:
        await query.answer("Cancelling…")
        await task
        return
    except SeqbotError as exc:
        await query.answer(exc.user_message, show_alert=True)
        return
    await query.answer(
        {
            "cancelled": "Cancelled.",
            "pending": "Cancelling…",
            "too_late": "Too late: the job is already running and can no longer be cancelled.",
            "final": "This job has already finished.",
        }[outcome]
    )


async def stale_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Any other button: answer it, so the client stops its spinner."""
    if update.callback_query:
        await update.callback_query.answer("This button no longer works.")


async def _is_admin(context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int) -> bool:
    if chat_id > 0:
        return False  # a private chat has no admins besides its owner
    try:
        member = await context.bot.get_chat_member(chat_id, user_id)
    except TelegramError as exc:
        log.warning("could not check admin status in chat %d: %s", chat_id, exc)
        return False
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log first, then tell the user something short."""
    log.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update):
        if update.callback_query:
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer("Sorry, something went wrong.")
        elif update.effective_message and update.effective_message.chat.type == "private":
            with contextlib.suppress(TelegramError):
                await update.effective_message.reply_text(
                    "Sorry, something went wrong. Please try again."
                )
