"""MP4 writing with the ffmpeg that imageio-ffmpeg ships, appended frame by frame while a video is generated.

Nothing is published until it is complete:

* frames go to ``NAME.partial.mp4``; `Mp4Writer.close` waits for ffmpeg and checks that it exited
  cleanly and wrote every frame, and only `publish` (after the caller's sidecar is written too)
  renames the file onto ``NAME.mp4``; on any failure the target keeps what it held before and the
  temporary file is removed (`abort`);
* the MP4 is fragmented (an empty ``moov`` first, then self-contained fragments of at most one
  second), so even a file whose writer was killed outright plays up to its last full fragment;
* ffmpeg runs in its own session, so a Ctrl-C in the terminal reaches sfpp only: sfpp then finishes
  the file of the frames done so far (`finish_partial`) instead of ffmpeg dying mid-write. If sfpp
  itself is killed, ffmpeg reads end-of-input and closes the file properly.

Write failures (a full disk, a broken pipe) raise `OutputError` (exit code 1 in the CLI) with ffmpeg's
own message.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import numpy as np

from sfpp.errors import OutputError
from sfpp.interrupts import critical

# libx264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Chosen by `benchmarks/mp4_encoder.py` (results in benchmarks/RESULTS.md): at quality 8 (CRF 10) superfast
# needs about a quarter of medium's CPU time (toy model: 1.35 s instead of 5.3 s per minute of video)
# for no visible loss (PSNR within 0.5 dB and SSIM within 0.002 of medium's) and files 1.1-1.25x
# medium's; ultrafast is faster still but doubles the toy model's files and loses more SSIM on grain.
DEFAULT_PRESET = "superfast"
PARTIAL = ".partial"


def partial_path(path: str | os.PathLike) -> Path:
    """``NAME.mp4`` -> ``NAME.partial.mp4``: where a video is written until it is complete."""
    p = Path(path)
    return p.with_name(p.stem + PARTIAL + p.suffix)


def _crf(quality: float) -> int:
    """imageio-ffmpeg's 0-10 quality scale as libx264's CRF (8 -> 10), the mapping imageio-ffmpeg uses."""
    return int((1 - quality / 10.0) * 51)


class Mp4Writer:
    """Append RGB frames to an H.264 MP4 as they are produced.

    ``quality`` is imageio-ffmpeg's 0-10 scale (8 = libx264 CRF 10). ``preset`` is the libx264
    speed preset (`X264_PRESETS`); the default, superfast, encodes about 4x faster than x264's own
    default (medium) with the same picture quality and files about 1.2x as large (see
    `DEFAULT_PRESET`). ``-tune zerolatency`` is always on: no B-frames, lookahead or
    macroblock-tree, so the same first frames always decode to the same pixels, whatever is
    written after them (streaming, and frames before a prompt switch stay bit-identical).

    Lifecycle: `write` ... then `close()` (= `finish()`, which completes and checks the file under its
    partial name, then `publish()`, which renames it onto the target); a caller with more to write
    first (a sidecar) calls `finish()` and `publish()` itself. `abort()` removes the temporary file;
    `finish_partial()` keeps the frames so far under the partial name (e.g. after Ctrl-C).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, width: int, height: int, quality: float = 8.0,
                 preset: str = DEFAULT_PRESET):
        import imageio_ffmpeg

        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}")
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.fps, self.width, self.height, self.preset = fps, width, height, preset
        self.frames = 0
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.path.parent} ({e.strerror})") from None
        self._lock = _lock(self.tmp, self.path)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostats",
               "-f", "rawvideo", "-vcodec", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", f"{fps}", "-i", "pipe:0", "-an",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(_crf(quality)),
               "-preset", preset, "-tune", "zerolatency",
               "-movflags", "+empty_moov+default_base_moof+frag_keyframe", "-frag_duration", "1000000", "-flush_packets", "1",
               "-f", "mp4", str(self.tmp)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise OutputError(f"cannot start ffmpeg to write {self.path} ({e.strerror})") from None
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self._proc.stderr:
            self._stderr.append(line)

    def _ffmpeg_error(self) -> str:
        self._reader.join(timeout=2)
        text = b"".join(self._stderr).decode("utf-8", "replace").strip().splitlines()
        return text[-1].strip() if text else f"ffmpeg exited with code {self._proc.returncode}"

    def write(self, frames) -> None:
        """Append frames ``(n, H, W, 3)`` uint8 (numpy or torch)."""
        arr = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
        if arr.ndim != 4 or arr.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be (n, {self.height}, {self.width}, 3), got {arr.shape}")
        data = np.ascontiguousarray(arr, dtype=np.uint8)
        with critical():  # Ctrl-C waits until these frames are written and counted: the count stays exact
            try:
                self._proc.stdin.write(data.tobytes())
            except (BrokenPipeError, OSError):
                self._proc.wait()
                raise OutputError(f"writing {self.path} failed: {self._ffmpeg_error()}") from None
            self.frames += len(arr)

    def close(self) -> Path:
        """Finish, check and publish the video; returns its final path."""
        self.finish()
        return self.publish()

    def finish(self) -> Path:
        """Finish the file (still ``NAME.partial.mp4``) and check that ffmpeg wrote it completely."""
        if self._closed:
            return self.tmp
        self._closed = True
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        rc = self._proc.wait()
        if rc != 0 or not self.tmp.is_file() or (self.frames and self.tmp.stat().st_size == 0):
            msg = self._ffmpeg_error() if rc != 0 else f"{self.tmp.name} vanished while it was written"
            self.tmp.unlink(missing_ok=True)
            self._unlock()
            raise OutputError(f"writing {self.path} failed: {msg}")
        return self.tmp

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def publish(self) -> Path:
        """Move the finished file onto its target (atomic rename); call after `finish`."""
        if not self._closed:
            self.finish()
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot move the finished video onto {self.path} ({e.strerror})") from None
        finally:
            self._unlock()
        return self.path

    def finish_partial(self) -> Path | None:
        """Finish the frames written so far as a playable ``NAME.partial.mp4``; None if it failed."""
        try:
            return self.finish() if self.frames else (self.abort() or None)
        except OutputError:
            return None

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary file; the target is untouched."""
        if not self._closed:
            self._closed = True
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung ffmpeg
                self._proc.kill()
                self._proc.wait()
        self.tmp.unlink(missing_ok=True)
        self._unlock()


def _lock(tmp: Path, target: Path) -> int | None:
    """Hold an exclusive lock on the partial file while it is written: a second writer of the same
    video fails at once instead of both clobbering one file. Released when the process ends."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"cannot write {tmp} ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputError(f"another process is writing {target} right now; wait for it or choose another --out") from None
    return fd


def read_mp4(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a whole MP4 into ``(frames, H, W, 3)`` uint8 and its fps (for tests and previews)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = gen.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in gen]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8), float(meta["fps"])
