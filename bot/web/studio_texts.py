"""Every text the studio's page shows (bot/web/static/app.js), by its English msgid.

``GET /app/api/me`` sends each one in the person's language (``texts``); the page fills in the
``{name}`` placeholders itself. tests/test_studio_texts.py keeps this list and app.js in step and
checks that every catalogue translates each one.
"""

from __future__ import annotations

from bot.texts import tr

STUDIO_TEXTS: tuple[str, ...] = (
    "Actions",
    "Again",
    "Back",
    "Cancel",
    "Cast",
    "Character name",
    "Close",
    "Continue",
    "Continues job #{id}",
    "Cost",
    "Created",
    "Details",
    "Episode {n}",
    "Error",
    "Full size",
    "Hide from the studio",
    "Hide this series from the studio? Its kept files are deleted too.",
    "Keep the same text",
    "Load more",
    "Loading…",
    "Mode",
    "New text for the panel (or leave it the same)",
    "Next",
    "No characters saved yet.",
    "No connection to the bot. Check your network and try again.",
    "No series yet. Send /seq in the chat to make one.",
    "Open the chat",
    "Open the studio from the bot again",
    "Panel {n}",
    "Panels",
    "Panels: {n}",
    "Previous",
    "Prompt",
    "Redo panel {n}",
    "Reference image",
    "Reference images",
    "Remove",
    "Remove this character?",
    "Seed",
    "Send",
    "Send ZIP",
    "Send originals",
    "Send sheet",
    "Series",
    "Series #{id}",
    "Size",
    "Something went wrong. Try again.",
    "Studio",
    "The studio is not available right now. Try again later.",
    "This series is not here",
    "Use panel {n} as a character",
    "What happens next?",
    "Your series",
    "{name} is removed from your cast.",
)


def studio_texts(lang: str | None) -> dict[str, str]:
    """``{msgid: text in lang}`` for every text of the page (English where untranslated)."""
    return {msgid: tr(lang, msgid) for msgid in STUDIO_TEXTS}
