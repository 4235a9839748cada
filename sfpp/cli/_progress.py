"""Rich progress bars with a frames-per-second column.

`rich.progress` is imported when a bar is made, not when a command module is imported, so
`sfpp --help` does not pay for it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from sfpp.cli._common import console

if TYPE_CHECKING:
    from rich.progress import Progress


@cache
def _fps_column_class() -> type:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class FpsColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:6.1f} frames/s" if speed else "  -.- frames/s", style="cyan")

    return FpsColumn


def __getattr__(name: str):
    if name == "FpsColumn":
        return _fps_column_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def frame_progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _fps_column_class()(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
