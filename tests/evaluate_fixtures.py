"""Synthetic videos with known answers for the `sfpp evaluate` tests (imported by test_evaluate_*)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_mp4(path: Path, frames: np.ndarray, fps: float, *, sidecar: dict | None = None) -> Path:
    """Write (F, H, W, 3) uint8 RGB losslessly-ish (x264 qp 0, yuv444p, so odd sizes work)."""
    import imageio_ffmpeg

    f, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv444p", macro_block_size=1, quality=None,
        output_params=["-qp", "0", "-preset", "ultrafast"], ffmpeg_log_level="error",
    )
    writer.send(None)
    for fr in frames:
        writer.send(np.ascontiguousarray(fr))
    writer.close()
    if sidecar is not None:
        meta = {"prompt": "a test video", "fps": fps, "num_frames": f, "seed": 0, "model": "synthetic", "config": {}}
        meta.update(sidecar)
        path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def texture(h: int, w: int, seed: int, *, lo: int = 40, hi: int = 200) -> np.ndarray:
    """A smooth random colour texture (H, W, 3) uint8 that optical flow can track."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(lo, hi, size=(max(2, h // 4), max(2, w // 4), 3)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 12, size=(h, w, 3))
    return np.clip(big + noise, lo, hi).astype(np.uint8)


def static_video(h=75, w=109, n=40, seed=1) -> np.ndarray:
    return np.repeat(texture(h, w, seed)[None], n, axis=0)


def brightening_video(h=75, w=109, n=40, seed=2) -> np.ndarray:
    """A texture brightening linearly until every pixel is white in the last frame."""
    base = texture(h, w, seed).astype(np.float32)
    t = np.linspace(0.0, 1.0, n)[:, None, None, None]
    return np.clip(base + (255.0 - base) * t, 0, 255).round().astype(np.uint8)


SQUARE = 32


def moving_square_video(h=91, w=167, n=40, speed=3, seed=3) -> np.ndarray:
    """A textured 32x32 square moving right at `speed` px/frame over a flat background."""
    sq = texture(SQUARE, SQUARE, seed, lo=0, hi=255)
    frames = np.full((n, h, w, 3), 90, dtype=np.uint8)
    y0 = (h - SQUARE) // 2
    for i in range(n):
        x0 = 4 + speed * i
        frames[i, y0 : y0 + SQUARE, x0 : x0 + SQUARE] = sq
    return frames


def freezing_video(freeze_at: int, h=91, w=167, n=40, seed=4) -> np.ndarray:
    """A panning texture that stops moving: frames[freeze_at:] repeat frame freeze_at-1."""
    big = texture(h, w + 2 * n, seed)
    frames = np.stack([big[:, 2 * i : 2 * i + w] for i in range(n)])
    frames[freeze_at:] = frames[freeze_at - 1]
    return frames
