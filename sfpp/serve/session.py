"""One page's session: a `sfpp.stream` played to a WebSocket at the video's frame rate.

Messages (JSON text unless said otherwise)

page -> server: ``start`` {prompt, seed?}, ``prompt`` {text}, ``pause``, ``resume``,
``restart`` {seed?}, ``save``, ``ack`` (one per frame drawn).

server -> page: ``hello`` (sizes, limits), ``started`` {seed, prompt}, binary frames (a 20-byte
header `FRAME_HEADER`: magic ``SFPF``, frame index and prompt index (uint32 LE), time in seconds
(float64 LE); then a JPEG),
``status`` (about twice a second: time, frames generated / sent / drawn / dropped, the state in
words, the schedule), ``prompt_queued``, ``saved`` {mp4, json}, ``error`` {message}, ``end``
{reason}, ``busy`` {message}.

Pacing: frame k of a stream is due ``k / fps`` seconds after playback (re)started; the loop
reads the next frame from the stream (the worker runs at most ``ahead`` chunks ahead, then
waits), sleeps until it is due and hands it to the sender. At most `MAX_IN_FLIGHT` frames may
be sent and not yet acknowledged by the page; beyond that the frame is dropped (``drop``) or
playback waits for the page, and generation with it (``wait``). Playback that falls behind
(generation slower than real time, or a wait) re-bases its clock instead of bursting to catch up.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from sfpp.errors import SfppError

MAX_IN_FLIGHT = 8  # frames sent but not yet drawn by the page (half a second at 16 fps)
FRAME_HEADER = struct.Struct("<4sIId")  # magic, frame index, prompt index, time (s)
MAGIC = b"SFPF"
JPEG_QUALITY = 90
STATUS_EVERY_S = 0.5
LATE_S = 0.5  # a frame this late re-bases the playback clock
MAX_OUTBOX = 64  # control messages queued for a page that does not read: past this it is disconnected


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _close_quietly(stream, recorder) -> None:
    """Close a stream (waits for its worker) and then a recorder; either may be None."""
    try:
        if stream is not None:
            stream.close()
    finally:
        if recorder is not None:
            recorder.close()


class Session:
    """Runs one page's stream. Created by the app once the page's WebSocket was accepted."""

    def __init__(self, app_state, websocket):
        self.app = app_state  # sfpp.serve.app.AppState
        self.ws = websocket
        self.cfg = app_state.config
        self.stream = None
        self.recorder = None
        self.seed: int | None = None
        self.paused = False
        self._resume = asyncio.Event()
        self._acked = asyncio.Event()
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._play_task: asyncio.Task | None = None
        self._sender_task: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None
        self._control = asyncio.Lock()
        self._close_task: asyncio.Future | None = None
        self.reset_counters()
        self.state = "starting"

    def reset_counters(self) -> None:
        self.sent = self.acked = self.dropped = 0
        self.t = 0.0
        self.prompt_index = 0
        self.ended: str | None = None
        self._schedule_len_sent = (0, 0)

    # ------------------------------------------------------------------ sending
    def send(self, msg: dict[str, Any]) -> None:
        if self._outbox.qsize() > MAX_OUTBOX:
            raise ConnectionError("the page does not read its messages")
        self._outbox.put_nowait(json.dumps(msg, allow_nan=False))

    async def _sender(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_text(item)

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked

    def hello(self) -> dict:
        lm_model = self.app.spec.model
        return {"type": "hello", "model": lm_model, "fps": self.app.spec.fps, "width": self.app.spec.width,
                "height": self.app.spec.height, "prompt": self.cfg.first_prompt(lm_model), "seed": self.app.first_seed,
                "chunk_seconds": self.app.chunk_seconds, "when_slow": self.cfg.when_slow,
                "limits": {"max_prompt_chars": self.cfg.max_prompt_chars, "max_seconds": self.cfg.max_seconds,
                           "max_sessions": self.cfg.max_sessions, "max_in_flight": MAX_IN_FLIGHT}}

    # ------------------------------------------------------------------ control
    async def run(self) -> None:
        """Serve the page until it goes away."""
        self._sender_task = asyncio.create_task(self._sender())
        self._status_task = asyncio.create_task(self._status_loop())
        self.send(self.hello())
        try:
            while True:
                event = await self.ws.receive()
                if event["type"] == "websocket.disconnect":
                    return
                try:
                    msg = json.loads(event.get("text") or "")
                    kind = msg.get("type") if isinstance(msg, dict) else None
                except json.JSONDecodeError:
                    msg, kind = {}, None
                if kind == "ack":
                    self.acked = min(self.sent, self.acked + 1)
                    self._acked.set()
                elif kind in ("start", "restart"):
                    await self.start(msg.get("prompt"), msg.get("seed"), restart=kind == "restart")
                elif kind == "prompt":
                    self.set_prompt(msg.get("text"))
                elif kind == "pause":
                    self.paused = True
                    self._resume.clear()
                elif kind == "resume":
                    self.paused = False
                    self._resume.set()
                elif kind == "save":
                    await self.save()
                else:
                    self.send({"type": "error", "message": f"unknown message {str(kind)[:40]!r}"})
        finally:
            await self.close()

    def _check_prompt(self, text) -> str:
        from sfpp.stream import check_live_prompt

        try:
            return check_live_prompt(text, max_chars=self.cfg.max_prompt_chars)
        except SfppError as e:
            msg = str(e)
            if "characters long" in msg:
                msg += " (--max-prompt-chars)"
            raise SfppError(msg) from None

    async def start(self, prompt, seed, *, restart: bool = False) -> None:
        async with self._control:
            try:
                if prompt is None and self.stream is not None:
                    prompt = self.stream.prompt
                if prompt is None:
                    prompt = self.cfg.first_prompt(self.app.spec.model)
                prompt = self._check_prompt(prompt)
                if seed is None or seed == "":
                    seed = self.app.first_seed if (self.seed is None and not restart) else secrets.randbelow(2**31)
                if isinstance(seed, str):
                    seed = seed.strip()
                    if not seed.isdigit():
                        raise SfppError(f"the seed must be a whole number >= 0, got {seed[:20]!r}")
                    seed = int(seed)
                if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                    raise SfppError(f"the seed must be a whole number >= 0, got {str(seed)[:20]!r}")
            except SfppError as e:
                self.send({"type": "error", "message": str(e)})
                return
            await self._stop_stream()
            from sfpp.serve.recorder import Recorder
            from sfpp.stream import Stream

            rs = self.app.stream_spec(seed)
            try:
                self.stream = await asyncio.to_thread(Stream, prompt, rs, self.app.loaded, ahead=self.cfg.ahead,
                                                      max_prompt_chars=self.cfg.max_prompt_chars)
                self.recorder = Recorder(fps=rs.fps, width=rs.width, height=rs.height)
            except Exception as e:  # noqa: BLE001 - the page is told; the server goes on
                await self._stop_stream()
                self.send({"type": "error", "message": f"starting the stream failed: {type(e).__name__}: {e}"})
                return
            self.seed = seed
            self.reset_counters()
            self.paused = False
            self._resume.set()
            self.state = "starting"
            self.send({"type": "started", "seed": seed, "prompt": prompt, **self._prompt_warning(prompt)})
            self._play_task = asyncio.create_task(self._play(self.stream, self.recorder))

    def set_prompt(self, text) -> None:
        if self.stream is None or self.stream.closed:
            self.send({"type": "error", "message": "no stream is running; start one first"})
            return
        try:
            text = self.stream.set_prompt(self._check_prompt(text))
        except SfppError as e:
            self.send({"type": "error", "message": str(e)})
            return
        self.send({"type": "prompt_queued", "text": text, **self._prompt_warning(text)})

    def _prompt_warning(self, text: str) -> dict:
        """``{"warning": ...}`` when the model cannot read `text` (a ToyWorld model and no drawable object)."""
        from sfpp.spec import prompt_warnings

        w = prompt_warnings(self.app.loaded, [text])
        return {"warning": w[0]} if w else {}

    async def save(self) -> None:
        if self.stream is None or self.recorder is None or self.recorder.frames == 0:
            self.send({"type": "error", "message": "nothing to save yet: no frame has played"})
            return
        stream, recorder = self.stream, self.recorder
        name = f"sfpp-serve-{time.strftime('%Y%m%d-%H%M%S')}-s{stream.seed}-{secrets.token_hex(3)}"
        out = Path(self.cfg.save_dir) / f"{name}.mp4"
        try:
            frames = await asyncio.to_thread(recorder.save, out)
            side = await asyncio.to_thread(self._write_sidecar, stream, out, frames)
        except (OSError, SfppError) as e:
            self.send({"type": "error", "message": f"saving failed: {e}"})
            return
        self.app.saved[out.name] = out
        self.app.saved[side.name] = side
        self.send({"type": "saved", "mp4": f"saved/{out.name}", "json": f"saved/{side.name}", "frames": frames,
                   "seconds": frames / stream.fps, "path": str(out)})

    def _write_sidecar(self, stream, out: Path, frames: int) -> Path:
        from sfpp.generation import _sidecar, sidecar_path, write_json_atomic
        from sfpp.prompts import schedule_to_string

        seconds = frames / stream.fps
        entries = [e for e in stream.schedule if e.at * stream.fps < frames - 1e-6] or stream.schedule[:1]
        prompt = entries if len(entries) > 1 else entries[0].text
        data = _sidecar(prompt, stream.spec, self.app.loaded, {"torch_threads": None}, seconds)
        data.update(
            num_frames=frames, seconds=seconds, source="sfpp serve",
            prompt_schedule=[{"at_s": e.at, "text": e.text} for e in entries],
            prompt=schedule_to_string(entries),
            switches=[{k: v for k, v in s.items()} for s in stream.switches if s["at"] * stream.fps < frames - 1e-6],
            reproduce=stream.reproduce_command(seconds),
            served={"frames_sent": self.sent, "frames_drawn_by_page": self.acked, "frames_dropped": self.dropped,
                    "when_slow": self.cfg.when_slow},
        )
        side = sidecar_path(out)
        write_json_atomic(side, data)
        return side

    # ------------------------------------------------------------------ playback
    async def _play(self, stream, recorder) -> None:
        loop = asyncio.get_running_loop()
        base_wall, base_t = None, 0.0
        mode = self.cfg.when_slow
        try:
            while True:
                if self.paused:
                    self.state = "paused: generation waits"
                    await self._resume.wait()
                    base_wall = None
                try:
                    frame = await asyncio.to_thread(self._read_and_record, stream, recorder)
                except TimeoutError:
                    self.state = "generation is behind real time: waiting for frames"
                    base_wall = None
                    continue
                if frame is None:
                    self.ended = f"the stream reached its {self.cfg.max_seconds:g} s limit (--max-seconds); " \
                                 "restart for a new one"
                    self.state = "ended"
                    self.send({"type": "end", "reason": self.ended})
                    return
                image, t = frame
                now = loop.time()
                if base_wall is None:
                    base_wall, base_t = now, t
                due = base_wall + (t - base_t)
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > LATE_S:
                    base_wall, base_t = now, t  # behind: re-base rather than burst
                    self.state = "generation is behind real time: waiting for frames"
                if self.paused:  # paused while this frame waited: show it on resume
                    self.state = "paused: generation waits"
                    await self._resume.wait()
                    base_wall, base_t = loop.time(), t
                if self.in_flight >= MAX_IN_FLIGHT:
                    if mode == "drop":
                        self.dropped += 1
                        self.state = f"the page is slow: dropping frames ({self.dropped} so far)"
                        self.t = t
                        continue
                    self.state = "the page is slow: playback and generation wait for it"
                    while self.in_flight >= MAX_IN_FLIGHT:
                        self._acked.clear()
                        await self._acked.wait()
                    base_wall, base_t = loop.time(), t
                idx, _ = stream.prompt_at(t)
                jpeg = await asyncio.to_thread(encode_jpeg, image)
                self.prompt_index = idx
                self._outbox.put_nowait(FRAME_HEADER.pack(MAGIC, round(t * stream.fps), idx, t) + jpeg)
                self.sent += 1
                self.t = t
                if not self.state.startswith("the page is slow") or self.in_flight < MAX_IN_FLIGHT // 2:
                    self.state = "playing"
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the page is told; the server goes on
            self.state = "failed"
            self.send({"type": "error", "message": f"generation failed: {type(e).__name__}: {e}"})

    @staticmethod
    def _read_and_record(stream, recorder):
        f = stream.read(timeout=1.0)
        if f is not None:
            recorder.write(f.image)
        return f

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            s = self.stream
            if s is None:
                continue
            msg = {"type": "status", "t": self.t, "seed": self.seed, "state": self.state, "paused": self.paused,
                   "generated": s.frames_generated, "sent": self.sent, "drawn": self.acked, "dropped": self.dropped,
                   "in_flight": self.in_flight, "generation_waiting": s.waiting, "prompt_index": self.prompt_index,
                   "pending_prompt": s.pending_prompt, "recorded": self.recorder.frames if self.recorder else 0}
            sched, switches = s.schedule, s.switches
            if (len(sched), len(switches)) != self._schedule_len_sent:  # sent when it changed
                msg["schedule"] = [{"at": e.at, "text": e.text} for e in sched]
                msg["switches"] = switches
                self._schedule_len_sent = (len(sched), len(switches))
            if self._outbox.qsize() < 4:  # a page that does not read gets no pile of statuses
                self.send(msg)

    # ------------------------------------------------------------------ end
    async def _stop_stream(self) -> None:
        """End the playback task, the stream's worker and the recording.

        The worker is told to stop before the first await: a close that is itself cancelled (a page
        that went away while the server shuts the connection down) must not leave a generation
        running. The join and the recorder's close are shielded for the same reason: a cancelled
        `to_thread` that had not started yet would never run.
        """
        task, self._play_task = self._play_task, None
        stream, recorder = self.stream, self.recorder
        self.stream = self.recorder = None
        if task is not None:
            task.cancel()  # first, so that it does not read the stopped stream's end as the video's end
        if stream is not None:
            stream.stop()
        if task is not None:
            await asyncio.wait([task])  # neither raises the task's error nor swallows our own cancellation
        if stream is not None or recorder is not None:
            await asyncio.shield(asyncio.to_thread(_close_quietly, stream, recorder))

    async def close(self) -> None:
        """Stop generating, drop the recording and the tasks (the page is gone or the server stops).

        Every caller waits for the same close to finish: the handler's own ``finally`` and the app's
        (which then frees the session's slot) may both call it, and the second must not return while
        the first, cancelled with its connection, is still closing the stream in a thread.
        """
        await asyncio.shield(self.close_soon())

    def close_soon(self) -> asyncio.Future:
        """Start the close (once) without waiting: the future it returns ends when the close has.

        A task is not subject to its creator's cancellation, so the close runs to its end even when
        the connection's handler, cancelled, cannot await anything any more (anyio re-raises the
        cancellation at every await in a cancelled scope).
        """
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close_now())
        return self._close_task

    async def _close_now(self) -> None:
        for task in (self._status_task, self._sender_task):
            if task is not None:
                task.cancel()
        await self._stop_stream()
