"""Shared helpers for CLI commands: error reporting and output sinks."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console, RenderableType
from rich.markup import escape

from sfpp.errors import SfppError
from sfpp.interrupts import Interrupted

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn `SfppError` into a one-line message and exit code 2 (no traceback); print each
    `SfppWarning` as a one-line ``warning: ...`` (other warnings as Python shows them)."""
    import warnings

    from sfpp.errors import SfppWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", SfppWarning)
        default_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, SfppWarning):
                console.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
            else:
                default_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield
        except SfppError as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(code=e.exit_code) from None
        except Interrupted as e:
            kept = ""
            if e.kept:
                frames = f"{e.frames} frames in " if e.frames is not None else ""
                kept = f"; kept {frames}{' + '.join(str(p) for p in e.kept)}"
            console.print(f"[bold yellow]interrupted[/] by {e.reason}{escape(kept)}", soft_wrap=True)
            raise typer.Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold yellow]interrupted[/] by SIGINT", soft_wrap=True)
            raise typer.Exit(code=130) from None
        except OSError as e:  # an I/O failure nobody turned into a message: still one line, exit 1
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            console.print(f"[bold red]error:[/] {escape((e.strerror or str(e)) + where)}", soft_wrap=True)
            raise typer.Exit(code=1) from None


def print_table(table: RenderableType, *, stderr: bool = False) -> None:
    """Print a rich table whole: no cell is ever cut to '…', however narrow the output.

    stdout by default (results are data; pass `stderr=True` for the status console's stream).
    Not a terminal (a pipe, a file, a test runner): rendered at the table's natural width, one
    line per row whatever COLUMNS says. A terminal narrower than the table: rendered at the
    narrowest width that keeps every cell whole (cells wrap at spaces; the terminal may wrap
    the lines). Colours and terminal detection are those of a plain `Console`.
    """
    from rich.measure import Measurement

    target = Console(stderr=stderr, highlight=False)
    fit = Measurement.get(target, target.options.update_width(1_000_000), table)
    need = fit.maximum if not target.is_terminal else fit.minimum
    width = max(target.width, need)
    if width != target.width:
        target = Console(stderr=stderr, highlight=False, width=width)
    target.print(table, crop=False)


def parse_duration_seconds(text: str, *, what: str) -> float:
    """Parse '2s', '2.5', '10 s' into seconds (for window-style options)."""
    t = text.strip().lower().removesuffix("s").strip()
    try:
        v = float(t)
    except ValueError:
        raise SfppError(f"{what} must be a duration like '2s', got {text!r}") from None
    if v <= 0:
        raise SfppError(f"{what} must be positive, got {text!r}")
    return v


def check_number(value, flag: str, *, low: float = 0.0, high: float | None = None, low_inclusive: bool = False) -> float:
    """A finite number above `low` (and at most `high`), or one `SfppError` naming the flag."""
    import math

    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and (high is None or value <= high)
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + ("" if high is None else f" and <= {high:g}")
        raise SfppError(f"{flag} must be a finite number {bound}, got {value}")
    return value
