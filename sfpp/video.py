"""MP4 writing through imageio-ffmpeg, appended frame by frame while a video is generated."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# libx264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Chosen by `benchmarks/mp4_encoder.py` (results in benchmarks/RESULTS.md): at quality 8 (CRF 10) superfast
# needs about a quarter of medium's CPU time (toy model: 1.35 s instead of 5.3 s per minute of video)
# for no visible loss (PSNR within 0.5 dB and SSIM within 0.002 of medium's) and files 1.1-1.25x
# medium's; ultrafast is faster still but doubles the toy model's files and loses more SSIM on grain.
DEFAULT_PRESET = "superfast"


class Mp4Writer:
    """Append RGB frames to an H.264 MP4 as they are produced.

    Writes to ``<path>.partial.mp4`` and renames to ``path`` on `close()`, so an interrupted run
    never leaves a truncated file under the final name (nor clobbers an existing one).

    ``quality`` is imageio-ffmpeg's 1-10 scale (8 = libx264 CRF 10). ``preset`` is the libx264
    speed preset (`X264_PRESETS`); the default, superfast, encodes about 4x faster than x264's own
    default (medium) with the same picture quality and files about 1.2x as large (see
    `DEFAULT_PRESET`). Every preset keeps ``-tune zerolatency``: the same first frames always
    decode to the same pixels, whatever is written after them.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, width: int, height: int, quality: float = 8.0,
                 preset: str = DEFAULT_PRESET):
        import imageio_ffmpeg

        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}")

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.stem + ".partial" + self.path.suffix)
        self.fps, self.width, self.height, self.preset = fps, width, height, preset
        self.frames = 0
        self._gen = imageio_ffmpeg.write_frames(
            str(self.tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            quality=quality,
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
            # No B-frames, lookahead or macroblock-tree: every frame is encoded from past frames only,
            # so a frame's pixels never depend on what is generated after it (streaming-friendly, and
            # frames before a prompt switch stay bit-identical).
            output_params=["-preset", preset, "-tune", "zerolatency"],
        )
        self._gen.send(None)

    def write(self, frames) -> None:
        """Append frames ``(n, H, W, 3)`` uint8 (numpy or torch)."""
        arr = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
        if arr.ndim != 4 or arr.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be (n, {self.height}, {self.width}, 3), got {arr.shape}")
        for frame in arr:
            self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
            self.frames += 1

    def close(self) -> Path:
        self._gen.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._gen.close()
        except Exception:  # pragma: no cover - best effort cleanup
            pass
        self.tmp.unlink(missing_ok=True)


def read_mp4(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a whole MP4 into ``(frames, H, W, 3)`` uint8 and its fps (for tests and previews)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = gen.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in gen]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8), float(meta["fps"])
