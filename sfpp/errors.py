"""One error type for everything a user can get wrong.

`SfppError` carries a single-line message that names the fix. The CLI prints it
without a traceback and exits with code 2; library callers can catch it.
"""

from __future__ import annotations


class SfppError(Exception):
    """A user-facing error: bad input, missing files, incompatible checkpoints."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep messages on one line so the CLI output stays one line.
        super().__init__(" ".join(str(message).split()))
