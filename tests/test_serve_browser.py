"""`sfpp serve` end to end in a real, headless browser (Debian's chromium driven by playwright).

Starts ``sfpp serve`` on a free loopback port with the bundled toy model, opens the page, sees
frames arrive (the picture changes), types a new prompt, checks with the ToyWorld oracle on frames
taken from the page's canvas that the new prompt's colour appears within 2 chunks of the switch,
saves the stream through the page and reads the MP4 and sidecar back, and closes the tab (the
server's generation stops). It takes the README screenshot too: with ``SFPP_UPDATE_SCREENSHOT=1``
it writes docs/serve.png.

Needs the playwright Python package and /usr/bin/chromium (.ci/run installs both; playwright never
downloads a browser here). Without them the test is skipped, unless ``SFPP_REQUIRE_BROWSER=1``
(set by .ci/run), which makes their absence a failure.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("SFPP_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
RED = "a red circle moving on a black background"
GREEN = "a green square moving on a black background"
CHUNK_S = 6 / 16  # the toy model's chunk: 3 latent = 6 pixel frames at 16 fps
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _need_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    for mod in ("starlette", "uvicorn"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(f"{mod} (pip install 'sfpp[serve]')")
    if missing:
        why = "the browser test needs " + " and ".join(missing)
        if os.environ.get("SFPP_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture()
def server(tmp_path):
    _need_browser()
    port = free_port()
    env = {**os.environ, "SFPP_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "sfpp.cli.main", "serve", "--model", "toy", "--port", str(port),
                             "--save-dir", str(tmp_path / "saved"), "--prompt", RED, "--seed", "3"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            get_json(base + "/status")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                proc.kill()
                pytest.fail(f"sfpp serve did not start:\n{log.read()}")
            time.sleep(0.2)
    yield base, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


SNAP = """() => ({t: window.sfpp.t, index: window.sfpp.index, drawn: window.sfpp.drawn,
                 promptIndex: window.sfpp.promptIndex, schedule: window.sfpp.schedule,
                 png: document.getElementById('video').toDataURL('image/png')})"""


def to_frame(data_url: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


@pytest.mark.slow
def test_the_page_plays_switches_prompts_and_saves_what_was_watched(server, tmp_path):
    from playwright.sync_api import sync_playwright

    from sfpp.toyworld.oracle import read_frame
    from sfpp.video import read_mp4

    base, proc = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, timeout=60_000)
        page = browser.new_page(viewport={"width": 820, "height": 980})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/", timeout=30_000)
        # frames arrive and the picture changes
        page.wait_for_function("() => window.sfpp && window.sfpp.drawn >= 3", timeout=30_000)
        first = page.evaluate(SNAP)
        page.wait_for_function(f"() => window.sfpp.index >= {first['index'] + 8}", timeout=20_000)
        later = page.evaluate(SNAP)
        a, b = to_frame(first["png"]), to_frame(later["png"])
        assert a.shape == (256, 256, 3) and not np.array_equal(a, b), "the picture does not change"
        assert "red" in read_frame(b).colours
        assert page.input_value("#prompt") == RED and page.text_content("#seed") == "3"
        # a new prompt, typed and sent with Enter
        page.fill("#prompt", GREEN)
        page.press("#prompt", "Enter")
        samples, at = [], None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = page.evaluate(SNAP)
            if len(s["schedule"]) > 1:
                at = s["schedule"][1]["at"]
                assert s["schedule"][1]["text"] == GREEN
            samples.append((s["t"], s["promptIndex"], read_frame(to_frame(s["png"]))))
            if at is not None and s["t"] >= at + 2 * CHUNK_S:
                break
            page.wait_for_timeout(40)
        assert at is not None, "the switch never took effect"
        before = [r for t, _, r in samples if t < at]
        window = [(t, i, r) for t, i, r in samples if at <= t < at + 2 * CHUNK_S]
        assert window, f"no frame sampled between {at} s and {at + 2 * CHUNK_S} s"
        assert all(i == 1 for _, i, _ in window)
        assert any("green" in r.colours for _, _, r in window), [(t, r.colours) for t, _, r in window]
        assert all("green" not in r.colours for r in before)
        page.wait_for_function("() => window.sfpp.status && window.sfpp.status.sent > 0", timeout=10_000)
        fps = float(page.text_content("#fps"))
        assert fps > 8, f"{fps} frames/s delivered"
        # the README screenshot: the green square playing, the schedule listed
        page.wait_for_timeout(600)
        update = os.environ.get("SFPP_UPDATE_SCREENSHOT") == "1"
        shot = ROOT / "docs" / "serve.png" if update else tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # save what I watched, download both files through the page
        page.click("#save")
        page.wait_for_function("() => window.sfpp.saved !== null", timeout=30_000)
        saved = page.evaluate("() => window.sfpp.saved")
        got = {}
        for i in (0, 1):
            with page.expect_download(timeout=30_000) as d:
                page.click(f"#saved a >> nth={i}")
            got[i] = tmp_path / d.value.suggested_filename
            d.value.save_as(got[i])
        video, fps_file = read_mp4(got[0])
        side = json.loads(got[1].read_text())
        assert got[0].suffix == ".mp4" and got[1].suffix == ".json"
        assert len(video) == side["num_frames"] == saved["frames"] and fps_file == 16
        assert side["prompt_schedule"] == [{"at_s": 0.0, "text": RED}, {"at_s": at, "text": GREEN}]
        assert side["seed"] == 3 and side["reproduce"].startswith("sfpp generate")
        k = round(at * 16)
        assert len(video) > k + 12 and any("green" in read_frame(v).colours for v in video[k : k + 12])
        assert errors == [], errors
        # closing the tab stops its generation
        assert get_json(base + "/status")["sessions"] == 1
        page.close()
        deadline = time.monotonic() + 20
        while get_json(base + "/status")["sessions"]:
            assert time.monotonic() < deadline, "closing the tab did not end its session"
            time.sleep(0.1)
        browser.close()
    assert proc.poll() is None
