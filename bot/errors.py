"""Errors whose message is safe to show to a user.

SeqbotError                 user_message: short, friendly, no secrets
├── ConfigError             a missing or malformed setting (names the variable)
├── InputError              a /seq command we will not submit
├── RefusedError            an allowlist, a limit or a permission says no
├── StoreBusyError          the database could not take a new job just now (locked or full)
├── DeliveryFailed          Telegram refused the images, or would not take them after retries
│   └── TelegramUnreachableError  network errors, timeouts or 5xx for as long as it could wait
└── RunComfyError           RunComfy answered badly or not at all
    ├── TransientError      worth retrying: 5xx, 429, timeouts, refused connections, broken JSON
    ├── PermanentError      not worth retrying: bad token, no balance, input refused, unknown id
    │   └── UnsafeLinkError a result link the bot will not fetch (``downloads``)
    └── SubmitUnknownError  the submit POST may or may not have reached RunComfy

``images.BadImage`` (a downloaded file that is not a usable image) stands apart: it only ever
names one image in a delivery note.
"""

from __future__ import annotations

from typing import Any

from bot.texts import tr


class SeqbotError(Exception):
    """Base error; ``user_message`` is what the chat may see (``text(lang)`` in its language).

    The message is an English ``str.format`` template with ``params``; ``bot.texts`` has it in
    Russian too.
    """

    def __init__(self, user_message: str, *, detail: str | None = None, **params: Any) -> None:
        self.template = user_message
        self.params = params
        self.user_message = tr("en", user_message, **params)
        super().__init__(detail or self.user_message)

    def text(self, lang: str | None) -> str:
        """The message in ``lang``."""
        return tr(lang, self.template, **self.params)


class ConfigError(SeqbotError):
    """A setting is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable


class InputError(SeqbotError):
    """The user's command cannot be turned into a job."""


class RefusedError(SeqbotError):
    """The request is well-formed, but an allowlist, a limit or a permission says no."""


class StoreBusyError(SeqbotError):
    """SQLite refused a write that cannot wait (a new job, a setting): nothing was started."""


class DeliveryFailed(SeqbotError):
    """Telegram refused the images, or would not take them after retries."""


class TelegramUnreachableError(DeliveryFailed):
    """Telegram did not answer (network errors, timeouts, 5xx) for as long as the call could wait.

    ``last_error`` is the last thing Telegram or the network said (short, no secrets).
    """

    def __init__(self, user_message: str, *, last_error: str, tries: int, what: str) -> None:
        super().__init__(user_message, detail=f"{what}: {tries} tries; last error: {last_error}")
        self.last_error = last_error
        self.tries = tries


class RunComfyError(SeqbotError):
    """A RunComfy call failed."""


class TransientError(RunComfyError):
    """A failure that may go away if we ask again later."""

    def __init__(
        self,
        user_message: str,
        *,
        detail: str | None = None,
        retry_after: float | None = None,
        **params: Any,
    ) -> None:
        super().__init__(user_message, detail=detail, **params)
        self.retry_after = retry_after


class PermanentError(RunComfyError):
    """A failure that asking again will not fix (for example a bad token or no balance)."""

    def __init__(
        self,
        user_message: str,
        *,
        detail: str | None = None,
        operator_problem: bool = False,
        **params: Any,
    ) -> None:
        super().__init__(user_message, detail=detail, **params)
        # True when the operator, not the user, must act (token, balance): logged prominently.
        self.operator_problem = operator_problem


class SubmitUnknownError(RunComfyError):
    """The submit request was sent but no answer came back: it may have been billed."""
