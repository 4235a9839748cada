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


def finite_json(obj):
    """`obj` with every NaN / infinity replaced by None (``null``): strict JSON that any reader parses.
    NumPy scalars and arrays become Python numbers and lists."""
    import math

    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array
        return finite_json(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write `obj` as strict JSON (NaN -> null) atomically: a reader or a full disk never leaves half a file
    in place of the old one."""
    import json
    import os

    import errno

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        fix = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another --out"
        raise SfppError(f"cannot write {path} ({e.strerror}); {fix}") from None
    return path


def check_writable_file(path: str | Path, *, flag: str) -> Path:
    """Fail before any work when a report file `path` cannot be written (its folder made, or a folder)."""
    import os

    p = Path(path)
    if p.is_dir():
        raise SfppError(f"{flag} {p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SfppError(f"{flag} {p}: cannot create its folder ({e.strerror}); choose another {flag}") from None
    if not os.access(p.parent, os.W_OK):
        raise SfppError(f"{flag} {p}: its folder is not writable; choose another {flag}")
    return p


def save_torch_atomic(obj, path: str | Path) -> Path:
    """`torch.save` to `path` atomically (temp file, fsync, rename): a kill leaves the old file or the new one."""
    import os

    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
