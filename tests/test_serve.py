"""`sfpp serve` without a browser: safety (token, host, origin), limits, pacing and slow pages, saving."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import pytest
from typer.testing import CliRunner

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from sfpp.errors import SfppError  # noqa: E402
from sfpp.serve.config import ServeConfig, is_loopback  # noqa: E402
from sfpp.spec import VideoSpec, load_model, resolve_spec  # noqa: E402

RED = "a red circle moving on a black background"
GREEN = "a green square moving on a black background"
LOCAL = "http://127.0.0.1:7860"
WS = "ws://127.0.0.1:7860"
runner = CliRunner()


@pytest.fixture(scope="module")
def toy():
    return load_model(resolve_spec(VideoSpec(model="toy", seconds=1)))


def make_app(toy, tmp_path, **kw):
    from sfpp.serve.app import create_app

    kw.setdefault("save_dir", tmp_path / "saved")
    return create_app(ServeConfig(spec=VideoSpec(model="toy"), **kw), loaded=toy)


def receive(ws, want: str, *, ack=True, limit=2000):
    """Messages until one of type `want` (frames are acknowledged as a page does); returns it and the frames."""
    frames = []
    for _ in range(limit):
        m = ws.receive()
        if m.get("bytes") is not None:
            frames.append(struct.unpack("<4sIId", m["bytes"][:20]))
            if ack:
                ws.send_text('{"type": "ack"}')
            if want == "frame":
                return frames[-1], frames
            continue
        if m.get("text") is None:
            raise WebSocketDisconnect(m.get("code", 1000))
        d = json.loads(m["text"])
        if d["type"] == want:
            return d, frames
    raise AssertionError(f"no {want!r} message")


def test_loopback_detection_and_a_public_bind_needs_a_token():
    assert all(map(is_loopback, ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.com", ""]))
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(SfppError, match="needs an access token"):
            ServeConfig(host=host).check()
    ServeConfig(host="0.0.0.0", token="a-long-enough-token").check()
    for bad, msg in ((dict(token="short"), "at least 8"), (dict(max_sessions=0), "max-sessions"),
                     (dict(max_seconds=0), "max-seconds"), (dict(when_slow="burst"), "when-slow"),
                     (dict(port=70000), "port"), (dict(max_prompt_chars=10, prompt="x" * 11), "max-prompt-chars")):
        with pytest.raises(SfppError, match=msg):
            ServeConfig(**bad).check()


def test_the_cli_refuses_a_public_bind_it_cannot_protect_and_prints_a_generated_token(monkeypatch):
    import sfpp.serve.app as serve_app
    from sfpp.cli.main import app

    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--token", "short"])
    assert r.exit_code == 2 and "at least 8" in r.output
    ran = {}

    class FakeApp:
        class state:
            class spec:
                model, width, height, fps = "toy", 256, 256, 16

    monkeypatch.setattr(serve_app, "create_app", lambda config: FakeApp())
    monkeypatch.setattr(serve_app, "run_server", lambda app, config: ran.setdefault("config", config))
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "7999", "--model", "toy"])
    assert r.exit_code == 0, r.output
    token = ran["config"].token
    assert token and len(token) >= 32 and f"?token={token}" in r.output.replace("\n", "")
    assert "token generated" in r.output


def test_requests_without_the_right_token_are_refused(toy, tmp_path):
    app = make_app(toy, tmp_path, token="s3cret-token-for-tests")
    with TestClient(app, base_url=LOCAL) as c:
        for path in ("/", "/app.js", "/status", "/saved/x.mp4", "/?token=wrong-token-entirely"):
            r = c.get(path)
            assert r.status_code == 403 and "access token" in r.text, path
        with pytest.raises(WebSocketDisconnect) as e:
            with c.websocket_connect(WS + "/ws?token=wrong") as ws:
                ws.receive_text()
        assert e.value.code == 1008
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect(WS + "/ws") as ws:
                ws.receive_text()
        # the right token: in the address (the page then sets a cookie the page's own requests carry)
        r = c.get("/?token=s3cret-token-for-tests")
        assert r.status_code == 200 and "<canvas" in r.text
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert c.get("/app.js").status_code == 200  # by cookie
        c.cookies.clear()
        assert c.get("/status", headers={"Authorization": "Bearer s3cret-token-for-tests"}).json()["sessions"] == 0
        with c.websocket_connect(WS + "/ws?token=s3cret-token-for-tests") as ws:
            assert json.loads(ws.receive_text())["type"] == "hello"


def test_without_a_token_only_loopback_hosts_and_same_origin_websockets(toy, tmp_path):
    app = make_app(toy, tmp_path)
    with TestClient(app, base_url=LOCAL) as c:
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"Host": "localhost:7860"}).status_code == 200
        r = c.get("/", headers={"Host": "attacker.example:7860"})  # DNS rebinding
        assert r.status_code == 403
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect(WS + "/ws", headers={"Origin": "http://attacker.example"}) as ws:
                ws.receive_text()
        with c.websocket_connect(WS + "/ws", headers={"Origin": "http://127.0.0.1:7860"}) as ws:
            assert json.loads(ws.receive_text())["type"] == "hello"


def test_a_client_beyond_max_sessions_is_told_the_server_is_busy_and_a_closed_tab_frees_its_slot(toy, tmp_path):
    app = make_app(toy, tmp_path, max_sessions=1)
    with TestClient(app, base_url=LOCAL) as c:
        with c.websocket_connect(WS + "/ws") as first:
            hello = json.loads(first.receive_text())
            assert hello["limits"]["max_sessions"] == 1
            first.send_text(json.dumps({"type": "start", "prompt": RED}))
            receive(first, "frame")
            with c.websocket_connect(WS + "/ws") as second:
                busy = json.loads(second.receive_text())
                assert busy["type"] == "busy" and "busy" in busy["message"] and "--max-sessions 1" in busy["message"]
                with pytest.raises(WebSocketDisconnect) as e:
                    second.receive_text()
                assert e.value.code == 1013
            assert c.get("/status").json()["sessions"] == 1
            stream = next(iter(app.state.sessions)).stream
        # the tab is closed: its generation stops and the slot is free again
        deadline = time.monotonic() + 30
        while c.get("/status").json()["sessions"] or stream.running:
            assert time.monotonic() < deadline, "the closed page's generation did not stop"
            time.sleep(0.05)
        assert stream.closed
        with c.websocket_connect(WS + "/ws") as again:
            assert json.loads(again.receive_text())["type"] == "hello"


def test_a_close_that_is_itself_cancelled_still_stops_the_generation_and_the_recording(toy, tmp_path):
    """The server cancels a session's close when it drops the connection: the worker must stop anyway.

    Cancelled at its first await, the close used to leave the worker waiting for room forever (its
    `to_thread(stream.close)` was cancelled before an executor thread picked it up).
    """
    from sfpp.serve.app import AppState
    from sfpp.serve.recorder import Recorder
    from sfpp.serve.session import Session
    from sfpp.stream import Stream

    state = AppState(ServeConfig(spec=VideoSpec(model="toy"), save_dir=tmp_path / "saved"), toy)
    held = {}

    async def main():
        session = Session(state, None)
        rs = state.stream_spec(0)
        session.stream = held["stream"] = await asyncio.to_thread(Stream, RED, rs, toy, ahead=1)
        session.recorder = held["recorder"] = Recorder(fps=rs.fps, width=rs.width, height=rs.height)
        frame = await asyncio.to_thread(session.stream.read, 60)
        session.recorder.write(frame.image)
        closing = asyncio.create_task(session.close())
        await asyncio.sleep(0)  # the close runs up to its first await ...
        closing.cancel()  # ... and is cancelled there
        await asyncio.wait([closing])
        assert closing.cancelled()
        for _ in range(600):  # the shielded join and recorder close go on in the background
            if not held["stream"].running and not held["recorder"].dir.exists():
                break
            await asyncio.sleep(0.05)

    asyncio.run(main())
    stream, recorder = held["stream"], held["recorder"]
    stream._thread.join(30)
    assert not stream.running, "a cancelled close left the generation running"
    assert stream.closed and not recorder.dir.exists()


def test_over_long_and_schedule_prompts_are_rejected_with_a_message(toy, tmp_path):
    app = make_app(toy, tmp_path, max_prompt_chars=60)
    with TestClient(app, base_url=LOCAL) as c, c.websocket_connect(WS + "/ws") as ws:
        receive(ws, "hello")
        ws.send_text(json.dumps({"type": "start", "prompt": "x" * 61}))
        err, _ = receive(ws, "error")
        assert "61 characters long; the limit is 60 (--max-prompt-chars)" in err["message"]
        ws.send_text(json.dumps({"type": "start", "prompt": RED}))
        receive(ws, "started")
        ws.send_text(json.dumps({"type": "prompt", "text": "y" * 100}))
        err, _ = receive(ws, "error")
        assert "the limit is 60" in err["message"]
        ws.send_text(json.dumps({"type": "prompt", "text": "a[0s] | b[1s]"}))
        err, _ = receive(ws, "error")
        assert "one prompt" in err["message"]
        ws.send_text(json.dumps({"type": "start", "prompt": RED, "seed": "x1"}))
        err, _ = receive(ws, "error")
        assert "seed" in err["message"]
        ws.send_text("not json")
        err, _ = receive(ws, "error")
        assert "unknown message" in err["message"]


def test_playback_is_paced_a_switch_shows_and_the_save_is_what_played(toy, tmp_path):
    from sfpp.toyworld.oracle import read_frame
    from sfpp.video import read_mp4

    app = make_app(toy, tmp_path, max_seconds=30)
    with TestClient(app, base_url=LOCAL) as c, c.websocket_connect(WS + "/ws") as ws:
        hello, _ = receive(ws, "hello")
        assert (hello["fps"], hello["width"], hello["chunk_seconds"]) == (16, 256, 0.375)
        ws.send_text(json.dumps({"type": "start", "prompt": RED, "seed": 4}))
        started, _ = receive(ws, "started")
        assert started["seed"] == 4
        t0 = time.monotonic()
        frames = []
        while len(frames) < 24:
            frames.append(receive(ws, "frame")[0])
        wall = time.monotonic() - t0
        assert [f[1] for f in frames] == list(range(24)) and frames[5][3] == 5 / 16
        assert wall > 23 / 16 - 0.2, f"24 frames in {wall:.2f} s: faster than real time"
        ws.send_text(json.dumps({"type": "prompt", "text": GREEN}))
        receive(ws, "prompt_queued")
        while frames[-1][2] == 0:
            frames.append(receive(ws, "frame")[0])
        at = frames[-1][3]
        assert frames[-1][2] == 1 and at * 16 % 6 == 0  # the first frame of a chunk
        for _ in range(6):
            frames.append(receive(ws, "frame")[0])
        ws.send_text(json.dumps({"type": "save"}))
        saved, _ = receive(ws, "saved")
        mp4 = c.get("/" + saved["mp4"])
        side = c.get("/" + saved["json"]).json()
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(mp4.content)
    video, fps = read_mp4(tmp_path / "got.mp4")
    assert fps == 16 and len(video) == saved["frames"] == side["num_frames"] >= len(frames)
    assert side["prompt_schedule"] == [{"at_s": 0.0, "text": RED}, {"at_s": at, "text": GREEN}]
    assert side["seed"] == 4 and side["source"] == "sfpp serve"
    assert "--rope absolute" in side["reproduce"]  # 30 s fit the RoPE table
    assert side["switches"][0]["at"] == at and side["switches"][0]["latency_s"] > 0
    i = int(at * 16)
    assert "red" in read_frame(video[i - 1]).colours and "green" not in read_frame(video[i - 1]).colours
    assert any("green" in read_frame(v).colours for v in video[i : i + 12])  # within 2 chunks


@pytest.mark.parametrize("when_slow", ["drop", "wait"])
def test_a_page_that_does_not_draw_gets_frames_dropped_or_generation_waits_never_a_growing_buffer(toy, tmp_path,
                                                                                                when_slow):
    from sfpp.serve.session import MAX_IN_FLIGHT

    app = make_app(toy, tmp_path, when_slow=when_slow)
    with TestClient(app, base_url=LOCAL) as c, c.websocket_connect(WS + "/ws") as ws:
        receive(ws, "hello")
        ws.send_text(json.dumps({"type": "start", "prompt": RED}))
        frames = []
        deadline = time.monotonic() + 3.0
        status = None
        while time.monotonic() < deadline or status is None:
            m = ws.receive()
            if m.get("bytes") is not None:
                frames.append(m["bytes"])  # never acknowledged: a page that does not keep up
            else:
                d = json.loads(m["text"])
                if d["type"] == "status" and time.monotonic() > deadline - 1:
                    status = d
        assert len(frames) == MAX_IN_FLIGHT  # not one more frame went out to a page that did not draw
        assert status["in_flight"] == MAX_IN_FLIGHT
        if when_slow == "drop":
            assert status["dropped"] > 0 and "dropping frames" in status["state"]
            assert status["generated"] - status["sent"] - status["dropped"] <= 3 * 6  # paced, not racing ahead
        else:
            assert status["dropped"] == 0 and "wait" in status["state"] and status["generation_waiting"]
            assert status["generated"] <= MAX_IN_FLIGHT + 4 * 6
        ws.send_text(json.dumps({"type": "pause"}))
        for _ in range(MAX_IN_FLIGHT):
            ws.send_text(json.dumps({"type": "ack"}))
        for _ in range(200):
            d, _ = receive(ws, "status", ack=False)
            if d["paused"] and d["state"].startswith("paused"):
                break
        assert d["paused"] and d["state"] == "paused: generation waits"
        sent = d["sent"]
        time.sleep(1.0)
        d, _ = receive(ws, "status", ack=False)
        assert d["sent"] == sent  # nothing plays while paused


def test_restart_with_a_new_seed(toy, tmp_path):
    app = make_app(toy, tmp_path)
    with TestClient(app, base_url=LOCAL) as c, c.websocket_connect(WS + "/ws") as ws:
        receive(ws, "hello")
        ws.send_text(json.dumps({"type": "start", "prompt": RED}))
        receive(ws, "started")
        receive(ws, "frame")
        old = next(iter(app.state.sessions)).stream
        ws.send_text(json.dumps({"type": "restart", "seed": 123}))
        again, _ = receive(ws, "started")
        assert again["seed"] == 123 and again["prompt"] == RED
        (_, idx, _, t), _ = receive(ws, "frame")
        assert idx == 0 and t == 0.0 and old.closed
        ws.send_text(json.dumps({"type": "restart"}))
        third, _ = receive(ws, "started")
        assert isinstance(third["seed"], int) and third["seed"] >= 0  # a random one
