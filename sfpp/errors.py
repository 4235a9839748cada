"""One error type for everything a user can get wrong, and one warning type.

`SfppError` carries a single-line message that names the fix. The CLI prints it
without a traceback and exits with code 2; library callers can catch it.
`SfppWarning` (through `warn`) is a one-line notice that does not stop the work, e.g. a flag
that overrides what a checkpoint was trained with; the CLI prints it as ``warning: ...``.
"""

from __future__ import annotations


class SfppError(Exception):
    """A user-facing error: bad input, missing files, incompatible checkpoints."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep messages on one line so the CLI output stays one line.
        super().__init__(" ".join(str(message).split()))


class OutputError(SfppError):
    """Writing an output failed (a full disk, a broken pipe): one line, exit code 1, nothing half-written."""

    exit_code = 1


class SfppWarning(UserWarning):
    """A one-line notice for the user (the work goes on)."""


def warn(message: str) -> None:
    import warnings

    warnings.warn(" ".join(str(message).split()), SfppWarning, stacklevel=2)
