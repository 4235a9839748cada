"""Ctrl-C and SIGTERM as one exception, so long work can finish what it has before it stops.

Inside `interruptible()` (main thread only), SIGINT and SIGTERM raise `Interrupted`. It derives from
`BaseException`, like `KeyboardInterrupt`, so ordinary ``except Exception`` blocks do not swallow it.
Once one signal has arrived, further ones are ignored until the block exits, so the clean-up that
follows (finishing a partial video, writing its sidecar) is not itself interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = threading.local()  # per thread: `critical` depth and a signal held back meanwhile


class Interrupted(BaseException):
    """Work stopped by a signal. ``kept`` names what was saved of it (e.g. a partial video)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.reason = signal.Signals(signum).name
        self.kept: list[Path] = []
        self.frames: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into `Interrupted` while inside (no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    fired = []

    def handler(signum, frame):
        if fired:
            return  # already stopping: let the clean-up finish
        fired.append(signum)
        if getattr(_state, "depth", 0):  # inside `critical()`: raise when it ends
            _state.pending = signum
            return
        raise Interrupted(signum)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold back `Interrupted` while inside: a write and the count of what it wrote stay together.

    A signal that arrives meanwhile is raised as soon as the outermost `critical()` block ends.
    """
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
        pending = getattr(_state, "pending", None)
        if _state.depth == 0 and pending is not None:
            _state.pending = None
            raise Interrupted(pending)
