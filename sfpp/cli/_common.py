"""Shared helpers for CLI commands: error reporting and output sinks."""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from sfpp.errors import SfppError

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn `SfppError` into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except SfppError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(code=e.exit_code) from None


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
