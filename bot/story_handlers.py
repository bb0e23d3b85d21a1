"""The chat's side of ➡️ Continue and ✏️ Redo panel: the buttons, the question (a ForceReply to
whoever tapped, remembered in SQLite) and its answer. Thin: the work is ``bot.story.Story``."""

from __future__ import annotations

import html
import logging

from telegram import ForceReply, InlineKeyboardMarkup, Message, Update, User
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError

from bot import callbacks, render
from bot.callbacks import JobAction, JobButton, PanelButton
from bot.context import BotContext
from bot.errors import SeqbotError
from bot.handlers import answer_quietly, job_for_button, lang
from bot.models import Job
from bot.permissions import origin_of
from bot.texts import tr

log = logging.getLogger(__name__)

_NEXT = "What happens next? Reply to this message with the text (or a numbered script)."
_REDO = "Panel {n}: reply to this message with its new text, or “same” to keep it."


async def continue_button(update: Update, context: BotContext) -> None:
    """➡️ Continue: ask the tapper what happens next."""
    found = await job_for_button(update, context, JobAction.NEXT)
    if found is None:
        return
    job, message, query = found
    try:
        context.story.check(job)
    except SeqbotError as exc:
        await answer_quietly(query, exc.text(lang(update)), alert=True)
        return
    await answer_quietly(query)
    language = lang(update)
    await _ask(context, job, message, query.from_user, tr(language, _NEXT), None, language)


async def redo_button(update: Update, context: BotContext) -> None:
    """✏️ Redo panel: the follow-up shows one button per panel; a panel's button asks the
    tapper for its new text."""
    found = await job_for_button(update, context, JobAction.REDO)
    if found is None:
        return
    job, message, query = found
    language = lang(update)
    try:
        context.story.check(job)
    except SeqbotError as exc:
        await answer_quietly(query, exc.text(language), alert=True)
        return
    panels = context.story.panels(job)
    button = callbacks.parse(query.data)
    if isinstance(button, JobButton):  # the panel buttons, in place of the follow-up's
        await answer_quietly(query, tr(language, "Which panel?"))
        await _keyboard(query.message, render.panels_keyboard(job, panels, language))
        return
    assert isinstance(button, PanelButton)
    if button.panel - 1 not in panels:
        await answer_quietly(
            query,
            tr(language, "Job #{id} has no panel {n}.", id=job.id, n=button.panel),
            alert=True,
        )
        return
    await answer_quietly(query)
    await _keyboard(query.message, context.runner.delivery.result.actions_keyboard(job))
    text = tr(language, _REDO, n=button.panel)
    await _ask(context, job, message, query.from_user, text, button.panel - 1, language)


async def back_button(update: Update, context: BotContext) -> None:
    """↩️ Back: the follow-up's own buttons again."""
    found = await job_for_button(update, context, JobAction.BACK)
    if found is None:
        return
    job, message, query = found
    await answer_quietly(query)
    await _keyboard(message, context.runner.delivery.result.actions_keyboard(job))


async def _keyboard(message: object, markup: InlineKeyboardMarkup) -> None:
    """Redraw the follow-up's buttons; one already showing them is no error."""
    if not isinstance(message, Message):
        return
    try:
        await message.edit_reply_markup(reply_markup=markup)
    except TelegramError as exc:
        if "not modified" not in str(exc).lower():
            log.info("chat %d: follow-up buttons not redrawn: %s", message.chat.id, exc)


async def _ask(
    context: BotContext,
    job: Job,
    message: Message,
    user: User,
    text: str,
    panel: int | None,
    language: str,
) -> None:
    """The question, as a ForceReply to ``user`` (named in a group, so only their client opens
    the reply; in their language), remembered until they answer (``panel``: ✏️ Redo's)."""
    private = message.chat.type == ChatType.PRIVATE
    if not private:
        name = html.escape(user.full_name or user.username or str(user.id))
        text = f'<a href="tg://user?id={user.id}">{name}</a>, {html.escape(text)}'
    placeholder = (
        tr(language, "Panel text, or “same”")
        if panel is not None
        else tr(language, "What happens next?")
    )
    asked = await message.reply_text(
        text,
        parse_mode=None if private else ParseMode.HTML,
        reply_markup=ForceReply(
            selective=True,
            input_field_placeholder=placeholder,
        ),
        do_quote=True,
    )
    context.store.remember_prompt(
        asked.chat.id, asked.message_id, job_id=job.id, user_id=user.id, panel=panel
    )


async def story_reply(update: Update, context: BotContext) -> None:
    """A text replying to one of the bot's messages: the answer to a Continue or Redo question
    makes its job, if it comes from the person who was asked (anyone else's is ignored)."""
    message = update.message
    if message is None or message.text is None or message.from_user is None:
        return
    asked = message.reply_to_message
    if asked is None or asked.from_user is None or asked.from_user.id != context.bot.id:
        return
    prompt = context.store.story_prompt(message.chat.id, asked.message_id)
    if prompt is None or prompt.user_id != message.from_user.id:
        return
    language = lang(update)
    job = context.runner.find(prompt.job_id)
    if job is None or job.chat_id != message.chat.id:
        return
    if not context.store.take_prompt(message.chat.id, asked.message_id):
        return  # another answer of theirs is making the job just now
    story = context.story
    try:
        if prompt.panel is None:
            started = await story.start_continue(job, origin_of(message), message.text)
        else:
            started = await story.start_redo(job, prompt.panel, origin_of(message), message.text)
    except SeqbotError as exc:
        # The question stays: a corrected answer to it may still make the job.
        context.store.remember_prompt(
            prompt.chat_id,
            prompt.message_id,
            job_id=prompt.job_id,
            user_id=prompt.user_id,
            panel=prompt.panel,
        )
        await message.reply_text(exc.text(language), do_quote=True)
        return
    if started is None:
        log.info("chat %d: message %d made its job already", message.chat.id, message.message_id)
