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
from sfpp.videos import find_videos, read_sidecar, sidecar_prompt, video_file_name


@dataclass(frozen=True, kw_only=True)
class VideoEntry:
    """One MP4 of a run, with what its sidecar (or the prompts file) says about it."""

    name: str  # unique inside a run: the file stem, or the sub-folder for rollouts (see sfpp.videos)
    path: Path
    prompt: str | None = None
    sidecar: dict[str, Any] = field(default_factory=dict)
    rel: str = ""  # path relative to the run folder, e.g. '0000-a-red-circle/preview.mp4'
    sidecar_path: Path | None = None

    @property
    def label(self) -> str:
        """How messages name the file: its path inside the run (just 'NAME.mp4' for flat runs)."""
        return self.rel or self.path.name


@dataclass(frozen=True, kw_only=True)
class Run:
    """A folder of MP4s (or rollout sub-folders), compared against other runs side by side."""

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
    """Read `{name: prompt}` JSON or `name<TAB>prompt` lines; names may carry `.mp4`.

    Names are video names as `discover_run` gives them ('NAME' for NAME.mp4, 'SUB' for a rollout's
    SUB/preview.mp4) or relative paths ('SUB/preview', 'SUB/preview.mp4').
    """
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
    out = {}
    for k, v in prompts.items():
        k = k.strip().replace("\\", "/").removeprefix("./")
        out[k[:-4] if k.lower().endswith(".mp4") else k] = v
    return out


def discover_run(path: Path, prompts: dict[str, str] | None = None, *, name: str | None = None) -> Run:
    """The videos of a run (see `sfpp.videos.find_videos`), reading each sidecar when present.

    A run is a folder written by 'sfpp generate' (NAME.mp4 + NAME.json), one written by
    'sfpp rollout' (SUB/preview.mp4 + preview.json per prompt; the video is named SUB), a mix,
    or a single .mp4 file. A sidecar that cannot be read (bad JSON, not an object) is an
    `SfppError`, never a video silently scored without its prompt. A sidecar's prompt wins over `prompts`, which is looked up by the
    video's name, then by its relative path without '.mp4' (e.g. '0000-a-red-circle/preview').
    """
    path = Path(path)
    videos = []
    for found in find_videos(path):
        sidecar = read_sidecar(found.sidecar)
        if "_sidecar_error" in sidecar:  # never score a video without the prompt its sidecar was meant to give
            raise SfppError(f"{path / found.rel if path.is_dir() else path}: its sidecar {sidecar['_sidecar_error']}; "
                            "fix or remove the sidecar")
        prompt = sidecar_prompt(sidecar)
        if prompt is None and prompts:
            prompt = prompts.get(found.name, prompts.get(found.key))
        videos.append(VideoEntry(name=found.name, path=found.path, prompt=prompt, sidecar=sidecar,
                                 rel=found.rel, sidecar_path=found.sidecar))
    return Run(name=name or run_name(path), path=path, videos=tuple(videos))


def run_name(path: Path) -> str:
    """A run's name: its folder's name, or for a single file the video's name."""
    path = Path(path)
    return video_file_name(path) if path.is_file() else path.resolve().name


def unique_run_names(paths: list[Path]) -> list[str]:
    """Run names, disambiguated with their parent folder when two runs share a name."""
    names = [run_name(Path(p)) for p in paths]
    out = []
    for p, n in zip(paths, names):
        if names.count(n) > 1:
            parent = Path(p).resolve().parent
            if Path(p).is_file() and Path(p).stem.lower() == "preview":
                parent = parent.parent  # the name already is the folder's
            n = f"{parent.name}/{n}"
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


def read_video(path: Path, *, fallback_fps: float | None = None, label: str | None = None) -> tuple[np.ndarray, float]:
    """Decode every frame of an MP4 to `(F, H, W, 3)` uint8 RGB; returns the frames and fps.

    Raises `SfppError` for a file ffmpeg cannot decode or that holds no frames; messages name
    the file as `label` (default: its file name).
    """
    import imageio_ffmpeg

    path = Path(path)
    label = label or path.name
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in gen]
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as e:
        msg = str(e).strip().splitlines()
        hint = msg[-1] if msg else type(e).__name__
        raise SfppError(f"cannot decode {label}: {hint[:200]}; re-generate or remove the file") from None
    if not frames:
        raise SfppError(f"cannot decode {label}: no video frames; re-generate or remove the file")
    fps = float(meta.get("fps") or 0.0)
    if not np.isfinite(fps) or fps <= 0:
        if not fallback_fps:
            raise SfppError(f"{label} has no frame rate; add 'fps' to its JSON sidecar")
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
