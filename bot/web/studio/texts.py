"""The studio's texts: what the page shows (sent whole by ``/app/api/me``) and what the API says.

Every one is a msgid of the bot's catalogues (``bot/locale/*.po``), like the chat's texts.
"""

from __future__ import annotations

from bot.texts import tr

# Everything the page shows, by its English msgid: exactly the texts bot/web/static/app.js asks
# for with t("…") (tests/test_studio_texts.py keeps the two in step), then the API's error
# messages (ERROR_TEXTS), which the page shows as the server sends them.
STUDIO_TEXTS = (
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
    "The studio could not check who you are. Open it again from the bot.",
    "This studio session has expired. Close it and open it again from the bot.",
    "Not found.",
    "The studio sent a request the bot does not understand.",
    "Too many requests: wait a moment.",
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
