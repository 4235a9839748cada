"""Finding videos in run folders, reading MP4s, hashing them and cutting time windows.

Video layout everywhere in `sfpp.evaluate`: frames are a uint8 array `(F, H, W, 3)` in RGB.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfpp.errors import SfppError


@dataclass(frozen=True, kw_only=True)
class VideoEntry:
    """One MP4 of a run, with what its sidecar (or the prompts file) says about it."""

    name: str  # file stem, unique inside a run
    path: Path
    prompt: str | None = None
    sidecar: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Run:
    """A folder of MP4s, compared against other runs side by side."""

    name: str
    path: Path
    videos: tuple[VideoEntry, ...]


@dataclass(frozen=True, kw_only=True)
class Window:
    """Frames `[start, end)` of a video; times are in seconds from the video start."""

    index: int
    start: int
    end: int
    fps: float

    @property
    def start_s(self) -> float:
        return self.start / self.fps

    @property
    def end_s(self) -> float:
        return self.end / self.fps

    @property
    def mid_s(self) -> float:
        return 0.5 * (self.start_s + self.end_s)


def load_prompts_file(path: Path) -> dict[str, str]:
    """Read `{name: prompt}` JSON or `name<TAB>prompt` lines; names may carry `.mp4`."""
    if not path.is_file():
        raise SfppError(f"prompts file {path} does not exist; pass an existing file to --prompts")
    text = path.read_text(encoding="utf-8")
    prompts: dict[str, str] = {}
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SfppError(f"prompts file {path} is not valid JSON ({e.msg} at line {e.lineno}); fix it or use name<TAB>prompt lines") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise SfppError(f"prompts file {path} must be a JSON object mapping video names to prompt strings")
        prompts = {str(k): v for k, v in data.items()}
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if "\t" not in line:
                raise SfppError(f"{path}:{lineno}: expected 'name<TAB>prompt'; separate the name and the prompt with a tab")
            name, prompt = line.split("\t", 1)
            prompts[name.strip()] = prompt.strip()
    return {Path(k).stem if k.lower().endswith(".mp4") else k: v for k, v in prompts.items()}


def discover_run(path: Path, prompts: dict[str, str] | None = None, *, name: str | None = None) -> Run:
    """List the MP4s of a run folder (sorted), reading each `NAME.json` sidecar when present."""
    path = Path(path)
    if not path.is_dir():
        raise SfppError(f"run folder {path} does not exist; pass folders of MP4s written by 'sfpp generate'")
    mp4s = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".mp4")
    if not mp4s:
        raise SfppError(f"run folder {path} has no .mp4 files; pass folders of MP4s written by 'sfpp generate'")
    videos = []
    for mp4 in mp4s:
        sidecar: dict[str, Any] = {}
        side = mp4.with_suffix(".json")
        if side.is_file():
            try:
                loaded = json.loads(side.read_text(encoding="utf-8"))
                sidecar = loaded if isinstance(loaded, dict) else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                sidecar = {"_sidecar_error": f"{side.name} is not valid JSON"}
        prompt = sidecar.get("prompt") if isinstance(sidecar.get("prompt"), str) else None
        if prompts and mp4.stem in prompts:
            prompt = prompts[mp4.stem] if prompt is None else prompt
        videos.append(VideoEntry(name=mp4.stem, path=mp4, prompt=prompt, sidecar=sidecar))
    return Run(name=name or path.resolve().name, path=path, videos=tuple(videos))


def unique_run_names(paths: list[Path]) -> list[str]:
    """Folder names, disambiguated with their parent folder when two runs share a name."""
    names = [Path(p).resolve().name for p in paths]
    out = []
    for p, n in zip(paths, names):
        if names.count(n) > 1:
            n = f"{Path(p).resolve().parent.name}/{n}"
        out.append(n)
    if len(set(out)) != len(out):
        out = [f"{n}#{i}" for i, n in enumerate(out)]
    return out


def content_hash(path: Path) -> str:
    """SHA-256 of the file bytes: the cache key of a video."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_video(path: Path, *, fallback_fps: float | None = None) -> tuple[np.ndarray, float]:
    """Decode every frame of an MP4 to `(F, H, W, 3)` uint8 RGB; returns the frames and fps.

    Raises `SfppError` for a file ffmpeg cannot decode or that holds no frames.
    """
    import imageio_ffmpeg

    path = Path(path)
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in gen]
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as e:
        msg = str(e).strip().splitlines()
        hint = msg[-1] if msg else type(e).__name__
        raise SfppError(f"cannot decode {path.name}: {hint[:200]}; re-generate or remove the file") from None
    if not frames:
        raise SfppError(f"cannot decode {path.name}: no video frames; re-generate or remove the file")
    fps = float(meta.get("fps") or 0.0)
    if not np.isfinite(fps) or fps <= 0:
        if not fallback_fps:
            raise SfppError(f"{path.name} has no frame rate; add 'fps' to its JSON sidecar")
        fps = float(fallback_fps)
    return np.stack(frames), fps


def make_windows(num_frames: int, fps: float, seconds: float) -> list[Window]:
    """Cut a video into windows of `round(fps * seconds)` frames, as VBench-Long splits clips.

    The remainder becomes a last full-length window that borrows frames from the one before it;
    a video shorter than one window is kept whole.
    """
    length = max(1, int(round(fps * seconds)))
    if num_frames <= length:
        return [Window(index=0, start=0, end=num_frames, fps=fps)]
    n_full = num_frames // length
    wins = [Window(index=i, start=i * length, end=(i + 1) * length, fps=fps) for i in range(n_full)]
    if num_frames - n_full * length > 0:
        wins.append(Window(index=n_full, start=num_frames - length, end=num_frames, fps=fps))
    return wins
