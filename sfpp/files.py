"""Reading the files users give: one clear error for every way it can fail."""

from __future__ import annotations

from pathlib import Path

from sfpp.errors import SfppError


def read_text_file(path: str | Path, *, what: str, hint: str) -> str:
    """The UTF-8 text of a user-given file, or one clear error (missing, a folder, unreadable, not UTF-8)."""
    p = Path(path)
    if not p.exists():
        raise SfppError(f"{what} {p} does not exist; {hint}")
    if p.is_dir():
        raise SfppError(f"{what} {p} is a folder; {hint}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SfppError(f"{what} {p} cannot be read ({e.strerror}); check its permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SfppError(f"{what} {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
