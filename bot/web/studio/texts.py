"""The studio's texts: what the page shows (sent whole by ``/app/api/me``) and what the API says.

Every one is a msgid of the bot's catalogues (``bot/locale/*.po``), like the chat's texts.
"""

from __future__ import annotations

from bot.texts import tr

# Everything the front end shows, by its English msgid (the page looks texts up by it).
STUDIO_TEXTS = (
    "Studio",
    "Your series",
    "Cast",
    "Loading…",
    "Load more",
    "No series yet. Send /seq in the chat to make one.",
    "No characters saved yet.",
    "Back",
    "Previous",
    "Next",
    "Full size",
    "Panel {n}",
    "Prompt",
    "Size",
    "Mode",
    "Seed",
    "Cost",
    "Reference images",
    "Continues job #{id}",
    "Episode {n}",
    "Created",
    "Details",
    "Again",
    "Continue",
    "Redo panel {n}",
    "Send sheet",
    "Send ZIP",
    "Send originals",
    "Use as character",
    "Hide from the studio",
    "Remove",
    "Character name",
    'What happens next (or "same")',
    "Send",
    "Cancel",
    "Hide this series from the studio? Its kept files are deleted too.",
    "Remove this character?",
    "The studio could not check who you are. Open it again from the bot.",
    "This studio session has expired. Close it and open it again from the bot.",
    "Not found.",
    "Too many requests: wait a moment.",
    "The studio is not available right now. Try again later.",
    "Something went wrong. Try again.",
    "The studio sent a request the bot does not understand.",
    "Open the chat",
    "No image",
)

# What the API answers for each error code, in the person's language (all in STUDIO_TEXTS).
ERROR_TEXTS = {
    "unauthorized": "The studio could not check who you are. Open it again from the bot.",
    "expired": "This studio session has expired. Close it and open it again from the bot.",
    "not_found": "Not found.",
    "bad_request": "The studio sent a request the bot does not understand.",
    "rate_limited": "Too many requests: wait a moment.",
    "unavailable": "The studio is not available right now. Try again later.",
}


def page_texts(lang: str) -> dict[str, str]:
    """Every text of the page in ``lang``, by msgid."""
    return {text: tr(lang, text) for text in STUDIO_TEXTS}


def error_text(code: str, lang: str | None) -> str:
    """The user-safe message of an API error code."""
    return tr(lang, ERROR_TEXTS.get(code, "Something went wrong. Try again."))
