"""`sfpp.stream`: the frames of `generate`, live prompt switches at the next chunk, flat memory, clean close."""

from __future__ import annotations

import gc
import shlex
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import sfpp
from sfpp.errors import SfppError
from sfpp.prompts import PromptEntry
from sfpp.spec import VideoSpec, load_model, resolve_spec

RED = "a red circle moving on a black background"
GREEN = "a green square moving on a black background"
runner = CliRunner()


class CaptureWriter:
    """Stands in for `Mp4Writer` inside `generate`: keeps the raw frames handed to it."""

    last: "CaptureWriter | None" = None

    def __init__(self, path, *, fps, width, height, **_):
        self.path, self.frames, self.chunks = path, 0, []
        CaptureWriter.last = self

    def write(self, frames):
        arr = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
        self.chunks.append(arr.copy())
        self.frames += len(arr)

    def finish(self):
        return self.path

    def publish(self):
        return self.path

    def finish_partial(self):
        return None

    def abort(self):
        pass

    @property
    def video(self) -> np.ndarray:
        return np.concatenate(self.chunks)


@pytest.fixture(scope="module")
def toy():
    rs = resolve_spec(VideoSpec(model="toy", seconds=1))
    return load_model(rs)


def generated_frames(monkeypatch, tmp_path, prompt, **kw) -> np.ndarray:
    """The frames `sfpp.generate` hands to its MP4 writer."""
    import sfpp.generation as generation

    monkeypatch.setattr(generation, "Mp4Writer", CaptureWriter)
    generation.generate(prompt, out=tmp_path / "g.mp4", **kw)
    return CaptureWriter.last.video


def read_all(s, limit=None) -> tuple[np.ndarray, list[float]]:
    frames, times = [], []
    for f, t in s:
        frames.append(f.copy())
        times.append(t)
        if limit is not None and len(frames) >= limit:
            break
    return np.stack(frames), times


def test_a_stream_of_n_seconds_is_generate_frame_for_frame(monkeypatch, tmp_path, toy):
    with sfpp.stream(RED, model="toy", seed=5, seconds=3, loaded=toy) as s:
        assert (s.width, s.height, s.fps) == (256, 256, 16)
        frames, times = read_all(s)
        assert s.read() is None  # the end
    assert frames.shape == (48, 256, 256, 3) and frames.dtype == np.uint8
    assert times == [i / 16 for i in range(48)]
    want = generated_frames(monkeypatch, tmp_path, RED, model="toy", seed=5, seconds=3, loaded=toy)
    assert np.array_equal(frames, want)
    # an initial schedule is generate's schedule
    sched = f"{RED}[0s] | {GREEN}[1.5s]"
    with sfpp.stream(sched, model="toy", seed=5, seconds=3, loaded=toy) as s:
        frames, _ = read_all(s)
    assert np.array_equal(frames, generated_frames(monkeypatch, tmp_path, sched, model="toy", seed=5, seconds=3,
                                                   loaded=toy))
    assert not np.array_equal(frames[24:], want[24:]) and np.array_equal(frames[:24], want[:24])


def wait_until(cond, timeout=30.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("blend", [0, 2])
def test_set_prompt_switches_at_the_next_chunk_as_a_schedule_would(monkeypatch, tmp_path, toy, blend):
    # endless (no seconds): RoPE resolves to relative, as for any video past the RoPE table
    with sfpp.stream(RED, model="toy", seed=2, ahead=1, loaded=toy, blend_chunks=blend) as s:
        assert s.spec.rope == "relative"
        first, _ = read_all(s, limit=10)
        wait_until(lambda: s.waiting)  # the worker holds a finished chunk: nothing else starts
        started = s.chunks_started
        assert s.set_prompt(f"  {GREEN}\n") == GREEN and s.prompt == GREEN
        rest, times = read_all(s, limit=86)
        at = started * 6 / 16  # chunks of 3 latent = 6 pixel frames at 16 fps
        assert s.schedule == [PromptEntry(0.0, RED), PromptEntry(at, GREEN)]
        assert s.prompt_at(at - 1 / 16) == (0, RED) and s.prompt_at(at) == (1, GREEN)
        (sw,) = s.switches
        assert sw["at"] == at and sw["prompt"] == GREEN and 0 < sw["latency_s"] < 30
        cmd = s.reproduce_command()
    frames = np.concatenate([first, rest])
    assert times[-1] == 95 / 16
    want = generated_frames(monkeypatch, tmp_path, f"{RED}[0s] | {GREEN}[{at:g}s]", model="toy", seed=2, frames=96,
                            rope="relative", blend_chunks=blend, loaded=toy)
    assert np.array_equal(frames, want)
    assert f"[{at:g}s]" in cmd and "--frames 96" in cmd and "--rope relative" in cmd
    assert ("--blend-chunks 2" in cmd) == bool(blend)


def test_the_reproduce_command_gives_the_same_video(tmp_path, toy):
    """`sfpp generate` with the command a stream reports writes the MP4 of the stream's frames."""
    from sfpp.cli.main import app
    from sfpp.video import Mp4Writer, read_mp4

    with sfpp.stream(RED, model="toy", seed=7, ahead=1, loaded=toy) as s:
        w = Mp4Writer(tmp_path / "stream.mp4", fps=16, width=256, height=256)
        for f, t in s:
            w.write(f[None])
            if t == 1.0:
                s.set_prompt(GREEN)
            if w.frames == 40:
                break
        w.close()
        cmd = shlex.split(s.reproduce_command())
    assert cmd[:2] == ["sfpp", "generate"] and len(s.schedule) == 2
    r = runner.invoke(app, cmd[1:] + ["--out", str(tmp_path / "gen.mp4")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(read_mp4(tmp_path / "stream.mp4")[0], read_mp4(tmp_path / "gen.mp4")[0])


def test_close_frees_the_cache_and_ends_the_worker(toy):
    s = sfpp.stream(RED, model="toy", seed=1, loaded=toy)
    f, t = next(s)
    assert f.shape == (256, 256, 3) and t == 0.0
    wait_until(lambda: s._shared.cache_ref is not None)
    ref = s._shared.cache_ref
    assert ref() is not None and s.running
    s.close()
    assert not s.running and s.closed
    gc.collect()
    assert ref() is None, "the KV cache outlived close()"
    assert s.read() is None and list(s) == []
    with pytest.raises(SfppError, match="closed"):
        s.set_prompt(GREEN)
    s.close()  # idempotent
    # a stream dropped without close() stops too
    dropped = sfpp.stream(RED, model="toy", seed=1, loaded=toy)
    next(dropped)
    thread = dropped._thread
    del dropped
    gc.collect()
    thread.join(30)
    assert not thread.is_alive()


def test_generation_waits_for_the_reader_and_memory_stays_flat(toy):
    """A reader that stops reading blocks the worker (nothing piles up); many switches keep two contexts."""
    with sfpp.stream(RED, model="toy", seed=1, ahead=2, loaded=toy) as s:
        next(s)
        wait_until(lambda: s.waiting)
        held = s.frames_generated
        time.sleep(0.5)
        assert s.frames_generated == held <= 6 * 3  # the chunk being read + 2 queued
        colours = ["green", "blue", "yellow", "magenta", "cyan", "orange"]
        for i in range(12):
            s.set_prompt(f"a {colours[i % 6]} square moving on a black background")
            for _ in range(7):
                next(s)
        sched = s._shared.schedule
        while sched.pending is not None:
            next(s)
        assert len(sched._contexts) <= 2 and len(sched._emb) <= 2
        assert len(s.schedule) >= 3


def test_live_prompts_are_checked(toy):
    with sfpp.stream(RED, model="toy", seed=1, loaded=toy, max_prompt_chars=60) as s:
        for bad, msg in (("", "empty"), ("   ", "empty"), ("x" * 61, "61 characters long; the limit is 60"),
                         ("a[0s] | b[2s]", "one prompt"), ("a red circle[3s]", "one prompt")):
            with pytest.raises(SfppError, match=msg):
                s.set_prompt(bad)
        assert s.prompt == RED
    with pytest.raises(SfppError, match="empty"):
        sfpp.stream("  ", model="toy", loaded=toy)
    with pytest.raises(SfppError, match="the limit is 10"):
        sfpp.stream(RED, model="toy", loaded=toy, max_prompt_chars=10)


def test_a_worker_error_reaches_the_reader(monkeypatch, toy):
    from sfpp import generation

    def broken(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(generation, "render_frames", broken)
    with sfpp.stream(RED, model="toy", loaded=toy) as s, pytest.raises(RuntimeError, match="decoder exploded"):
        next(s)
