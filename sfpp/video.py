"""MP4 writing through imageio-ffmpeg, appended frame by frame while a video is generated."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class Mp4Writer:
    """Append RGB frames to an H.264 MP4 as they are produced.

    Writes to ``<path>.partial.mp4`` and renames to ``path`` on `close()`, so an interrupted run
    never leaves a truncated file under the final name (nor clobbers an existing one).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, width: int, height: int, quality: float = 8.0):
        import imageio_ffmpeg

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.stem + ".partial" + self.path.suffix)
        self.fps, self.width, self.height = fps, width, height
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
            output_params=["-tune", "zerolatency"],
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
