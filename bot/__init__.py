"""seqbot: a Telegram bot for ByteDance Seedream 4.0 sequential images on RunComfy."""

import os

# Opt in to python-telegram-bot's coming behaviour (durations as timedelta, e.g. RetryAfter); without
# it every flood-wait raises a deprecation warning. Our code reads both forms.
os.environ.setdefault("PTB_TIMEDELTA", "1")
