"""Record a served stream as it plays, so "save what I watched" is one quick copy, not a re-generation.

Frames go to an H.264 segment (`sfpp.video.Mp4Writer`, as `sfpp generate` writes them) in a
private temporary folder. Saving finishes the current segment and joins all segments so far into
one MP4 with ffmpeg's concat demuxer (stream copy: no re-encoding); later frames start a new
segment. Disk use grows with the stream (capped by ``--max-seconds``); memory does not. The
folder is removed when the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from sfpp.errors import OutputError
from sfpp.video import Mp4Writer


class Recorder:
    def __init__(self, *, fps: int, width: int, height: int):
        self.fps, self.width, self.height = fps, width, height
        self.dir = Path(tempfile.mkdtemp(prefix="sfpp-serve-"))
        self.frames = 0
        self._segments: list[Path] = []
        self._writer: Mp4Writer | None = None
        self._lock = threading.Lock()
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 frame."""
        with self._lock:
            if self._closed:
                return
            if self._writer is None:
                self._writer = Mp4Writer(self.dir / f"segment-{len(self._segments):04d}.mp4", fps=self.fps,
                                         width=self.width, height=self.height)
            self._writer.write(frame[None])
            self.frames += 1

    def save(self, out: Path) -> int:
        """Write every frame recorded so far to `out` (an MP4); returns the frame count."""
        with self._lock:
            if self._writer is not None:
                self._segments.append(self._writer.close())
                self._writer = None
            if not self._segments:
                raise OutputError("nothing to save yet: no frame has played")
            frames = self.frames
            segments = list(self._segments)
        out.parent.mkdir(parents=True, exist_ok=True)
        listing = self.dir / f"concat-{os.getpid()}-{threading.get_ident()}.txt"
        listing.write_text("".join(f"file '{p.as_posix()}'\n" for p in segments), encoding="utf-8")
        tmp = out.with_name(out.stem + ".partial" + out.suffix)
        import imageio_ffmpeg

        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostats",
               "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-movflags", "+faststart",
               "-f", "mp4", str(tmp)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, start_new_session=True)
        finally:
            listing.unlink(missing_ok=True)
        if res.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            lines = (res.stderr or "").strip().splitlines()
            raise OutputError(f"saving {out} failed: {lines[-1] if lines else 'ffmpeg failed'}")
        os.replace(tmp, out)
        return frames

    def close(self) -> None:
        """Stop recording and remove the temporary folder."""
        with self._lock:
            self._closed = True
            if self._writer is not None:
                self._writer.abort()
                self._writer = None
        shutil.rmtree(self.dir, ignore_errors=True)
