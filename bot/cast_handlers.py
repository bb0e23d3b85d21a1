"""``/cast``: saving, listing and removing characters, and their buttons.

The images come in through the intake's pipeline (a photo, album or image file captioned
``/cast add NAME``, or the command replying to one or to the bot's own image): fetched, checked
and cleaned exactly as a ``/seq``'s references. A character belongs to the requester (as for
quotas: a channel or a group's anonymous admins have their own) and is reached only through its
owner: every store call and every button checks it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from telegram.error import TelegramError

from bot import callbacks, cast, limits, render, sheets
from bot.callbacks import CastAction, CastButton
from bot.command import command_args
from bot.config import Settings
from bot.context import BotContext
from bot.errors import InputError, RefusedError, SeqbotError
from bot.intake import Intake, Source, unknown_cast
from bot.models import CastImage, CastMember
from bot.permissions import Permissions, requester_of
from bot.render import CAST_HELP
from bot.sending import error_text
from bot.store import CastFull, Store
from bot.texts import Plural, lang_of, plural, tr

log = logging.getLogger(__name__)

SHEET_LONG_SIDE = 1280  # the /cast list's picture: small, a glance at who is who
_BUTTONS_PER_ROW = 2

HOW_TO_ADD = (
    "Send a photo (or an album of up to 3, or an image file) with the caption /cast add NAME, "
    "or reply /cast add NAME to one of them or to one of my images."
)


def _lang(user: User | None) -> str:
    return lang_of(user.language_code if user else None)


class CastDesk:
    """Saves characters from the intake's images and answers ``/cast`` and its buttons."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        intake: Intake,
        permissions: Permissions,
    ) -> None:
        self.settings = settings
        self.store = store
        self.intake = intake
        self.permissions = permissions

    # ---- saving --------------------------------------------------------------------------

    async def add(self, message: Message, text: str, sources: Sequence[Source]) -> None:
        """``/cast …`` with images (the intake's consumer): ``add NAME`` saves them; anything
        else is answered as the text command would be. Errors become one short reply."""
        language = _lang(message.from_user)
        try:
            parsed = cast.parse_command(command_args(text))
            if parsed.action != "add":
                await self.command(message, parsed, language)
                return
            await self._add(message, parsed.name, sources, language)
        except SeqbotError as exc:
            await message.reply_text(exc.text(language), do_quote=True)

    async def _add(
        self, message: Message, name: str, sources: Sequence[Source], language: str
    ) -> None:
        user = message.from_user
        limits.check_access(
            self.settings, user_id=user.id if user else None, chat_id=message.chat.id
        )
        owner = requester_of(message)
        if owner is None:
            return
        key = cast.key(name)
        existing = self.may_save(owner, key, len(sources))
        if existing is not None and self._same_sources(owner, existing, sources):
            # The same message again (an update delivered twice, or the same command repeated):
            # no question about replacing images with themselves.
            await message.reply_text(
                tr(language, "{name} already has exactly these images.", name=existing.name),
                do_quote=True,
            )
            return
        cap = self.settings.cast_max_per_person
        cleaned = await self.intake.fetch_all(sources, max_side=cast.IMAGE_MAX_SIDE)
        images = [
            CastImage(c.data, c.width, c.height, s.chat_id, s.message_id)
            for s, c in zip(sources, cleaned, strict=True)
        ]
        member, old = self.store.cast_save(owner, name, key, images, cap=cap)
        if old is None:
            log.info(
                "chat %d: character %d saved (%d images)", message.chat.id, member.id, len(images)
            )
            await message.reply_text(
                tr(
                    language,
                    "Saved {name} ({images}). Use it in /seq: cast={name}, e.g.\n"
                    "/seq 4 cast={name} {name} on a beach at dawn",
                    name=member.name,
                    images=Plural(member.images, "image"),
                ),
                do_quote=True,
            )
            return
        await message.reply_text(
            tr(
                language,
                "You already have {name} ({old}). Replace it with the new {new}?",
                name=old.name,
                old=Plural(old.images, "image"),
                new=Plural(member.images, "image"),
            ),
            reply_markup=InlineKeyboardMarkup(
                [
                    [
                        _button(tr(language, "Replace"), CastAction.REPLACE, member.id),
                        _button(tr(language, "Keep the old one"), CastAction.KEEP, member.id),
                    ]
                ]
            ),
            do_quote=True,
        )

    def may_save(self, owner: int, key: str, images: int) -> CastMember | None:
        """Whether ``owner`` may save ``images`` images as the character ``key`` (the chat's
        /cast add and the studio's "use as character"): RefusedError or InputError says why
        not. Returns the saved character of that name, if any."""
        cap = self.settings.cast_max_per_person
        if cap == 0:
            raise RefusedError("Saved characters are turned off on this bot.")
        if not self.settings.public_url:
            raise InputError(
                "This bot is not set up for reference images, so characters cannot be saved."
            )
        if images > cast.MAX_IMAGES:
            raise InputError(
                "A character takes up to {limit} images; you sent {count}.",
                limit=cast.MAX_IMAGES,
                count=images,
            )
        existing = self.store.cast_by_key(owner, key)
        # Checked before anything is fetched; cast_save checks again in its transaction.
        if existing is None and len(self.store.cast_list(owner)) >= cap:
            raise CastFull(cap)
        return existing

    def _same_sources(self, owner: int, member: CastMember, sources: Sequence[Source]) -> bool:
        """Whether the character's images came from exactly these messages."""
        kept = [(i.chat_id, i.message_id) for i in self.store.cast_images(owner, member.id)]
        return kept == [(s.chat_id, s.message_id) for s in sources]

    # ---- the text command ----------------------------------------------------------------

    async def command(self, message: Message, parsed: cast.CastCommand, language: str) -> None:
        """``/cast`` (list), ``/cast remove NAME``, or how to use it."""
        owner = requester_of(message)
        if owner is None:
            return
        if parsed.action == "list":
            await self.send_list(message, owner, language)
        elif parsed.action == "remove":
            member = self.store.cast_by_key(owner, cast.key(parsed.name))
            removed = self.store.cast_remove(owner, member.id) if member else None
            if removed is None:
                raise unknown_cast([parsed.name], self.store.cast_list(owner))
            log.info("chat %d: character %d removed", message.chat.id, removed.id)
            await message.reply_text(
                tr(language, "Removed {name}; its images are deleted.", name=removed.name),
                do_quote=True,
            )
        elif parsed.action == "add":
            await message.reply_text(tr(language, HOW_TO_ADD), do_quote=True)
        else:
            await message.reply_text(tr(language, CAST_HELP), do_quote=True)

    async def send_list(self, message: Message, owner: int, language: str) -> None:
        """One message: a contact sheet of the characters labelled with their names (their first
        images), the list in its caption, and a remove button per character."""
        members = self.store.cast_list(owner)
        if not members:
            await message.reply_text(
                tr(language, "You have no saved characters yet.") + "\n" + tr(language, HOW_TO_ADD),
                do_quote=True,
            )
            return
        caption = self.list_text(members, language)
        keyboard = list_keyboard(members)
        firsts = [self.store.cast_images(owner, m.id)[:1] for m in members]
        picture: bytes | None = None
        if all(firsts):
            try:
                picture = await asyncio.to_thread(
                    sheets.contact_sheet,
                    [f[0].data for f in firsts],
                    1.0,
                    labels=[m.name for m in members],
                    long_side=SHEET_LONG_SIDE,
                )
            except Exception as exc:  # a sheet is a nicety: the list goes out without it
                log.warning("cast sheet not built: %s: %s", type(exc).__name__, exc)
        if picture is None:
            await message.reply_text(caption, reply_markup=keyboard, do_quote=True)
            return
        await message.reply_photo(picture, caption=caption, reply_markup=keyboard, do_quote=True)

    def list_text(self, members: Sequence[CastMember], language: str) -> str:
        """The list: each name with its number of images, and how to use them; within a photo's
        caption (a long list names them on one line, the longest only in the buttons)."""
        head = tr(
            language,
            "Your characters ({count} of {limit}):",
            count=len(members),
            limit=self.settings.cast_max_per_person,
        )
        usage = tr(language, "Use them in /seq with cast=NAME[,NAME…]. A button removes one.")
        lines = [f"• {m.name}: {plural(language, m.images, 'image')}" for m in members]
        for names in ("\n".join(lines), ", ".join(m.name for m in members)):
            text = f"{head}\n{names}\n\n{usage}"
            if render.utf16_len(text) <= render.CAPTION_LIMIT:
                return text
        return f"{head}\n\n{usage}"

    # ---- the buttons ---------------------------------------------------------------------

    async def button(self, query: CallbackQuery, language: str) -> None:
        """A tap on a /cast button: only the character's owner (or, for a chat identity's
        characters, that chat's admins) may use it, whatever the data says."""
        button = callbacks.parse(query.data)
        message = query.message if isinstance(query.message, Message) else None
        owner = self.store.cast_owner(button.member_id) if isinstance(button, CastButton) else None
        if not isinstance(button, CastButton) or message is None or owner is None:
            await _answer(query, tr(language, "This button no longer works."))
            return
        if not await self._may_manage(owner, message, query.from_user):
            await _answer(
                query,
                tr(language, "These are someone else's characters: only they can change them."),
                alert=True,
            )
            return
        try:
            await self._act(query, message, button, owner, language)
        except SeqbotError as exc:
            await _answer(query, exc.text(language), alert=True)

    async def _may_manage(self, owner: int, message: Message, user: User) -> bool:
        if owner == user.id:
            return True
        # A chat identity's characters (saved as the group by an anonymous admin, in it): its
        # admins manage them there.
        return owner == message.chat.id and await self.permissions.may_administer(
            chat_id=message.chat.id, user=user
        )

    async def _act(
        self,
        query: CallbackQuery,
        message: Message,
        button: CastButton,
        owner: int,
        language: str,
    ) -> None:
        member = self.store.cast_get(owner, button.member_id)
        match button.action:
            case CastAction.ASK_REMOVE | CastAction.REMOVE | CastAction.BACK if (
                member is None or member.draft
            ):
                await _answer(query, tr(language, "That character was removed already."))
                await _redraw(message, None, list_keyboard(self.store.cast_list(owner)))
            case CastAction.ASK_REMOVE:
                assert member is not None
                await _answer(query)
                confirm = InlineKeyboardMarkup(
                    [
                        [
                            _button(
                                tr(language, "Remove {name}", name=member.name),
                                CastAction.REMOVE,
                                member.id,
                            ),
                            _button(tr(language, "Cancel"), CastAction.BACK, member.id),
                        ]
                    ]
                )
                await _redraw(message, None, confirm)
            case CastAction.BACK:
                await _answer(query)
                await _redraw(message, None, list_keyboard(self.store.cast_list(owner)))
            case CastAction.REMOVE:
                assert member is not None
                removed = self.store.cast_remove(owner, member.id)
                await _answer(query, tr(language, "Removed {name}.", name=member.name))
                if removed is not None:
                    log.info("chat %d: character %d removed", message.chat.id, removed.id)
                rest = self.store.cast_list(owner)
                text = tr(
                    language,
                    "Removed {name}; its images are deleted. /cast shows the rest.",
                    name=member.name,
                )
                if rest:
                    text = self.list_text(rest, language) + "\n\n" + text
                await _redraw(message, text, list_keyboard(rest))
            case CastAction.REPLACE:
                replaced = self.store.cast_replace(
                    owner, button.member_id, cap=self.settings.cast_max_per_person
                )
                if replaced is None:
                    await _answer(query, tr(language, "This button no longer works."))
                    return
                await _answer(query, tr(language, "Replaced."))
                await _redraw(
                    message,
                    tr(
                        language,
                        "Replaced: {name} now has the new {images}.",
                        name=replaced.name,
                        images=Plural(replaced.images, "image"),
                    ),
                    None,
                )
            case CastAction.KEEP:
                if member is None or not self.store.cast_discard(owner, member.id):
                    await _answer(query, tr(language, "This button no longer works."))
                    return
                await _answer(query, tr(language, "Kept."))
                # The saved one's name as it was saved (the draft may spell it otherwise).
                kept = self.store.cast_by_key(owner, member.key)
                name = kept.name if kept is not None else member.name
                await _redraw(
                    message,
                    tr(
                        language, "Kept the saved {name}; the new images were not saved.", name=name
                    ),
                    None,
                )


def _button(text: str, action: CastAction, member_id: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=callbacks.encode(CastButton(action, member_id)))


def list_keyboard(members: Sequence[CastMember]) -> InlineKeyboardMarkup | None:
    """A remove button per character, two to a row; None when there are none left."""
    buttons = [_button(f"🗑 {m.name}", CastAction.ASK_REMOVE, m.id) for m in members]
    if not buttons:
        return None
    rows = [buttons[i : i + _BUTTONS_PER_ROW] for i in range(0, len(buttons), _BUTTONS_PER_ROW)]
    return InlineKeyboardMarkup(rows)


async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    try:
        await query.answer(text, show_alert=alert)
    except TelegramError as exc:
        log.info("could not answer a button tap: %s", error_text(exc)[:200])


async def _redraw(
    message: Message, text: str | None, keyboard: InlineKeyboardMarkup | None
) -> None:
    """The list or question again: new text (a caption under the sheet) and buttons. A message
    that cannot be edited (deleted, too old) is left alone: the tap was answered already."""
    try:
        if text is None:
            await message.edit_reply_markup(reply_markup=keyboard)
        elif message.photo:
            await message.edit_caption(caption=text, reply_markup=keyboard)
        else:
            await message.edit_text(text, reply_markup=keyboard)
    except TelegramError as exc:
        log.info("a /cast message was not redrawn: %s", error_text(exc)[:200])


# ---- handlers -------------------------------------------------------------------------------


async def cast_command(update: Update, context: BotContext) -> None:
    """/cast: list, remove, or (replying to an image) add."""
    message = update.message
    if message is None or message.text is None:
        return
    language = _lang(message.from_user)
    desk = context.cast
    try:
        parsed = cast.parse_command(command_args(message.text))
        if parsed.action == "add":
            sources = context.intake.replied_sources(message)
            if sources is None:
                await message.reply_text(tr(language, HOW_TO_ADD), do_quote=True)
                return
            await desk.add(message, message.text, sources)
            return
        await desk.command(message, parsed, language)
    except SeqbotError as exc:
        await message.reply_text(exc.text(language), do_quote=True)


async def cast_button(update: Update, context: BotContext) -> None:
    """A /cast button: remove (after a confirmation), replace or keep."""
    query = update.callback_query
    if query is None:
        return
    await context.cast.button(query, _lang(query.from_user))
