"""``python -m bot``: read the settings, then run the bot with long polling."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from bot.app import ALLOWED_UPDATES, build_application
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import setup_logging


def main() -> int:
    """Run until SIGINT/SIGTERM; exit code 2 for bad configuration."""
    # .env in the working directory; variables already in the environment win.
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"seqbot: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level_number, settings.secrets)
    app = build_application(settings)
    app.run_polling(allowed_updates=ALLOWED_UPDATES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
