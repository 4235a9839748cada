"""`sfpp.generate(...)`: prompt -> streaming rollout -> streaming VAE decode -> MP4 + JSON sidecar.

Memory does not grow with video length: latents are decoded and written chunk by chunk and
nothing per-chunk is kept (the rolling KV cache and the VAE feature cache have fixed size).

Decoding and writing go through `DecodeWriter`, which can run them on a worker thread (and, on
CUDA, a second stream) behind a bounded queue, so chunk k is decoded and encoded to H.264 while
chunk k+1 is denoised. The frames written are the same either way (tested).

`render_frames` is the one rollout + decode of a video, writing frames to any writer: the MP4 for
`generate`, a bounded hand-over for `sfpp.stream` (which steers it live through `PromptSchedule`).
"""

from __future__ import annotations

import json
import os
import platform
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from sfpp._version import __version__
from sfpp.errors import OutputError, SfppError
from sfpp.interrupts import Interrupted, interruptible
from sfpp.noise import SeededNoise
from sfpp.presets import get_preset
from sfpp.rollout import ChunkResult, rollout
from sfpp.spec import (
    LoadedModel,
    ResolvedSpec,
    VideoSpec,
    check_output_path,
    emit_prompt_warnings,
    emit_warnings,
    load_model,
    resolve_spec,
)
from sfpp.text import encode_prompts
from sfpp.vae_stream import StreamingDecoder, to_uint8_frames
from sfpp.video import Mp4Writer

ProgressFn = Callable[[int, int], None]  # (frames written, frames total)


@dataclass
class GenerateResult:
    path: Path
    sidecar: Path
    num_frames: int
    fps: int
    seconds_total: float
    frames_per_second: float


def sidecar_path(video: Path) -> Path:
    """``NAME.mp4`` -> ``NAME.json``."""
    return video.with_suffix(".json")


def write_json_atomic(path: Path, data) -> None:
    """Write JSON through a temporary file and a rename: the target keeps its old content on any failure."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_synced(tmp, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {path} failed ({e.strerror or e})") from None


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def publish(writer: Mp4Writer, side: Path, data: dict) -> None:
    """Publish a finished video and its sidecar together: both, or neither (the targets keep what they held).

    The writer must be finished (`Mp4Writer.finish`). The sidecar is written to a temporary file first;
    only when that succeeded are the video and then the sidecar renamed into place.
    """
    tmp = side.with_name(side.name + ".tmp")
    try:
        _write_synced(tmp, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        writer.abort()
        raise OutputError(f"writing {side} failed ({e.strerror or e}); nothing was replaced") from None
    try:
        writer.publish()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        os.replace(tmp, side)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {side} failed ({e.strerror or e})") from None


def default_out_path(prompt: str, seed: int) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in prompt.lower()).strip("-")
    slug = "-".join(p for p in slug.split("-") if p)[:48] or "video"
    return Path("outputs") / f"{slug}-s{seed}.mp4"


def generate(
    prompt: str,
    *,
    out: str | os.PathLike | None = None,
    spec: VideoSpec | None = None,
    progress: ProgressFn | None = None,
    loaded: LoadedModel | None = None,
    **overrides,
) -> GenerateResult:
    """Generate one video and write it as an MP4 with a JSON sidecar.

    Args:
        prompt: the text prompt.
        out: output ``.mp4`` path (default ``outputs/<prompt-slug>-s<seed>.mp4``).
        spec: a `VideoSpec`; keyword overrides (``seconds=60, seed=3, model="debug"``, ...)
            are applied on top of it.
        progress: called with (frames written, frames total) after each chunk.
        loaded: an already loaded model (`sfpp.spec.load_model`), to make several videos without reloading.

    Returns:
        `GenerateResult` with the paths and timings.
    """
    from sfpp.prompts import parse_schedule

    if isinstance(prompt, str) or prompt is None:
        if prompt is None or not prompt.strip():
            raise SfppError("the prompt is empty; pass a text prompt, e.g. sfpp generate \"a red kite over a beach\"")
        entries = parse_schedule(prompt)
    else:
        entries = list(prompt)
    prompt = entries if len(entries) > 1 else entries[0].text
    slug_text = entries[0].text
    spec = replace(spec or VideoSpec(), **overrides)
    rs = resolve_spec(spec)
    check_schedule(entries, rs)
    if loaded is None:  # a caller that passes a loaded model has resolved (and shown) these already
        emit_warnings(rs)
    if out is not None and not str(out).strip():
        raise SfppError("--out is empty; give a file name ending in .mp4")
    out_path = check_output_path(Path(out) if out is not None else default_out_path(slug_text, rs.seed), suffix=".mp4")
    with torch_threads(rs.threads), interruptible():
        t0 = time.perf_counter()
        lm = loaded or load_model(rs)
        t_load = time.perf_counter() - t0
        emit_prompt_warnings(lm, [e.text for e in entries])
        out_path.parent.mkdir(parents=True, exist_ok=True)
        timings, writer = _generate_into(prompt, rs, lm, out_path, progress)
        timings["load_s"] = t_load
        total = time.perf_counter() - t0
        side = sidecar_path(out_path)
        publish(writer, side, _sidecar(prompt, rs, lm, timings, total))
    return GenerateResult(out_path, side, rs.num_frames, rs.fps, total, rs.num_frames / max(timings["generate_s"], 1e-9))


def chunk_start_seconds(rs: ResolvedSpec) -> list[float]:
    """Video time at which each chunk of a generation starts (where a prompt switch can take effect)."""
    codec = get_preset(rs.model).codec
    return [codec.pixel_frames(f0) / rs.fps if f0 else 0.0 for f0 in range(0, rs.latent_frames, rs.chunk_frames)]


def check_schedule(entries, rs: ResolvedSpec) -> None:
    """A prompt schedule whose switches all take effect inside this video (else one clear error)."""
    from sfpp.prompts import check_schedule_fits

    check_schedule_fits(list(entries), chunk_start_seconds(rs), rs.seconds)


class torch_threads:
    """Run a block with `n` torch CPU threads (None: leave the setting alone); restores the old value."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self):
        if self.n is not None:
            self.old = torch.get_num_threads()
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            torch.set_num_threads(self.old)


def process_seconds() -> float | None:
    """Wall seconds since this process started (imports included), or None where it cannot be read."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - optional information
        return None


class DecodeWriter:
    """Decode latent chunks with a `StreamingDecoder` and append their frames to a writer.

    Args:
        decoder: the video's `StreamingDecoder`.
        writer: anything with ``write(frames (n, H, W, 3) uint8)`` and a ``frames`` count (`Mp4Writer`).
        num_frames: pixel frames wanted; frames decoded past it are dropped.
        overlap: decode and write on a worker thread behind a queue of ``max_pending`` chunks,
            overlapping the caller's next chunk (on CUDA the worker uses its own stream and waits
            on an event recorded when the chunk was submitted). False: decode inside `submit`.
        progress: called with (frames written, frames total) after each chunk.

    Timings (``perf_counter`` seconds): ``first_frame_at`` (first frame handed to the writer),
    ``done_at`` (per chunk, when its frames were written), ``decode_write_s`` (per chunk).
    Errors raised by the worker are re-raised by the next `submit` or by `close`.
    """

    def __init__(self, decoder: StreamingDecoder, writer, *, num_frames: int, overlap: bool = False,
                 max_pending: int = 2, progress: ProgressFn | None = None):
        self.decoder, self.writer, self.num_frames = decoder, writer, num_frames
        self.progress = progress
        self.overlap = overlap
        self.first_frame_at: float | None = None
        self.done_at: list[float] = []
        self.decode_write_s: list[float] = []
        self._chunks = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stream = None
        if overlap:
            self._queue = queue.Queue(maxsize=max(1, max_pending))
            self._thread = threading.Thread(target=self._work, name="sfpp-decode", daemon=True)
            self._thread.start()

    def submit(self, z: torch.Tensor) -> None:
        """Hand over the next latent chunk ``(1, C, f, H, W)`` (blocks while the queue is full)."""
        self._raise_pending()
        first = self._chunks == 0
        self._chunks += 1
        if self._queue is None:
            self._decode_write(z, first)
            return
        event = None
        if z.is_cuda:  # the worker's stream must wait for the kernels that produced z
            event = torch.cuda.Event()
            event.record()
        while True:
            try:
                self._queue.put((z, first, event), timeout=0.5)
                return
            except queue.Full:
                self._raise_pending()

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for every submitted chunk to be written; re-raise a worker error."""
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._thread.join()
            self._thread = None
        if raise_errors:
            self._raise_pending()
        else:
            self._error = None

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _work(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self._error is not None:
                    continue  # drain after a failure; the caller sees the error
                z, first, event = item
                if event is not None:
                    if self._stream is None:
                        self._stream = torch.cuda.Stream(device=z.device)
                    with torch.cuda.stream(self._stream):
                        self._stream.wait_event(event)
                        z.record_stream(self._stream)
                        self._decode_write(z, first)
                else:
                    self._decode_write(z, first)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self._error = e
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self._queue.get_nowait() is None:
                        return
                except queue.Empty:
                    return

    def _decode_write(self, z: torch.Tensor, first: bool) -> None:
        t = time.perf_counter()
        with torch.inference_mode():
            # The VAE's first call must be exactly one latent frame (it decodes to one pixel frame).
            parts = [z[:, :, :1], z[:, :, 1:]] if first else [z]
            for part in parts:
                if part.shape[2] == 0:
                    continue
                video = self.decoder.decode(part)  # (1, 3, frames, H, W)
                remaining = self.num_frames - self.writer.frames
                if remaining > 0:
                    frames = to_uint8_frames(video[0])[:remaining]  # (n, H, W, 3) uint8, on CPU
                    self.writer.write(frames)
                    if self.first_frame_at is None:
                        self.first_frame_at = time.perf_counter()
        now = time.perf_counter()
        self.decode_write_s.append(now - t)
        self.done_at.append(now)
        if self.progress is not None:
            self.progress(self.writer.frames, self.num_frames)


class PromptSchedule:
    """Per-chunk text contexts of a prompt schedule: ``schedule(chunk_index, frame_start) -> TextContext``.

    The callable `rollout` takes as its text: when it returns a new context object, the cached window
    is re-encoded under it (`sfpp.rollout.recache`). A switch takes effect at the first chunk that
    starts at or after its time; with ``rs.blend_chunks`` the embedding is blended from the old to
    the new prompt over that many chunks.

    Live switches (`switch`, what `sfpp.stream` uses): the new prompt takes effect at the next chunk
    whose context is asked for; it is recorded in `entries` at that chunk's start time (so the entries
    always say which prompt was in force when, and ``sfpp generate`` with them gives the same frames).
    A live switch cancels entries planned for later. Only the contexts still usable are kept (the
    current entry's and, for blending, the one before it), so an endless stream's memory stays flat.
    """

    def __init__(self, entries, rs: ResolvedSpec, lm: LoadedModel, device):
        self.entries = list(entries)
        self.rs, self.lm, self.device = rs, lm, device
        self.codec = get_preset(rs.model).codec  # frame arithmetic
        self.blend = max(0, int(rs.blend_chunks))
        self._emb: dict[int, torch.Tensor] = {}
        self._contexts: dict[int, object] = {}
        self._blended: dict[tuple[int, int], object] = {}
        self._first: dict[int, int] = {}  # entry index -> first chunk it is in force (live switches)
        self._lock = threading.Lock()
        self._pending: tuple[str, float] | None = None
        self.current = 0  # entry index in force for the last chunk asked for
        self.chunks_started = 0
        self.applied: list[dict] = []  # live switches: {"index", "text", "chunk", "at", "requested_at"}
        emb = self._encode([e.text for e in self.entries])
        for i in range(len(self.entries)):
            self._emb[i] = emb[i : i + 1]
            self._contexts[i] = self._context(self._emb[i])

    def _encode(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return encode_prompts(self.lm.tokenizer, self.lm.text_encoder, texts, max_length=self.rs.text_len,
                                  device=self.device)

    def _context(self, emb: torch.Tensor):
        student = self.lm.student
        with torch.no_grad():
            return student.encode_text(emb.to(student.dtype))

    def switch(self, text: str) -> None:
        """Switch to `text` at the next chunk (thread-safe; a later call before that chunk wins)."""
        with self._lock:
            self._pending = (text, time.perf_counter())

    @property
    def pending(self) -> str | None:
        p = self._pending
        return None if p is None else p[0]

    def _apply_pending(self, chunk_index: int, seconds: float) -> None:
        from sfpp.prompts import PromptEntry, chunk_prompt_index

        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        text, requested = pending
        i = chunk_prompt_index(self.entries, seconds)
        # planned entries that have not taken effect yet are replaced by the live switch
        for j in range(i + 1, len(self.entries)):
            self._drop(j)
        del self.entries[i + 1 :]
        if text == self.entries[i].text:
            return
        emb = self._encode([text])
        if self.entries[i].at >= seconds - 1e-9:  # nothing generated under entry i yet: replace it
            self.entries[i] = PromptEntry(self.entries[i].at, text)
            self._drop(i)
            idx = i
        else:
            self.entries.append(PromptEntry(seconds, text))
            idx = len(self.entries) - 1
        self._emb[idx], self._contexts[idx] = emb, self._context(emb)
        self._first[idx] = chunk_index
        self.applied.append({"index": idx, "text": text, "chunk": chunk_index, "at": self.entries[idx].at,
                             "requested_at": requested})

    def _drop(self, i: int) -> None:
        self._emb.pop(i, None)
        self._contexts.pop(i, None)
        for key in [k for k in self._blended if k[0] == i]:
            del self._blended[key]

    def __call__(self, chunk_index: int, frame_start: int):
        from sfpp.prompts import chunk_prompt_index

        rs, codec = self.rs, self.codec
        seconds = codec.pixel_frames(frame_start) / rs.fps if frame_start else 0.0
        self._apply_pending(chunk_index, seconds)
        self.chunks_started += 1
        i = chunk_prompt_index(self.entries, seconds)
        if i != self.current:
            self.current = i
            for j in [j for j in self._contexts if j < i - 1]:  # never asked for again: time only moves on
                self._drop(j)
        if self.blend == 0 or i == 0:
            return self._contexts[i]
        # chunks since the switch took effect: blend old -> new over `blend` chunks
        if i not in self._first:
            self._first[i] = next(c for c in range(chunk_index + 1)
                                  if chunk_prompt_index(self.entries, codec.pixel_frames(c * rs.chunk_frames) / rs.fps)
                                  == i)
        k = chunk_index - self._first[i]
        if k >= self.blend:
            return self._contexts[i]
        key = (i, k)
        if key not in self._blended:
            w = (k + 1) / (self.blend + 1)
            self._blended[key] = self._context((1 - w) * self._emb[i - 1] + w * self._emb[i])
        return self._blended[key]


def _text_schedule(prompt, rs: ResolvedSpec, lm: LoadedModel, device):
    """A `TextContext` for a plain prompt, or a per-chunk `PromptSchedule` for a prompt schedule."""
    from sfpp.prompts import parse_schedule

    entries = parse_schedule(prompt) if isinstance(prompt, str) else list(prompt)
    schedule = PromptSchedule(entries, rs, lm, device)
    return schedule if len(entries) > 1 else schedule._contexts[0]


def new_cache(rs: ResolvedSpec, lm: LoadedModel):
    """The rolling KV cache of one video (an inference tensor, as in `fastpath.warm_up` and `bench`)."""
    with torch.inference_mode():
        return lm.student.new_cache(rs.cache, batch_size=1, latent_hw=(rs.latent_height, rs.latent_width))


def warm_up_compiled(text, rs: ResolvedSpec, lm: LoadedModel, device) -> dict | None:
    """With ``rs.fast.compile``: compile every (context, chunk) shape on throw-away noise, once per model."""
    student = lm.student
    if not student.compiled or getattr(student, "_sfpp_warm", False):
        return None
    from sfpp.fastpath import warm_up

    first = text(0, 0) if callable(text) else text  # a prompt schedule: its first prompt
    warm = warm_up(student, first, rs.rollout, rs.cache, latent_hw=(rs.latent_height, rs.latent_width),
                   total_frames=rs.latent_frames, decoder=lm.codec.stream(), device=device)
    student._sfpp_warm = True
    return warm


def render_frames(text, rs: ResolvedSpec, lm: LoadedModel, writer, *, progress: ProgressFn | None = None,
                  hook: Callable[[ChunkResult], None] | None = None, cache=None, overlap: bool | None = None) -> dict:
    """The one rollout + streaming decode of a video: every chunk's frames go to ``writer.write`` in order.

    `text` is a `TextContext` or a schedule (`PromptSchedule`); `writer` is anything with
    ``write(frames (n, H, W, 3) uint8)`` and a ``frames`` count: `Mp4Writer` for `generate`, a
    bounded hand-over queue for `sfpp.stream`. ``rs.num_frames`` frames are delivered; nothing per
    chunk is kept. Returns the timings. Errors raised by the writer (or `hook`) stop the rollout
    and are re-raised after the decoder is shut down.
    """
    device = torch.device(rs.device)
    student = lm.student
    noise = SeededNoise(rs.seed, channels=student.in_channels, height=rs.latent_height, width=rs.latent_width,
                        device=device)
    sink = DecodeWriter(lm.codec.stream(), writer, num_frames=rs.num_frames,
                        overlap=bool(rs.fast.overlap if overlap is None else overlap), progress=progress)
    chunk_times: list[float] = []
    t_start = time.perf_counter()

    def on_chunk(c: ChunkResult) -> None:
        if hook is not None:
            hook(c)
        chunk_times.append(c.seconds)
        sink.submit(c.x0)

    try:
        with torch.inference_mode():  # the cache is an inference tensor, as in `fastpath.warm_up` and `bench`
            if cache is None:
                cache = new_cache(rs, lm)
            rollout(student, text, noise, cache, num_frames=rs.latent_frames, chunk_frames=rs.chunk_frames,
                    timesteps=rs.timesteps, context_noise=rs.context_noise, on_chunk=on_chunk, keep=False)
    except BaseException:
        sink.close(raise_errors=False)  # the rollout's error is the one to report
        raise
    sink.close()
    gen_s = time.perf_counter() - t_start
    return {
        "generate_s": gen_s,
        "time_to_first_frame_s": None if sink.first_frame_at is None else sink.first_frame_at - t_start,
        "frames_per_second": rs.num_frames / max(gen_s, 1e-9),
        "chunk_denoise_s": chunk_times,
        "chunk_decode_write_s": sink.decode_write_s,
        "decode_overlapped": sink.overlap,
        "torch_threads": torch.get_num_threads(),
    }


def _generate_into(prompt: str, rs: ResolvedSpec, lm: LoadedModel, out_path: Path, progress: ProgressFn | None,
                   hook: Callable[[ChunkResult], None] | None = None) -> tuple[dict, Mp4Writer]:
    """Run the rollout, decoding and writing each chunk (`render_frames`); `hook` sees every finished chunk too.

    Returns the timings and the finished (checked, not yet published) writer: the caller publishes
    the video together with its sidecar (`publish`). Interrupted (Ctrl-C, SIGTERM): the frames done
    so far are finished as ``NAME.partial.mp4`` with a ``NAME.partial.json`` sidecar saying so
    (``partial: true``, frames written, reason), and `Interrupted` is raised with them in ``kept``.
    Any other failure removes the temporary file; the target keeps what it held.

    Decoding/writing overlaps the next chunk's denoising when ``rs.fast.overlap`` (GPUs by default).
    With ``rs.fast.compile`` every (context, chunk) shape is compiled first, on throw-away noise,
    and that warm-up is reported on its own (``compile_warmup``), outside the video's timings.
    """
    device = torch.device(rs.device)
    text = _text_schedule(prompt, rs, lm, device)
    warm = warm_up_compiled(text, rs, lm, device)
    writer = Mp4Writer(out_path, fps=rs.fps, width=rs.width, height=rs.height)
    t_start = time.perf_counter()
    try:
        timings = render_frames(text, rs, lm, writer, progress=progress, hook=hook)
        if writer.frames != rs.num_frames:  # pragma: no cover - guarded by resolve_spec's arithmetic
            raise RuntimeError(f"wrote {writer.frames} frames, expected {rs.num_frames}")
        writer.finish()
    except (Interrupted, KeyboardInterrupt) as e:
        stop = e if isinstance(e, Interrupted) else Interrupted(2)
        _keep_partial(prompt, rs, lm, writer, stop, time.perf_counter() - t_start)
        raise stop from None
    except BaseException:
        writer.abort()
        raise
    timings["generate_s"] = time.perf_counter() - t_start  # the MP4's finish included, as before
    timings["frames_per_second"] = rs.num_frames / max(timings["generate_s"], 1e-9)
    timings["compile_warmup"] = warm
    return {k: timings[k] for k in ("generate_s", "time_to_first_frame_s", "frames_per_second", "chunk_denoise_s",
                                    "chunk_decode_write_s", "decode_overlapped", "compile_warmup",
                                    "torch_threads")}, writer


def _keep_partial(prompt, rs: ResolvedSpec, lm: LoadedModel, writer: Mp4Writer, stop: Interrupted,
                  seconds: float) -> None:
    """Finish the frames written so far as ``NAME.partial.mp4`` + ``NAME.partial.json`` (best effort)."""
    kept = writer.finish_partial()
    stop.frames = writer.frames if kept is not None else 0
    if kept is None:
        return
    data = _sidecar(prompt, rs, lm, {"generate_s": seconds, "torch_threads": torch.get_num_threads()}, seconds)
    data.update(partial=True, num_frames=writer.frames, seconds=writer.frames / rs.fps, frames_planned=rs.num_frames,
                interrupted_by=stop.reason)
    side = sidecar_path(kept)
    try:
        write_json_atomic(side, data)
        stop.kept = [kept, side]
    except OutputError:
        stop.kept = [kept]


def _sidecar(prompt, rs: ResolvedSpec, lm: LoadedModel, timings: dict, total: float) -> dict:
    from sfpp.prompts import schedule_to_string

    schedule = None
    if not isinstance(prompt, str):  # a prompt schedule
        schedule = [{"at_s": e.at, "text": e.text} for e in prompt]
        prompt = schedule_to_string(prompt)
    return {
        "prompt": prompt,
        "prompt_schedule": schedule,
        "seed": rs.seed,
        "model": rs.model,
        "fps": rs.fps,
        "num_frames": rs.num_frames,
        "seconds": rs.seconds,
        "height": rs.height,
        "width": rs.width,
        "weights": lm.source,
        "checkpoint": rs.checkpoint,
        "checkpoint_sha256": lm.checkpoint_sha256,
        "weights_sha256": lm.weights_sha256,
        "fast_paths_applied": lm.fast_paths,
        "config": rs.to_dict(),
        "timings": {**timings, "total_s": total, "process_s": process_seconds()},
        "sfpp_version": __version__,
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "created_unix": time.time(),
    }
