"""The ToyWorld oracle: read frames back and score fidelity to the prompt over time.

For every frame (resized to ToyWorld's native 32x32) it estimates the background colour (the
palette colour nearest the median of the border pixels), finds pixels far from the background,
assigns each to its nearest object colour, and counts connected blobs per colour. A prompted
colour is *found* when at least `min_pixels` pixels of it form a blob.

Scores per frame:
* ``colours_found``: fraction of prompted object colours found;
* ``background_ok``: the detected background is the prompted one;
* ``fidelity``: mean of ``colours_found`` and ``background_ok``, minus a penalty for extra
  (unprompted) colours;
* ``brightness``: mean luma (0..255), to follow exposure drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfpp.toyworld.world import BACKGROUNDS, COLOURS, NATIVE, SceneSpec, parse_prompt

_OBJ_NAMES = list(COLOURS)
_OBJ_RGB = np.array([COLOURS[c] for c in _OBJ_NAMES], dtype=np.float32)
_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[c] for c in _BG_NAMES], dtype=np.float32)


@dataclass
class FrameReading:
    background: str
    colours: dict[str, int]  # colour -> pixels in its largest blob
    counts: dict[str, int]  # colour -> number of blobs
    brightness: float


def to_native(frame: np.ndarray) -> np.ndarray:
    """Area-resize an ``(H, W, 3)`` frame to 32x32 (H and W multiples of 32)."""
    h, w = frame.shape[:2]
    if (h, w) == (NATIVE, NATIVE):
        return frame.astype(np.float32)
    fy, fx = h // NATIVE, w // NATIVE
    return frame[: fy * NATIVE, : fx * NATIVE].astype(np.float32).reshape(NATIVE, fy, NATIVE, fx, 3).mean(axis=(1, 3))


def _components(mask: np.ndarray) -> list[int]:
    """Sizes of 4-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    sizes = []
    H, W = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, n = [(y0, x0)], 0
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            n += 1
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        sizes.append(n)
    return sizes


def read_frame(frame: np.ndarray, *, min_pixels: int = 6, bg_tol: float = 60.0) -> FrameReading:
    img = to_native(frame)  # (32, 32, 3) float
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])  # (128, 3)
    # Each background is a base tone, optionally striped with a second tone (base +/- 40): pick the
    # palette background that explains most border pixels with either tone.
    alt = _BG_RGB + np.where(_BG_RGB.mean(-1, keepdims=True) > 128, -40.0, 40.0)  # (n_bg, 3)
    d_base = np.sqrt(((border[:, None] - _BG_RGB[None]) ** 2).sum(-1))  # (128, n_bg)
    d_alt = np.sqrt(((border[:, None] - alt[None]) ** 2).sum(-1))
    explained = (np.minimum(d_base, d_alt) < 35.0).mean(0) - 1e-3 * d_base.mean(0)
    k = int(np.argmax(explained))
    bg, bg_rgb, alt_rgb = _BG_NAMES[k], _BG_RGB[k], alt[k]
    # A pixel belongs to an object when it is far from both background tones.
    d_bg = np.sqrt(((img - bg_rgb) ** 2).sum(-1))
    d_alt = np.sqrt(((img - alt_rgb) ** 2).sum(-1))
    fg = np.minimum(d_bg, d_alt) > bg_tol
    nearest = np.argmin(((img[..., None, :] - _OBJ_RGB) ** 2).sum(-1), axis=-1)  # (32, 32)
    near_dist = np.sqrt(((img - _OBJ_RGB[nearest]) ** 2).sum(-1))
    colours, counts = {}, {}
    for k, name in enumerate(_OBJ_NAMES):
        m = fg & (nearest == k) & (near_dist < 90.0)
        if m.sum() < min_pixels:
            continue
        sizes = [s for s in _components(m) if s >= min_pixels]
        if sizes:
            colours[name], counts[name] = max(sizes), len(sizes)
    luma = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    return FrameReading(bg, colours, counts, float(luma.mean()))


def frame_scores(frame: np.ndarray, scene: SceneSpec) -> dict[str, float]:
    r = read_frame(frame)
    wanted = {o.colour for o in scene.objects}
    found = len(wanted & set(r.colours)) / max(1, len(wanted))
    extra = len(set(r.colours) - wanted - ({"white"} if scene.background == "white" else set()))
    bg_ok = float(r.background == scene.background)
    fidelity = max(0.0, 0.5 * found + 0.5 * bg_ok - 0.1 * extra)
    return {"colours_found": found, "all_colours": float(found == 1.0), "background_ok": bg_ok,
            "extra_colours": float(extra), "fidelity": fidelity, "brightness": r.brightness,
            "objects": float(sum(r.counts.values()))}


def score_video(frames: np.ndarray, prompt: str | SceneSpec, *, fps: float = 16.0, window_s: float = 2.0) -> dict:
    """Oracle scores of a video ``(F, H, W, 3)``: per frame, per window of `window_s` seconds, overall."""
    scene = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    per = [frame_scores(f, scene) for f in frames]
    keys = list(per[0]) if per else []
    win = max(1, int(round(window_s * fps)))
    windows = []
    for s in range(0, len(per), win):
        chunk = per[s : s + win]
        windows.append({"start_s": s / fps, **{k: float(np.mean([p[k] for p in chunk])) for k in keys}})
    overall = {k: float(np.mean([p[k] for p in per])) for k in keys}
    return {"prompt": scene.prompt, "frames": len(per), "overall": overall, "windows": windows}


def score_paths(paths, *, prompt: str | None = None, window_s: float = 2.0) -> list[dict]:
    """Oracle scores of every video under `paths` (MP4 files, or folders from 'sfpp generate' / 'sfpp rollout').

    Videos are found with `sfpp.videos.find_videos` (a folder's own MP4s plus its direct
    sub-folders'); each result carries ``name`` (unique over all `paths`: the video's name,
    prefixed with its folder's name where two paths give the same name), ``video`` (the path)
    and ``prompt``. A sidecar's prompt wins; `prompt` is for videos without one.
    Raises `SfppError` (one line) for a missing path, a video without a (ToyWorld) prompt, or
    one that cannot be decoded.
    """
    from pathlib import Path

    from sfpp.errors import SfppError
    from sfpp.videos import find_videos, read_sidecar, sidecar_prompt

    if not paths:
        raise SfppError("give at least one MP4 file or folder of MP4s")
    found = [(Path(p), v) for p in paths for v in find_videos(p)]
    names = [v.name for _, v in found]
    labels = [f"{root.resolve().name}/{v.name}" if names.count(v.name) > 1 and root.is_dir() else v.name
              for root, v in found]
    if len(set(labels)) != len(labels):
        labels = [str(v.path) for _, v in found]
    results = []
    for (root, v), label in zip(found, labels):
        side = read_sidecar(v.sidecar)
        text = sidecar_prompt(side) or prompt
        if text is None:
            why = side.get("_sidecar_error") or (f"{v.sidecar.name} has no 'prompt'" if v.sidecar else "it has no sidecar")
            raise SfppError(f"{v.path} has no prompt ({why}); pass --prompt")
        scene = parse_prompt(text)
        if not scene.objects:
            raise SfppError(f"{v.path}: prompt {text!r} names no ToyWorld object (a colour and circle, square or "
                            "triangle); the oracle scores ToyWorld prompts, e.g. 'a red circle on a black background'")
        frames, fps = _read(v.path, side.get("fps"))
        if frames.shape[1] < NATIVE or frames.shape[2] < NATIVE:
            raise SfppError(f"{v.path} is {frames.shape[2]}x{frames.shape[1]}; the oracle needs frames of at least "
                            f"{NATIVE}x{NATIVE} (ToyWorld videos)")
        s = score_video(frames, scene, fps=fps, window_s=window_s)
        results.append({"name": label, "video": str(v.path), **s})
    return results


def _read(path, fallback_fps) -> tuple[np.ndarray, float]:
    from sfpp.errors import SfppError
    from sfpp.video import read_mp4

    try:
        frames, fps = read_mp4(path)
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as e:
        lines = str(e).strip().splitlines()
        raise SfppError(f"cannot decode {path}: {(lines[-1] if lines else type(e).__name__)[:200]}; "
                        "re-generate or remove the file") from None
    if len(frames) == 0:
        raise SfppError(f"cannot decode {path}: no video frames; re-generate or remove the file")
    if not np.isfinite(fps) or fps <= 0:
        if not fallback_fps:
            raise SfppError(f"{path} has no frame rate; add 'fps' to its JSON sidecar")
        fps = float(fallback_fps)
    return frames, float(fps)
