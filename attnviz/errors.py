"""Errors the user can act on, and the exit statuses they become.

Each error carries a one-line message about the problem and an optional hint, both
worded for any caller (Python or shell). An error may also name a `Fix`: a remedy the
command line words as flags at the edge (cli/hints.py), so the core never speaks of
`--flags`. Nothing in the package prints but the CLI.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Any


class ExitStatus(IntEnum):
    """What `attnviz` exits with."""

    OK = 0
    ERROR = 1  # an AttnvizError: bad input, a model that cannot load, a full disk
    USAGE = 2  # flags that cannot be read or that contradict each other
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class Fix(Enum):
    """A remedy the CLI can word as flags; `details` of the error fill in its blanks."""

    TRUNCATE = "truncate"
    DROP_PAIR = "drop-pair"
    DROP_TARGET = "drop-target"
    DROP_SOURCE = "drop-source"
    USE_CPU = "use-cpu"
    TRUST_REMOTE_CODE = "trust-remote-code"
    PICK_STACK = "pick-stack"  # details: stacks ("encoder or decoder")
    NO_ROLLOUT = "no-rollout"
    SAVE_ALL_LAYERS = "save-all-layers"
    KEEP_SPECIALS = "keep-specials"
    SCRATCH_SIZES = "scratch-sizes"
    SCRATCH_LAYERS = "scratch-layers"
    SCRATCH_CAUSAL_SOURCE = "scratch-causal-source"
    MODEL_FOLDER = "model-folder"
    SMALLER_IMAGE = "smaller-image"
    BIGGER_FIGURE = "bigger-figure"
    LONG_LINE = "long-line"  # details: limit (bytes)
    BIGGER_MODEL = "bigger-model"  # details: what ("parameters" or "layers")
    SMALLER_WEIGHTS = "smaller-weights"  # float32 weights too big for memory: 16 bits, or spread over devices
    MORE_PIXELS = "more-pixels"


class AttnvizError(Exception):
    """Base class: a failure with a message for the user, not a bug."""

    exit_code = ExitStatus.ERROR

    def __init__(self, message: str, hint: str | None = None, *, fix: Fix | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fix = fix
        self.details = details


class InputError(AttnvizError):
    """The text or input file cannot be used (empty, too long, bad bytes)."""


class SelectionError(AttnvizError):
    """A layer, head, query, stack or token window outside what the result holds."""


class ModelError(AttnvizError):
    """The model cannot be found, loaded, or does not give attention weights."""


class DeviceError(AttnvizError):
    """The requested device or dtype is not available here."""


class OutputError(AttnvizError):
    """The output path cannot be written."""


class SavedFileError(AttnvizError):
    """A saved result (JSON, JSONL, NPZ) cannot be read back."""


class UsageError(AttnvizError):
    """Options that cannot be read or that contradict each other; exits 2 like any usage error."""

    exit_code = ExitStatus.USAGE
