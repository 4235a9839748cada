"""`sfpp.stream(...)`: watch a video while it is generated, for as long as you like, and steer it.

    import sfpp

    with sfpp.stream("a red circle moving on a black background", model="toy", seed=3) as s:
        for frame, t in s:              # (H, W, 3) uint8 numpy array, its time in seconds
            show(frame)
            if t > 10 and s.prompt.startswith("a red"):
                s.set_prompt("a green square moving on a navy background")   # from the next chunk on

It is `generate`'s own rollout and streaming decode (`sfpp.generation.render_frames`), run on a
worker thread that hands each decoded chunk over to the reader: the worker starts a chunk only
when fewer than ``ahead`` chunks wait to be read, so it never runs further ahead (generation waits
for the reader), and nothing per chunk is kept, so an endless stream's memory is flat.

`set_prompt` is a live switch of the same prompt schedule `generate` uses (`PromptSchedule`): the
cached window is re-encoded under the new prompt at the next chunk, and `schedule` records when
each prompt took effect, so

    sfpp generate "A[0s] | B[t]" --seed S --frames N --rope <stream.spec.rope>

gives the same frames as the first N frames of a stream that switched to B at t (`reproduce_command`).

Without ``seconds`` a stream runs until closed (at most `sfpp.spec.MAX_SECONDS`, a day, like any
video); RoPE is then resolved for that length (``auto`` -> ``relative``, unbounded).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import types
import weakref
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from sfpp.errors import SfppError
from sfpp.spec import MAX_SECONDS, LoadedModel, ResolvedSpec, VideoSpec

__all__ = ["stream", "Stream", "StreamFrame", "check_live_prompt"]


class StreamFrame(NamedTuple):
    """One frame of a stream: ``frame, t = item``."""

    image: np.ndarray  # (H, W, 3) uint8
    t: float  # seconds from the start of the stream


class _Stopped(BaseException):
    """Raised inside the worker to end the rollout when the stream is closed."""


def check_live_prompt(text, *, max_chars: int | None = None) -> str:
    """A prompt for `Stream.set_prompt` (one prompt, not a schedule), stripped; else one clear `SfppError`."""
    from sfpp.prompts import _ANY_MARK

    if not isinstance(text, str) or not text.strip():
        raise SfppError("the prompt is empty; type what the video should show")
    text = " ".join(text.split())  # one line: newlines and tabs would not survive a schedule string
    if max_chars is not None and len(text) > max_chars:
        raise SfppError(f"the prompt is {len(text)} characters long; the limit is {max_chars}")
    if "|" in text or _ANY_MARK.search(text):
        raise SfppError("a live prompt is one prompt: remove '|' and trailing '[...]' (prompt schedules are for "
                        "sfpp generate; here the switch happens when you send it)")
    return text


class _Shared:
    """What the worker and the `Stream` share: a bounded hand-over of decoded chunks, and flags.

    The worker starts a chunk only when the hand-over has room for it (`wait_for_room`), so it never
    holds a finished chunk nobody has room for, and a prompt switch takes effect at most one chunk
    after the ones already queued. The worker holds no reference to the `Stream`, so a stream dropped
    without `close` is collected and its worker stops (``__del__``).
    """

    def __init__(self, schedule, ahead: int):
        self.schedule = schedule
        self.ahead = max(1, int(ahead))
        self.cond = threading.Condition()
        self.items: collections.deque = collections.deque()  # (first frame index, frames (n, H, W, 3))
        self.stopped = False
        self.frames = 0  # frames handed over
        self.waiting = False  # the hand-over is full: the reader is behind, generation waits
        self.error: BaseException | None = None
        self.done = False  # the worker has finished (all frames, an error, or stopped)
        self.cache_ref: weakref.ref | None = None
        self.switches: list[dict] = []  # live switches with the latency to their first frame generated

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for_room(self) -> None:
        """Block while the hand-over is full; raise `_Stopped` once the stream is closed."""
        with self.cond:
            while len(self.items) >= self.ahead and not self.stopped:
                self.waiting = True
                self.cond.wait(0.25)
            self.waiting = False
            if self.stopped:
                raise _Stopped()

    def write(self, frames) -> None:
        """The `render_frames` writer: hand a decoded chunk over (waiting for room)."""
        arr = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
        applied = self.schedule.applied
        now = time.perf_counter()
        while len(self.switches) < len(applied):  # this chunk is the first one under a live switch
            a = applied[len(self.switches)]
            self.switches.append({"prompt": a["text"], "at": a["at"], "latency_s": now - a["requested_at"]})
        self.wait_for_room()
        with self.cond:
            self.items.append((self.frames, arr))
            self.frames += len(arr)
            self.cond.notify_all()

    def take(self, timeout: float | None):
        """The next chunk; None when the worker is done and everything was taken. `TimeoutError` after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not self.items:
                if self.done or self.stopped:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no frame yet: generation is behind")
                self.cond.wait(0.25 if left is None else min(left, 0.25))
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def clear(self) -> None:
        with self.cond:
            self.items.clear()
            self.cond.notify_all()


def _work(shared: _Shared, rs: ResolvedSpec, lm: LoadedModel, device, threads: int) -> None:
    """The stream's worker thread: `generate`'s rollout and decode into the hand-over."""
    from sfpp.generation import new_cache, render_frames, torch_threads, warm_up_compiled

    schedule = shared.schedule

    def text(chunk_index: int, frame_start: int):
        shared.wait_for_room()  # start a chunk only when there is room for it (raises once closed)
        return schedule(chunk_index, frame_start)

    try:
        with torch_threads(threads):
            warm_up_compiled(schedule, rs, lm, device)
            cache = new_cache(rs, lm)
            shared.cache_ref = weakref.ref(cache)
            try:
                render_frames(text, rs, lm, shared, cache=cache, overlap=False)
            finally:
                del cache
    except _Stopped:
        pass
    except BaseException as e:  # noqa: BLE001 - handed to the reader
        shared.error = e
    finally:
        shared.finish()


class Stream:
    """A running stream (see the module docstring). Create it with `sfpp.stream`.

    Attributes: ``spec`` (the `ResolvedSpec`), ``fps``, ``width``, ``height``, ``seed``,
    ``frames_generated``, ``frames_read``, ``waiting`` (generation is waiting for the reader),
    ``switches`` (each live switch: prompt, time it took effect, seconds from `set_prompt` to its
    first frame generated).
    """

    def __init__(self, prompt, rs: ResolvedSpec, lm: LoadedModel, *, ahead: int = 2,
                 max_prompt_chars: int | None = None, threads: int | None = None):
        import torch

        from sfpp.generation import PromptSchedule
        from sfpp.prompts import parse_schedule

        entries = parse_schedule(prompt) if isinstance(prompt, str) else list(prompt)
        self.spec, self.lm = rs, lm
        self.fps, self.width, self.height, self.seed = rs.fps, rs.width, rs.height, rs.seed
        self.max_prompt_chars = max_prompt_chars
        self.frames_read = 0
        self._closed = False
        self._buffer: tuple[int, np.ndarray] | None = None
        self._buffer_pos = 0
        self._device = torch.device(rs.device)
        threads = threads if threads is not None else (rs.threads or torch.get_num_threads())
        self._shared = _Shared(PromptSchedule(entries, rs, lm, self._device), ahead)
        self._thread = threading.Thread(target=_work, args=(self._shared, rs, lm, self._device, threads),
                                        name="sfpp-stream", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ reading
    def read(self, timeout: float | None = None) -> StreamFrame | None:
        """The next frame; None at the end of the stream (or after `close`). Raises the worker's error.

        With `timeout`, raises `TimeoutError` when no frame came in time (generation is behind).
        """
        if self._buffer is None:
            if self._closed:
                return None
            sh = self._shared
            item = sh.take(timeout)
            if item is None:
                if sh.error is not None:
                    err, sh.error = sh.error, None
                    raise err
                return None
            self._buffer, self._buffer_pos = item, 0
        start, arr = self._buffer
        i = self._buffer_pos
        self._buffer_pos += 1
        if self._buffer_pos >= len(arr):
            self._buffer = None
        self.frames_read += 1
        return StreamFrame(arr[i], (start + i) / self.fps)

    def __iter__(self):
        return self

    def __next__(self) -> StreamFrame:
        f = self.read()
        if f is None:
            raise StopIteration
        return f

    # ------------------------------------------------------------------ steering
    def set_prompt(self, text: str) -> str:
        """Switch to `text` from the next chunk generated on (the same KV re-cache as a prompt schedule).

        Returns the prompt as it will be used (whitespace folded). Raises `SfppError` for an empty or
        over-long prompt, a schedule, or a closed stream. Sending the prompt in force changes nothing.
        """
        if self._closed:
            raise SfppError("the stream is closed")
        text = check_live_prompt(text, max_chars=self.max_prompt_chars)
        self._shared.schedule.switch(text)
        return text

    @property
    def prompt(self) -> str:
        """The prompt asked for last (maybe not yet in force)."""
        s = self._shared.schedule
        return s.pending or s.entries[-1].text

    @property
    def pending_prompt(self) -> str | None:
        """A prompt sent with `set_prompt` that no chunk has started under yet."""
        return self._shared.schedule.pending

    @property
    def schedule(self) -> list:
        """The prompt schedule so far: `PromptEntry` items (``at`` = the time it took effect, ``text``)."""
        return list(self._shared.schedule.entries)

    def prompt_at(self, t: float) -> tuple[int, str]:
        """(entry index, prompt) in force for the frame at time `t` (a frame already generated)."""
        from sfpp.prompts import chunk_prompt_index

        entries = self.schedule
        i = chunk_prompt_index(entries, t)
        return i, entries[i].text

    @property
    def switches(self) -> list[dict]:
        return list(self._shared.switches)

    @property
    def chunks_started(self) -> int:
        return self._shared.schedule.chunks_started

    @property
    def frames_generated(self) -> int:
        return self._shared.frames

    @property
    def waiting(self) -> bool:
        """The hand-over is full and the worker waits for the reader (generation waits)."""
        return self._shared.waiting

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def reproduce_command(self, seconds: float | None = None) -> str:
        """The `sfpp generate` command that gives this stream's first `seconds` (default: the frames read)."""
        import shlex

        from sfpp.presets import get_preset
        from sfpp.prompts import schedule_to_string

        rs = self.spec
        frames = max(1, round((seconds if seconds is not None else self.frames_read / self.fps) * self.fps))
        entries = [e for e in self.schedule if e.at * self.fps < frames - 1e-6] or self.schedule[:1]
        cmd = ["sfpp", "generate", schedule_to_string(entries), "--model", rs.model, "--seed", str(rs.seed),
               "--frames", str(frames), "--rope", rs.rope]
        preset = get_preset(rs.model)
        for flag, value, default in (("--fps", rs.fps, preset.fps), ("--height", rs.height, preset.height),
                                     ("--width", rs.width, preset.width)):
            if value != default:
                cmd += [flag, str(value)]
        ro = rs.rollout
        for name, flag in (("chunk_frames", "--chunk-frames"), ("shift", "--shift"), ("window", "--window"),
                           ("sink", "--sink"), ("context_noise", "--context-noise")):
            if rs.sources.get(name) == "flag":
                cmd += [flag, f"{getattr(ro, name):g}"]
        if rs.sources.get("timesteps") == "flag":
            cmd += ["--timesteps", ",".join(f"{t:g}" for t in ro.timesteps)]
        for flag, value in (("--checkpoint", rs.checkpoint), ("--lora", rs.lora)):
            if value:
                cmd += [flag, value]
        if rs.blend_chunks:
            cmd += ["--blend-chunks", str(rs.blend_chunks)]
        return " ".join(shlex.quote(c) for c in cmd)

    # ------------------------------------------------------------------ lifetime
    def stop(self) -> None:
        """Ask the worker to stop at its next chunk boundary or hand-over; returns at once (`close` also waits)."""
        self._shared.stop()

    def close(self, timeout: float | None = 60.0) -> None:
        """Stop generating and release the KV cache, the queued frames and the worker (idempotent).

        Returns once the worker has ended (it stops at its next chunk boundary or hand-over).
        """
        if self._closed:
            return
        self._closed = True
        sh = self._shared
        sh.stop()
        self._thread.join(timeout)
        self._buffer = None
        sh.clear()
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a stream dropped without close(): its worker stops at the next chunk
        shared = getattr(self, "_shared", None)
        if shared is not None:
            shared.stop()


def resolve_stream_spec(spec: VideoSpec, seconds: float | None) -> ResolvedSpec:
    """The `ResolvedSpec` of a stream: `generate`'s for ``seconds``; without it, `MAX_SECONDS` (endless)."""
    from sfpp.spec import resolve_spec

    if seconds is not None:
        return resolve_spec(replace(spec, seconds=seconds, frames=None))
    if spec.frames is not None or spec.seconds is not None:
        return resolve_spec(spec)
    return resolve_spec(replace(spec, seconds=float(MAX_SECONDS)))


def stream(
    prompt,
    *,
    seconds: float | None = None,
    spec: VideoSpec | None = None,
    loaded: LoadedModel | None = None,
    ahead: int = 2,
    max_prompt_chars: int | None = None,
    **overrides,
) -> Stream:
    """Start generating a video to be read as it is made; returns a `Stream` (iterate it, `set_prompt`, `close`).

    Args:
        prompt: the text prompt, or a prompt schedule ``"A[0s] | B[20s]"`` (as for `generate`).
        seconds: stop after this long (default: run until closed; at most a day).
        spec: a `VideoSpec`; keyword overrides (``model="toy", checkpoint=..., seed=3, ...``) apply on top.
        loaded: an already loaded model (`sfpp.spec.load_model`), e.g. to restart streams without reloading.
        ahead: decoded chunks the worker may hold ready before it waits for the reader (>= 1).
        max_prompt_chars: cap on `Stream.set_prompt` prompts.

    With the same seed and settings, a stream of N seconds gives the frames of
    ``generate(prompt, seconds=N)``, and a live switch at t those of ``generate("A[0s] | B[t]")``.
    """
    from sfpp.generation import check_schedule
    from sfpp.prompts import parse_schedule
    from sfpp.spec import emit_warnings, load_model

    if isinstance(prompt, str) or prompt is None:
        if prompt is None or not prompt.strip():
            raise SfppError("the prompt is empty; pass a text prompt, e.g. sfpp.stream(\"a red kite over a beach\")")
        entries = parse_schedule(prompt)
    else:
        entries = list(prompt)
    if max_prompt_chars is not None:
        for e in entries:
            check_live_prompt(e.text, max_chars=max_prompt_chars)
    if ahead is None or int(ahead) < 1:
        raise SfppError(f"ahead must be at least 1 chunk, got {ahead}")
    rs = resolve_stream_spec(replace(spec or VideoSpec(), **overrides), seconds)
    check_schedule(entries, rs)
    if loaded is None:
        emit_warnings(rs)
        from sfpp.generation import torch_threads

        with torch_threads(rs.threads):
            loaded = load_model(rs)
        from sfpp.spec import emit_prompt_warnings

        emit_prompt_warnings(loaded, [e.text for e in entries])
    return Stream(entries, rs, loaded, ahead=ahead, max_prompt_chars=max_prompt_chars)


class _CallableModule(types.ModuleType):
    """``sfpp.stream`` is this module once anything imported it (``from sfpp.stream import Stream``), and
    the `stream` function when `sfpp.__getattr__` got there first: either way ``sfpp.stream(...)`` works."""

    def __call__(self, *args, **kwargs) -> Stream:
        return stream(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
