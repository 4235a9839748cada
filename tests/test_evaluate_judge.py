"""The Visual Stability judge through the real google-genai client over httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest
from evaluate_fixtures import static_video, write_mp4
from google import genai
from google.genai import types

from sfpp.errors import SfppError
from sfpp.evaluate import EvaluateConfig, evaluate_runs
from sfpp.evaluate.judge import PROMPT_VERSION, GeminiJudge

PROMPT = "a lighthouse on a cliff at dusk, waves crashing"


@pytest.fixture(autouse=True)
def _sfpp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))


class FakeGemini:
    """Answers the Files API (resumable upload, get, delete) and generateContent like Gemini does."""

    def __init__(self, replies, *, processing_polls=2):
        self.replies = list(replies)  # each: (status, body dict) for one generateContent call
        self.processing_polls = processing_polls
        self.requests: list[httpx.Request] = []
        self.generate_bodies: list[dict] = []
        self.polls = 0
        self.uploaded_bytes = 0

    def _file(self, state):
        return {"name": "files/vid123", "uri": "https://generativelanguage.googleapis.com/v1beta/files/vid123",
                "mimeType": "video/mp4", "state": state}

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        url = str(req.url)
        cmd = req.headers.get("x-goog-upload-command", "")
        if req.method == "POST" and "/upload/" in url and cmd == "start":
            return httpx.Response(200, headers={"x-goog-upload-url": "https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=u1"}, json={})
        if req.method == "POST" and "upload_id=u1" in url:
            self.uploaded_bytes += len(req.content)
            return httpx.Response(200, headers={"x-goog-upload-status": "final"}, json={"file": self._file("PROCESSING")})
        if req.method == "GET" and url.endswith("files/vid123"):
            self.polls += 1
            return httpx.Response(200, json=self._file("ACTIVE" if self.polls >= self.processing_polls else "PROCESSING"))
        if req.method == "POST" and url.endswith(":generateContent"):
            self.generate_bodies.append(json.loads(req.content))
            status, body = self.replies.pop(0)
            return httpx.Response(status, json=body)
        if req.method == "DELETE":
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"error": {"code": 404, "message": f"unexpected {req.method} {url}", "status": "NOT_FOUND"}})

    def generate_calls(self):
        return [r for r in self.requests if str(r.url).endswith(":generateContent")]


def ok_reply(score, reasoning="Highlights stay detailed; no clipping."):
    return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": json.dumps({"reasoning": reasoning, "score": score})}]},
                                 "finishReason": "STOP"}]}


def text_reply(text):
    return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}]}


RATE_LIMITED = (429, {"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}})


def make_judge(fake, model="gemini-judge-test", sleeps=None):
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(httpx_client=httpx.Client(transport=httpx.MockTransport(fake))))
    sleep = (lambda s: sleeps.append(s)) if sleeps is not None else (lambda s: None)
    return GeminiJudge(model, client=client, sleep=sleep, initial_delay_s=1.5, poll_interval_s=0.5)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "lighthouse.mp4", static_video(h=75, w=109, n=12), 8, sidecar={"prompt": PROMPT})
    return run


def test_upload_poll_and_generate_request(run_dir):
    fake = FakeGemini([ok_reply(4)], processing_polls=3)
    judge = make_judge(fake)
    r = judge.rate(run_dir / "lighthouse.mp4", PROMPT)
    assert (r.score, r.value, r.judge_model, r.prompt_version) == (4, 80.0, "gemini-judge-test", PROMPT_VERSION)
    # the MP4 bytes were uploaded, then the file polled until ACTIVE, then deleted
    assert fake.uploaded_bytes == (run_dir / "lighthouse.mp4").stat().st_size
    assert fake.polls == 3
    assert fake.requests[-1].method == "DELETE"
    (call,) = fake.generate_calls()
    assert "models/gemini-judge-test:generateContent" in str(call.url)
    body = fake.generate_bodies[0]
    parts = body["contents"][0]["parts"]
    assert any("vid123" in json.dumps(p) for p in parts)  # the uploaded file is referenced
    text = " ".join(p.get("text", "") for p in parts)
    assert PROMPT in text and "EXPOSURE STABILITY" in text and "0 - Catastrophic exposure" in text
    gen = body["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    schema = gen["responseJsonSchema"]
    assert schema["required"] == ["reasoning", "score"] and schema["propertyOrdering"] == ["reasoning", "score"]
    assert schema["properties"]["score"]["maximum"] == 5


def test_rate_limit_is_retried_with_backoff(run_dir):
    fake = FakeGemini([RATE_LIMITED, ok_reply(5)])
    sleeps = []
    r = make_judge(fake, sleeps=sleeps).rate(run_dir / "lighthouse.mp4", PROMPT)
    assert r.score == 5 and r.attempts == 2
    assert len(fake.generate_calls()) == 2
    backoff = [s for s in sleeps if s >= 1.5]  # poll sleeps are 0.5 s
    assert len(backoff) == 1 and backoff[0] <= 1.5 * 1.25


def test_client_error_is_not_retried(run_dir):
    fake = FakeGemini([(400, {"error": {"code": 400, "message": "model not found", "status": "INVALID_ARGUMENT"}})])
    with pytest.raises(SfppError, match="HTTP 400"):
        make_judge(fake).rate(run_dir / "lighthouse.mp4", PROMPT)
    assert len(fake.generate_calls()) == 1


def test_evaluate_caches_scores_and_reports_malformed_replies(run_dir, tmp_path):
    cfg = EvaluateConfig(metrics=("visual-stability",), judge_model="gemini-judge-test")
    # 1) malformed reply: reported, not scored, not cached
    fake = FakeGemini([text_reply("The video looks fine, I'd say 4/5")])
    ev = evaluate_runs([run_dir], cfg, judge=make_judge(fake))
    vs = ev.runs[0]["videos"][0]["metrics"]["visual_stability"]
    assert vs["value"] is None and "malformed JSON" in vs["error"]
    assert len(ev.errors) == 1 and ev.errors[0]["metric"] == "visual_stability"
    assert ev.runs[0]["summary"]["visual_stability"]["value"] is None
    # out-of-range score is malformed too
    fake = FakeGemini([ok_reply(7)])
    ev = evaluate_runs([run_dir], cfg, judge=make_judge(fake))
    assert "expected an integer 0-5" in ev.runs[0]["videos"][0]["metrics"]["visual_stability"]["error"]
    # 2) a good reply is scored and cached
    fake = FakeGemini([ok_reply(3)])
    ev = evaluate_runs([run_dir], cfg, judge=make_judge(fake))
    vs = ev.runs[0]["videos"][0]["metrics"]["visual_stability"]
    assert ev.ok and vs["value"] == 60.0 and vs["cached"] is False
    assert vs["details"]["judge_model"] == "gemini-judge-test" and vs["details"]["score_0_5"] == 3
    assert ev.runs[0]["aggregates"]["visual_stability"] == 60.0
    # 3) cached: the video is not sent again (no request at all)
    fake = FakeGemini([])
    ev = evaluate_runs([run_dir], cfg, judge=make_judge(fake))
    vs = ev.runs[0]["videos"][0]["metrics"]["visual_stability"]
    assert fake.requests == [] and vs["cached"] is True and vs["value"] == 60.0
    # 4) another judge model is another cache entry
    fake = FakeGemini([ok_reply(1)])
    ev = evaluate_runs([run_dir], EvaluateConfig(metrics=("visual_stability",)), judge=make_judge(fake, model="gemini-other"))
    assert len(fake.generate_calls()) == 1
    assert ev.runs[0]["videos"][0]["metrics"]["visual_stability"]["value"] == 20.0


def test_missing_api_key_names_the_offline_proxy(run_dir, monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(SfppError) as e:
        evaluate_runs([run_dir], EvaluateConfig(metrics=("visual-stability",)))
    assert "GOOGLE_API_KEY" in str(e.value) and "exposure_stability_proxy" in str(e.value)


def test_missing_prompt_is_reported_per_video(tmp_path):
    run = tmp_path / "noprompt"
    run.mkdir()
    write_mp4(run / "clip.mp4", static_video(h=75, w=109, n=6), 8)  # no sidecar, no prompts file
    fake = FakeGemini([])
    ev = evaluate_runs([run], EvaluateConfig(metrics=("visual_stability",)), judge=make_judge(fake))
    assert fake.requests == []
    assert "--prompts" in ev.errors[0]["error"]
    # a prompts file supplies it
    (tmp_path / "prompts.tsv").write_text("clip\tsunrise over the sea\n")
    fake = FakeGemini([ok_reply(5)])
    ev = evaluate_runs([run], EvaluateConfig(metrics=("visual_stability",), prompts_file=tmp_path / "prompts.tsv"),
                       judge=make_judge(fake))
    assert ev.ok and "sunrise over the sea" in json.dumps(fake.generate_bodies[0])
