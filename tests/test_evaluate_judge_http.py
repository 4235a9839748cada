"""The Gemini judge over real HTTP: google-genai's default transport against a local fake server.

No httpx client is injected anywhere here: the SDK builds its own (httpx2 in google-genai 3.x) and
is pointed at `tests/fake_gemini.py` through `HttpOptions(base_url=...)` or, for the command
line, the SDK's own GOOGLE_GEMINI_BASE_URL variable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import typer
from evaluate_fixtures import moving_square_video, static_video, write_mp4
from fake_gemini import Drop, FakeGemini, Hang, Reply, error_reply, ok_reply
from typer.testing import CliRunner

from sfpp.cli.evaluate import evaluate_cmd
from sfpp.errors import SfppError
from sfpp.evaluate import EvaluateConfig, evaluate_runs
from sfpp.evaluate.judge import GeminiJudge, JudgeAuthError, JudgeReplyError

PROMPT = "a lighthouse on a cliff at dusk, waves crashing"
KEY = "AIzaSy-FAKE-sfpp-test-key-0123456789"

app = typer.Typer()
app.command("evaluate")(evaluate_cmd)
app.command("noop", hidden=True)(lambda: None)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))
    for var in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_HTTP_CLIENT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with FakeGemini(api_key=KEY) as s:
        yield s


@pytest.fixture
def video(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    return write_mp4(run / "lighthouse.mp4", static_video(h=75, w=109, n=6), 8, sidecar={"prompt": PROMPT})


def judge_for(server, **kw):
    opts = {"api_key": KEY, "base_url": server.url, "timeout_s": 5.0, "poll_interval_s": 0.05, "initial_delay_s": 0.05,
            "max_delay_s": 1.0}
    opts.update(kw)
    return GeminiJudge("gemini-test", **opts)


def use_cli_server(monkeypatch, server, key=KEY):
    monkeypatch.setenv("GOOGLE_API_KEY", key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    server.file_states = ["ACTIVE"]  # the CLI polls every 2 s: no processing wait in CLI tests


def one_line_error(res, needle):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error:")]
    assert len(errs) == 1 and needle in errs[0], res.output
    assert "Traceback" not in res.output
    return errs[0]


# ---- one video, in process -----------------------------------------------------------------------
def test_upload_poll_generate_delete_over_the_default_transport(server, video):
    server.file_states = ["PROCESSING", "PROCESSING", "ACTIVE"]
    seen = []
    judge = judge_for(server)
    r = judge.rate(video, PROMPT, progress=seen.append)
    assert (r.score, r.value, r.attempts) == (4, 80.0, 1)
    kinds = [k for k in ("upload_start", "upload_data", "get", "generate", "delete") for _ in server.calls(k)]
    assert kinds == ["upload_start", "upload_data", "get", "get", "generate", "delete"]
    assert server.calls("upload_data")[0].body == video.read_bytes()
    assert server.deleted() == ["f1"]
    # progress while Gemini processes the upload
    assert sum("processing the upload" in m for m in seen) == 2
    # the SDK's own transport, with the timeout given (the server sees it as X-Server-Timeout)
    gen = server.calls("generate")[0]
    assert gen.headers["x-server-timeout"] == "5"
    import httpx

    assert not isinstance(judge.client._api_client._httpx_client, httpx.Client)  # 3.x default: httpx2, not httpx


def test_hung_request_times_out_and_is_retried(server, video):
    server.generate = [Hang(30)]
    t0 = time.monotonic()
    r = judge_for(server, timeout_s=1.0).rate(video, PROMPT)
    assert r.score == 4 and r.attempts == 2
    assert len(server.calls("generate")) == 2
    assert time.monotonic() - t0 < 10
    assert server.deleted() == ["f1"]


def test_dropped_connections_are_retried(server, video):
    server.upload_start = [Drop()]
    server.generate = [Drop(), Drop()]
    r = judge_for(server).rate(video, PROMPT)
    assert r.score == 4 and r.attempts == 3
    assert len(server.calls("upload_start")) == 2 and len(server.calls("generate")) == 3
    assert server.deleted() == ["f1"]


def test_429_with_retry_after_7_waits_at_least_7_s(server, video):
    server.generate = [error_reply(429, "RESOURCE_EXHAUSTED", "quota", headers={"Retry-After": "7"})]
    judge = judge_for(server, initial_delay_s=0.01, max_delay_s=60.0)  # the real sleep, not a stub
    r = judge.rate(video, PROMPT)
    first, second = server.calls("generate")
    assert r.score == 4 and r.attempts == 2
    assert 7.0 <= second.t - first.t < 9.0


def test_retry_delay_in_details_and_the_cap(server, video):
    info = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}]
    server.generate = [error_reply(429, "RESOURCE_EXHAUSTED", details=info), error_reply(503, "UNAVAILABLE")]
    server.file_states = ["ACTIVE"]
    sleeps = []
    r = judge_for(server, sleep=sleeps.append, max_delay_s=10.0).rate(video, PROMPT)
    assert r.attempts == 3
    assert sleeps[0] == 3.5 and 0.05 <= sleeps[1] <= 0.05 * 1.25 * 2  # then plain exponential backoff
    # a wait longer than the cap is an error at once, not a wait
    server.generate = [error_reply(429, "RESOURCE_EXHAUSTED", headers={"Retry-After": "3600"})]
    with pytest.raises(SfppError, match="retry after 3600 s, more than the 60 s"):
        judge_for(server, max_delay_s=60.0, sleep=sleeps.append).rate(video, PROMPT)
    assert len(server.calls("generate")) == 4 and server.deleted() == ["f1", "f2"]


def test_failed_and_stuck_uploads_are_deleted(server, video):
    server.file_states = ["PROCESSING", "FAILED"]
    with pytest.raises(SfppError, match="state FAILED: the video could not be decoded"):
        judge_for(server).rate(video, PROMPT)
    assert server.deleted() == ["f1"] and server.calls("generate") == []
    server.file_states = ["PROCESSING"]  # never becomes ACTIVE
    with pytest.raises(SfppError, match="still processing"):
        judge_for(server, poll_timeout_s=0.3).rate(video, PROMPT)
    assert server.deleted() == ["f1", "f2"] and server.calls("generate") == []
    # an error reply from generate: deleted too
    server.file_states = ["ACTIVE"]
    server.generate = [error_reply(404, "NOT_FOUND", "models/gemini-test is not found")]
    with pytest.raises(SfppError, match="HTTP 404 .*check --judge-model"):
        judge_for(server).rate(video, PROMPT)
    assert server.deleted() == ["f1", "f2", "f3"]


def test_server_errors_do_not_blame_the_key(server, video):
    server.generate = [error_reply(503, "UNAVAILABLE", "overloaded")] * 2
    with pytest.raises(SfppError) as e:
        judge_for(server, attempts=2).rate(video, PROMPT)
    msg = str(e.value)
    assert "HTTP 503" in msg and "after 2 attempts" in msg and "server error" in msg and "key" not in msg
    assert not isinstance(e.value, JudgeAuthError)


def test_blocked_and_cut_replies_name_their_reason(server, video):
    server.file_states = ["ACTIVE"]
    server.generate = [
        Reply(200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT", "blockReasonMessage": "policy"}}),
        Reply(200, {"candidates": [{"finishReason": "SAFETY"}]}),
        Reply(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": '{"reasoning": "The hig'}]},
                                    "finishReason": "MAX_TOKENS"}]}),
        Reply(200, {}),
    ]
    judge = judge_for(server)
    for needle in ("blocked the request: block reason PROHIBITED_CONTENT (policy)",
                   "stopped without a rating: finish reason SAFETY",
                   "malformed JSON (finish reason MAX_TOKENS)",
                   "no candidates"):
        with pytest.raises(JudgeReplyError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            judge.rate(video, PROMPT)
    assert len(server.deleted()) == 4


def test_rejected_key_is_an_auth_error_and_redacted(server, video):
    with pytest.raises(JudgeAuthError) as e:  # Gemini's 400 API_KEY_INVALID, echoing the key back
        judge_for(server, api_key="AIza-wrong-key-42").rate(video, PROMPT)
    assert "rejected the API key" in str(e.value) and "AIza-wrong-key-42" not in str(e.value)
    server.reject_key = True
    with pytest.raises(JudgeAuthError, match="HTTP 401 UNAUTHENTICATED") as e:
        judge_for(server).rate(video, PROMPT)
    assert KEY not in str(e.value)
    assert len(server.calls("upload_start")) == 2  # never retried


# ---- evaluate_runs --------------------------------------------------------------------------------
def test_identical_videos_are_judged_once(server, tmp_path, video):
    other = tmp_path / "run-copy"
    other.mkdir()
    (other / "lighthouse.mp4").write_bytes(video.read_bytes())
    (other / "lighthouse.json").write_text(json.dumps({"prompt": PROMPT}))
    (other / "renamed.mp4").write_bytes(video.read_bytes())
    (other / "renamed.json").write_text(json.dumps({"prompt": PROMPT}))
    write_mp4(other / "square.mp4", moving_square_video(h=75, w=109, n=6), 8, sidecar={"prompt": PROMPT})
    server.file_states = ["ACTIVE"]
    plan = evaluate_runs([video.parent, other], EvaluateConfig(metrics=("visual_stability", "mean_luma"), dry_run=True)).plan
    assert plan["judge"]["uploads"] == 2 and [len(v["same_video"]) for v in plan["judge"]["videos"]] == [2, 0]
    assert plan["compute"] == {"videos": 2, "results": 2} and server.requests == []
    ev = evaluate_runs([video.parent, other], EvaluateConfig(metrics=("visual_stability",)), judge=judge_for(server))
    assert ev.ok
    assert len(server.calls("upload_start")) == 2 and len(server.calls("generate")) == 2
    values = [vd["metrics"]["visual_stability"]["value"] for rd in ev.runs for vd in rd["videos"]]
    assert values == [80.0, 80.0, 80.0, 80.0]
    assert "visual_stability: 2 duplicate videos (same bytes and prompt) judged once" in ev.notes


# ---- the command line ------------------------------------------------------------------------------
@pytest.fixture
def three_videos(tmp_path):
    run = tmp_path / "three"
    run.mkdir()
    for i in range(3):
        write_mp4(run / f"v{i}.mp4", static_video(h=75, w=109, n=6, seed=10 + i), 8, sidecar={"prompt": f"{PROMPT} {i}"})
    return run


@pytest.mark.parametrize("reject", ["api_key_invalid", "401"])
def test_rejected_key_stops_after_one_video_with_exit_2(server, three_videos, tmp_path, monkeypatch, reject):
    use_cli_server(monkeypatch, server, key="AIza-wrong-key-42" if reject == "api_key_invalid" else KEY)
    server.reject_key = reject == "401"
    res = CliRunner().invoke(app, ["evaluate", str(three_videos), "-m", "visual-stability", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    line = one_line_error(res, "rejected the API key")
    assert "v0.mp4" in line and "2 more videos not judged" in line and "check GOOGLE_API_KEY" in line
    assert len(server.calls("upload_start")) == 1 and server.calls("generate") == []
    assert "AIza-wrong-key-42" not in res.output and KEY not in res.output


def test_dry_run_sends_nothing_and_max_videos_caps_spend(server, three_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)  # no API key: a dry run needs none
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["evaluate", str(three_videos), "-m", "visual-stability,mean_luma", "--dry-run",
                                   "--out", str(out), "--max-videos", "2"])
    assert res.exit_code == 0, res.output
    assert "would send 2 video(s)" in res.output and "2 upload(s), 2 generateContent call(s)" in res.output
    assert "API key missing" in res.output and "would compute 3 metric result(s) on 3 video(s)" in res.output
    assert "three/v0.mp4" in res.output and "three/v2.mp4" not in res.output.split("--max-videos")[0]
    assert "1 video not sent to the judge (--max-videos 2): three/v2.mp4" in res.output
    assert server.requests == [] and not out.exists()

    use_cli_server(monkeypatch, server)
    res = CliRunner().invoke(app, ["evaluate", str(three_videos), "-m", "visual-stability", "--max-videos", "2",
                                   "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(server.calls("generate")) == 2 and len(server.calls("delete")) == 2
    data = json.loads(res.stdout)
    vs = {vd["name"]: vd["metrics"]["visual_stability"] for vd in data["runs"][0]["videos"]}
    assert vs["v0"]["value"] == 80.0 and vs["v2"] == {"value": None, "skipped": "over --max-videos 2"}
    assert data["errors"] == [] and any("--max-videos 2" in n for n in data["notes"])
    # the dry run now counts the cached ones and plans the last video only
    res = CliRunner().invoke(app, ["evaluate", str(three_videos), "-m", "visual-stability", "--dry-run"])
    assert "would send 1 video(s)" in res.output and "2 cached result(s) reused" in res.output


def test_no_api_key_in_any_output_log_or_cache_file(server, video, tmp_path, monkeypatch):
    use_cli_server(monkeypatch, server)
    server.upload_start = [error_reply(503, "UNAVAILABLE", headers={"Retry-After": "0"})]
    server.generate = [error_reply(500, "INTERNAL", headers={"Retry-After": "0"}),
                       Reply(200, {"candidates": [{"content": {"parts": [{"text": "no json"}]}, "finishReason": "STOP"}]}),
                       ok_reply(3)]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    root, handler = logging.getLogger(), Keep(level=logging.DEBUG)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        outs = []
        for _ in range(2):  # a malformed reply (exit 1), then the score
            res = CliRunner().invoke(app, ["evaluate", str(video.parent), "-m", "visual-stability,mean_luma",
                                           "--out", str(tmp_path / "out")])
            outs.append(res)
        server.reject_key = True  # the server echoes the key in its 401 message
        outs.append(CliRunner().invoke(app, ["evaluate", str(video.parent), "-m", "visual-stability", "--no-cache"]))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert [r.exit_code for r in outs] == [1, 0, 2], [r.output for r in outs]
    assert len(records) > 5  # the SDK and HTTP layer did log
    assert server.calls("generate") and all(r.headers.get("x-goog-api-key") in (KEY, None) for r in server.requests)
    assert all(KEY not in r.path + r.query for r in server.requests)
    texts = [r.output for r in outs] + records
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] + [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "home" in p.parts for p in files)  # the cache was written
    assert not [t for t in texts if KEY in t]
    assert not [p for p in files if KEY.encode() in p.read_bytes()]


def test_ctrl_c_exits_within_5_s_and_deletes_the_upload(server, video, tmp_path):
    server.file_states = ["ACTIVE"]
    server.generate = [Hang(120)]
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY",)}
    env.update(GOOGLE_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=server.url, SFPP_HOME=str(tmp_path / "home"))
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from sfpp.cli.main import main; main()")
    p = subprocess.Popen([sys.executable, "-c", code, "evaluate", str(video.parent), "-m", "visual-stability",
                          "--out", str(tmp_path / "o")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not server.calls("generate"):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the judge never called generateContent"
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert elapsed < 5.0
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert server.deleted() == ["f1"] and server.calls("delete")[0].t - t0 < 5.0
    assert not (tmp_path / "o").exists()
