"""Errors the user can act on: each carries a one-line message and an optional hint.

The CLI turns any AttnvizError into `error: <message>` / `hint: <hint>` on stderr and
exit code 1; nothing else in the package prints.
"""

from __future__ import annotations


class AttnvizError(Exception):
    """Base class: a failure with a message for the user, not a bug."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(AttnvizError):
    """The text or input file cannot be used (empty, too long, bad bytes)."""


class SelectionError(AttnvizError):
    """A layer, head, query, stack or token window outside what the model has."""


class ModelError(AttnvizError):
    """The model cannot be found, loaded, or does not give attention weights."""


class DeviceError(AttnvizError):
    """The requested device or dtype is not available here."""


class OutputError(AttnvizError):
    """The output path cannot be written."""


class UsageError(AttnvizError):
    """Flags that contradict each other; exits 2 like any other usage error."""

    exit_code = 2
