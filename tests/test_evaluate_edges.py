"""`sfpp evaluate` edges: bad input as one-line errors, and a cache that never serves a stale result."""

from __future__ import annotations

import json

import pytest
import typer
from evaluate_fixtures import moving_square_video, static_video, write_mp4
from fake_gemini import FakeGemini, ok_reply
from typer.testing import CliRunner

from sfpp.cli.evaluate import evaluate_cmd
from sfpp.errors import SfppError
from sfpp.evaluate import EvaluateConfig, evaluate_runs
from sfpp.evaluate import judge as judge_mod
from sfpp.evaluate.judge import GeminiJudge
from sfpp.evaluate.metrics import METRICS
from sfpp.evaluate.runner import cache_version

app = typer.Typer()
app.command("evaluate")(evaluate_cmd)
app.command("noop", hidden=True)(lambda: None)

PROMPT = "a red square slides right"
FIXED = "a red square slides to the right over grey"
KEY = "test-key-edges"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))
    for var in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "square.mp4", moving_square_video(h=75, w=109, n=12), 8, sidecar={"prompt": PROMPT})
    return run


def one_line_error(res, needle):
    errs = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2, res.output
    assert len(errs) == 1 and needle in errs[0], res.output
    assert "Traceback" not in res.output
    return errs[0]


# ---- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--window", "nan"], "--window must be a positive number of seconds"),
    (["--window", "inf"], "--window must be a positive number of seconds"),
    (["--text-window", "nan"], "--text-window must be a positive number of seconds"),
    (["--judge-timeout", "nan"], "--judge-timeout must be a positive number of seconds"),
    (["--max-videos", "-1"], "--max-videos must be 0 or more"),
])
def test_non_finite_windows_are_one_line_errors(run_dir, tmp_path, args, needle):
    res = CliRunner().invoke(app, ["evaluate", str(run_dir), "--out", str(tmp_path / "o"), *args])
    one_line_error(res, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["top", "sub", "argument"])
def test_broken_symlink_video_is_a_one_line_error(run_dir, tmp_path, where):
    if where == "sub":
        (run_dir / "0001-sub").mkdir()
        link = run_dir / "0001-sub" / "preview.mp4"
    else:
        link = run_dir / "gone.mp4"
    link.symlink_to(tmp_path / "deleted-elsewhere.mp4")
    target = link if where == "argument" else run_dir
    res = CliRunner().invoke(app, ["evaluate", str(target), "--out", str(tmp_path / "o"), "-m", "mean_luma"])
    line = one_line_error(res, "is a broken symbolic link")
    assert str(link) in line and "deleted-elsewhere.mp4" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text,needle", [
    ('{"prompt": "a red square", ', "square.json is not valid JSON (Expecting"),
    ('["a red square"]', "square.json holds a JSON list, not an object"),
    (b"\xff\xfe{", "square.json is not valid JSON (not UTF-8 text)"),
])
def test_corrupt_sidecar_is_a_one_line_error(run_dir, tmp_path, text, needle):
    side = run_dir / "square.json"
    side.write_bytes(text if isinstance(text, bytes) else text.encode())
    res = CliRunner().invoke(app, ["evaluate", str(run_dir), "--out", str(tmp_path / "o"), "-m", "mean_luma"])
    line = one_line_error(res, needle)
    assert "square.mp4" in line and "fix or remove the sidecar" in line


# ---- the cache key ---------------------------------------------------------------------------------
def test_cache_key_holds_everything_that_determines_a_result(tmp_path):
    weights = tmp_path / "w"
    cfg = EvaluateConfig(weights_dir=weights)
    text_metrics = {m for m, s in METRICS.items() if s.needs_prompt}
    assert text_metrics == {"clip_score", "overall_consistency", "visual_stability"}
    for m in METRICS:
        a = cache_version(m, cfg, prompt="a cat", judge_version="J")
        b = cache_version(m, cfg, prompt="a cat.", judge_version="J")
        assert (a != b) == (m in text_metrics), m  # the prompt is in the key of exactly the text metrics
        assert a == cache_version(m, cfg, prompt="a cat", judge_version="J")
        assert "a cat" not in a  # a digest, not the text
        spec = METRICS[m]
        if spec.family != "judge":
            other = (EvaluateConfig(weights_dir=weights, text_window_s=5.0) if spec.text_window
                     else EvaluateConfig(weights_dir=weights, window_s=3.0))
            assert cache_version(m, other, prompt="a cat") != a, m  # its window
    # the judge: model, rubric and temperature
    base = cache_version("visual_stability", cfg, prompt="p", judge_version=judge_mod.judge_version("gemini-a"))
    assert base != cache_version("visual_stability", cfg, prompt="p", judge_version=judge_mod.judge_version("gemini-b"))
    assert base != cache_version("visual_stability", cfg, prompt="p",
                                 judge_version=judge_mod.judge_version("gemini-a", temperature=0.5))
    assert base == cache_version("visual_stability", EvaluateConfig(judge_model="gemini-a"), prompt="p")


def test_corrected_prompt_rejudges_and_other_settings_too(run_dir, monkeypatch):
    """visual_stability: a new prompt, judge model, rubric or temperature is a new judgement; the
    prompt-free metrics of the same video stay cached."""
    with FakeGemini(api_key=KEY) as server:
        server.file_states = ["ACTIVE"]
        server.generate = [ok_reply(s) for s in (2, 3, 4, 5, 1)]

        def evaluate(model="gemini-a", **kw):
            judge = GeminiJudge(model, api_key=KEY, base_url=server.url, timeout_s=5, **kw)
            return evaluate_runs([run_dir], EvaluateConfig(metrics=("visual_stability", "mean_luma")), judge=judge)

        def vs(ev):
            m = ev.runs[0]["videos"][0]["metrics"]
            return m["visual_stability"]["value"], m["visual_stability"]["cached"], m["mean_luma"]["cached"]

        assert vs(evaluate()) == (40.0, False, False)
        assert vs(evaluate()) == (40.0, True, True)
        assert len(server.calls("generate")) == 1
        side = run_dir / "square.json"
        side.write_text(json.dumps({**json.loads(side.read_text()), "prompt": FIXED}))
        ev = evaluate()
        assert vs(ev) == (60.0, False, True)  # re-judged with the corrected prompt; mean_luma reused
        assert FIXED in json.dumps(server.calls("generate")[-1].json)
        assert ev.notes[0].startswith("reused 1 cached result ")
        assert vs(evaluate()) == (60.0, True, True)
        assert vs(evaluate(model="gemini-b")) == (80.0, False, True)
        assert vs(evaluate(temperature=0.5)) == (100.0, False, True)
        monkeypatch.setattr(judge_mod, "RUBRIC", judge_mod.RUBRIC.replace("EXPOSURE STABILITY", "EXPOSURE"))
        assert vs(evaluate()) == (20.0, False, True)
        assert len(server.calls("generate")) == 5


def test_corrected_prompt_recomputes_text_alignment(tmp_path, run_dir):
    """clip_score and overall_consistency (tiny models in the --weights-dir layout) read the prompt."""
    from test_evaluate_vbench import TINY_VICLIP, _save_viclip, _seeded_viclip_state, _tiny_clip, _tiny_tokenizer

    from sfpp.evaluate import vbench as vb
    from sfpp.evaluate import viclip as vc

    weights = tmp_path / "weights"
    _tiny_clip(64, 32, 16, seed=1).save_pretrained(weights / vb.CLIP_B32_DIR)
    _tiny_tokenizer().save_pretrained(weights / vb.CLIP_B32_DIR)
    _save_viclip(weights, _seeded_viclip_state(vc.ViCLIP(TINY_VICLIP)))
    cfg = EvaluateConfig(metrics=("clip_score", "overall_consistency", "temporal_flickering"), weights_dir=weights)

    def metrics():
        ev = evaluate_runs([run_dir], cfg)
        assert ev.ok, ev.errors
        return {m: (r["value"], r["cached"]) for m, r in ev.runs[0]["videos"][0]["metrics"].items()}

    first = metrics()
    assert all(not cached for _, cached in first.values())
    assert all(cached for _, cached in metrics().values())
    side = run_dir / "square.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "prompt": "a blue circle"}))
    fixed = metrics()
    assert fixed["temporal_flickering"] == (first["temporal_flickering"][0], True)
    for m in ("clip_score", "overall_consistency"):
        assert fixed[m][1] is False and fixed[m][0] != pytest.approx(first[m][0], abs=1e-7), m


def test_changed_setting_recomputes_and_reuse_is_one_line(run_dir, tmp_path):
    args = ["evaluate", str(run_dir), "-m", "mean_luma,colour_drift", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "reused" not in res.output
    res = CliRunner().invoke(app, args)
    lines = [ln for ln in res.output.splitlines() if "reused" in ln]
    assert res.exit_code == 0 and len(lines) == 1 and lines[0].startswith("reused 2 cached results")
    assert "--no-cache recomputes" in lines[0]
    res = CliRunner().invoke(app, [*args, "--window", "1s", "--json"])
    data = json.loads(res.stdout)
    assert [m["cached"] for m in data["runs"][0]["videos"][0]["metrics"].values()] == [False, False]
    assert data["notes"] == []


def test_evaluate_config_rejects_nan_directly():
    with pytest.raises(SfppError, match="--window must be a positive number"):
        EvaluateConfig(window_s=float("nan"))
    with pytest.raises(SfppError, match="--judge-timeout"):
        EvaluateConfig(judge_timeout_s=float("inf"))


def test_static_second_video_keeps_its_own_cache_entry(run_dir):
    """Two different videos with the same prompt never share a result."""
    write_mp4(run_dir / "still.mp4", static_video(h=75, w=109, n=12), 8, sidecar={"prompt": PROMPT})
    ev = evaluate_runs([run_dir], EvaluateConfig(metrics=("mean_luma",)))
    v = {vd["name"]: vd["metrics"]["mean_luma"]["value"] for vd in ev.runs[0]["videos"]}
    assert v["still"] != v["square"]
    ev = evaluate_runs([run_dir], EvaluateConfig(metrics=("mean_luma",)))
    assert {vd["name"]: vd["metrics"]["mean_luma"]["value"] for vd in ev.runs[0]["videos"]} == v
