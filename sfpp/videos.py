"""Finding the videos in what `sfpp generate` and `sfpp rollout` write (one function for every reader).

Accepted layouts, as they are and mixed:

* a `generate` folder: ``NAME.mp4`` + ``NAME.json`` (sidecar) side by side;
* a `rollout` folder: one sub-folder per prompt, ``0000-<slug>/preview.mp4`` + ``preview.json``;
* a single ``.mp4`` file.

Only the folder's own MP4s and those of its direct sub-folders are found (no deeper search).
Unfinished writes (``*.partial.mp4``) and hidden entries (``.name``) are ignored.

Naming (unique within the folder, readable), see `find_videos`:

* ``NAME.mp4`` in the folder itself -> ``NAME``;
* the only video of a sub-folder, e.g. ``0000-a-red-circle/preview.mp4`` -> ``0000-a-red-circle``;
* a sub-folder with several videos, or whose name is taken by a video of the folder itself ->
  ``SUB/NAME`` (e.g. ``1x/p0``);
* a single file -> its stem, except ``preview.mp4`` -> its folder's name.

Every video also has a `key`: its path relative to the folder without ``.mp4``
(``0000-a-red-circle/preview``); prompt files may use either the name or the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfpp.errors import SfppError

PARTIAL_SUFFIX = ".partial.mp4"
LAYOUT_HINT = "pass a folder written by 'sfpp generate' (NAME.mp4 + NAME.json) or 'sfpp rollout' (one sub-folder per prompt), or an .mp4 file"


@dataclass(frozen=True)
class FoundVideo:
    """One video: where it is, its sidecar (``NAME.json`` next to it, if present) and its name."""

    name: str  # unique within the folder searched, readable (see the module docstring)
    path: Path
    sidecar: Path | None
    rel: str  # path relative to the folder searched, '/'-separated, e.g. '0000-a-red-circle/preview.mp4'

    @property
    def key(self) -> str:
        """`rel` without the '.mp4' suffix: a second name a prompts file may use."""
        return self.rel[:-4]


def _is_video(p: Path) -> bool:
    return (p.suffix.lower() == ".mp4" and not p.name.lower().endswith(PARTIAL_SUFFIX)
            and not p.name.startswith(".") and p.is_file())


def _is_broken_link(p: Path) -> bool:
    """An MP4 name that is a symbolic link to nothing (it would otherwise vanish without a word)."""
    return (p.suffix.lower() == ".mp4" and not p.name.lower().endswith(PARTIAL_SUFFIX)
            and not p.name.startswith(".") and p.is_symlink() and not p.exists())


def _broken_link_error(p: Path) -> SfppError:
    try:
        target = f" (to {p.readlink()})"
    except OSError:  # pragma: no cover
        target = ""
    return SfppError(f"{p} is a broken symbolic link{target}; restore its target or remove the link")


def _mp4s(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise SfppError(f"cannot list {folder} ({e.strerror}); check the folder's permissions") from None
    broken = next((p for p in entries if _is_broken_link(p)), None)
    if broken is not None:
        raise _broken_link_error(broken)
    return [p for p in entries if _is_video(p)]


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise SfppError(f"cannot list {folder} ({e.strerror}); check the folder's permissions") from None


def _sidecar_of(mp4: Path) -> Path | None:
    side = mp4.with_suffix(".json")
    return side if side.is_file() else None


def video_file_name(path: Path) -> str:
    """The name of a video given on its own: its stem, or its folder's name for a rollout's ``preview.mp4``."""
    path = Path(path)
    if path.stem.lower() == "preview":
        parent = path.resolve().parent.name
        if parent:
            return parent
    return path.stem


def find_videos(path: str | Path) -> list[FoundVideo]:
    """The videos of a folder (its own ``*.mp4`` plus those of its direct sub-folders) or of one ``.mp4`` file.

    Sorted by relative path; names are unique and readable (see the module docstring).
    Raises `SfppError` (one line) for a missing path, a file that is not an MP4, a folder
    without videos at either depth, or an MP4 that is a broken symbolic link.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise _broken_link_error(path)
    if path.is_file():
        if path.name.lower().endswith(PARTIAL_SUFFIX):
            raise SfppError(f"{path} is an unfinished write (*.partial.mp4); wait for it to finish, or pass the finished .mp4")
        if path.suffix.lower() != ".mp4":
            raise SfppError(f"{path} is not an .mp4 file; {LAYOUT_HINT}")
        return [FoundVideo(name=video_file_name(path), path=path, sidecar=_sidecar_of(path), rel=path.name)]
    if not path.is_dir():
        raise SfppError(f"{path} does not exist; {LAYOUT_HINT}")

    top = _mp4s(path)
    found = [FoundVideo(name=p.stem, path=p, sidecar=_sidecar_of(p), rel=p.name) for p in top]
    taken = {f.name for f in found}
    for sub in _subfolders(path):
        vids = _mp4s(sub)
        for p in vids:
            name = sub.name if len(vids) == 1 and sub.name not in taken else f"{sub.name}/{p.stem}"
            found.append(FoundVideo(name=name, path=p, sidecar=_sidecar_of(p), rel=f"{sub.name}/{p.name}"))
    # Names can still clash (e.g. 'a.mp4' and 'a.MP4'): fall back to the relative path, always unique.
    counts: dict[str, int] = {}
    for f in found:
        counts[f.name] = counts.get(f.name, 0) + 1
    found = [f if counts[f.name] == 1 else FoundVideo(name=f.rel, path=f.path, sidecar=f.sidecar, rel=f.rel) for f in found]
    found.sort(key=lambda f: f.rel)
    if not found:
        raise SfppError(_no_videos_message(path))
    return found


def _no_videos_message(path: Path) -> str:
    partial = any(p.name.lower().endswith(PARTIAL_SUFFIX) for p in path.glob("*.mp4")) or any(
        p.name.lower().endswith(PARTIAL_SUFFIX) for p in path.glob("*/*.mp4"))
    if partial:
        return f"{path} has only unfinished *.partial.mp4 files; wait for the run to finish"
    deeper = next((p for p in sorted(path.glob("*/*/*.mp4")) if _is_video(p)), None)
    if deeper is not None:
        return (f"{path} has no .mp4 files in it or in its direct sub-folders (videos are not searched deeper); "
                f"pass {deeper.parent.parent} instead")
    return f"{path} has no .mp4 files in it or in its direct sub-folders; {LAYOUT_HINT}"


def read_sidecar(path: Path | None) -> dict[str, Any]:
    """The sidecar's JSON object; {} when there is none, {'_sidecar_error': ...} when it is unreadable
    or not a JSON object."""
    if path is None:
        return {}
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return {"_sidecar_error": f"{Path(path).name} is not valid JSON ({e.msg} at line {e.lineno})"}
    except UnicodeDecodeError:
        return {"_sidecar_error": f"{Path(path).name} is not valid JSON (not UTF-8 text)"}
    except OSError as e:
        return {"_sidecar_error": f"cannot read {Path(path).name} ({e.strerror})"}
    if not isinstance(loaded, dict):
        return {"_sidecar_error": f"{Path(path).name} holds a JSON {type(loaded).__name__}, not an object"}
    return loaded


def sidecar_prompt(sidecar: dict[str, Any]) -> str | None:
    """The prompt a sidecar records (a string), or None."""
    p = sidecar.get("prompt")
    return p if isinstance(p, str) and p.strip() else None
