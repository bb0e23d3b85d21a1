"""Every text the studio's page shows (bot/web/static/app.js), by its English msgid.

``GET /app/api/me`` sends each one in the person's language (``texts``); the page fills in the
``{name}`` placeholders itself. tests/test_studio_texts.py keeps this list and app.js in step and
checks that every catalogue translates each one.
"""

from __future__ import annotations

from bot.texts import tr

STUDIO_TEXTS: tuple[str, ...] = (
    'Actions',
    'Back to the gallery',
    'Cancel',
    'Cast',
    'Close',
    'Continue the story',
    'Continues',
    'Cost',
    'Created',
    'Details',
    'Episode {n}',
    'Error',
    'Full size',
    'Hide from the studio',
    'Hide this series from the studio? Its kept files are deleted too.',
    'Keep the same text',
    'Loading…',
    'Mode',
    'New text for the panel (or leave it the same)',
    'Next panel',
    'No characters yet. Open a series and use a panel as a character.',
    'No connection to the bot. Check your network and try again.',
    'No series yet. Send /seq with a prompt to the bot and it appears here.',
    'Open the chat',
    'Open the studio from the bot again',
    'Panels',
    'Panels: {n}',
    'Previous panel',
    'Prompt',
    'Redo panel {n}',
    'Reference image',
    'References',
    'Remove',
    'Remove {name} from your cast?',
    'Seed',
    'Send',
    'Series',
    'Series #{id}',
    'Size',
    'Something went wrong',
    'Studio',
    "The character's name",
    'The studio is not available right now.',
    "This page's sign-in is missing or too old. Send /studio to the bot, or use its menu button.",
    'This series is not here',
    'Use panel {n} as a character',
    'What happens next?',
    'Your series',
    '{name} is removed from your cast.',
    '📎 Originals',
    '📦 ZIP',
    '🔁 Again',
    '🗂 Sheet',
)


def studio_texts(lang: str | None) -> dict[str, str]:
    """``{msgid: text in lang}`` for every text of the page (English where untranslated)."""
    return {msgid: tr(lang, msgid) for msgid in STUDIO_TEXTS}
