"""Offline metrics on synthetic videos with known answers (real MP4s, decoded with ffmpeg)."""

from __future__ import annotations

import numpy as np
import pytest
from evaluate_fixtures import (
    brightening_video,
    freezing_video,
    moving_square_video,
    static_video,
    write_mp4,
)

from sfpp.evaluate import EvaluateConfig, evaluate_runs
from sfpp.evaluate.offline import FrameAnalysis, temporal_flickering, top_fraction_mean
from sfpp.evaluate.video import make_windows, read_video

FPS = 8


@pytest.fixture(autouse=True)
def _sfpp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))


def _evaluate_one(tmp_path, name, frames, **cfg):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    write_mp4(run / f"{name}.mp4", frames, FPS, sidecar={"prompt": name})
    ev = evaluate_runs([run], EvaluateConfig(**cfg))
    assert ev.errors == []
    (vd,) = [v for v in ev.runs[0]["videos"] if v["name"] == name]
    return vd


def _win_values(vd, metric):
    return [w["value"] for w in vd["metrics"][metric]["windows"]]


def test_windows_follow_vbench_long_split():
    # 43 frames at 8 fps, 2 s windows of 16 frames: two full windows + the remainder extended backwards
    wins = make_windows(43, 8.0, 2.0)
    assert [(w.start, w.end) for w in wins] == [(0, 16), (16, 32), (27, 43)]
    assert wins[2].start_s == pytest.approx(27 / 8) and wins[2].end_s == pytest.approx(43 / 8)
    assert [(w.start, w.end) for w in make_windows(10, 8.0, 2.0)] == [(0, 10)]  # shorter than a window: whole
    assert [(w.start, w.end) for w in make_windows(32, 8.0, 2.0)] == [(0, 16), (16, 32)]


def test_read_video_keeps_axes_and_pixels(tmp_path):
    frames = moving_square_video(h=91, w=167, n=9)
    write_mp4(tmp_path / "v.mp4", frames, FPS)
    got, fps = read_video(tmp_path / "v.mp4")
    assert got.shape == (9, 91, 167, 3) and got.dtype == np.uint8
    assert fps == pytest.approx(FPS)
    assert np.abs(got.astype(float) - frames).mean() < 1.0  # near-lossless round trip


def test_temporal_flickering_is_vbench_formula():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 13, 19, 3), dtype=np.uint8)
    a = FrameAnalysis(frames, 8.0)
    (win,) = make_windows(5, 8.0, 2.0)
    mae = [np.abs(frames[i + 1].astype(float) - frames[i]).mean() for i in range(4)]
    assert temporal_flickering(a, win) == pytest.approx((255 - np.mean(mae)) / 255, abs=1e-9)


def test_top_fraction_mean_takes_the_largest_five_percent():
    x = np.arange(200, dtype=float)  # top 5 % = the 10 largest values 190..199
    assert top_fraction_mean(x) == pytest.approx(194.5)


def test_static_video(tmp_path):
    vd = _evaluate_one(tmp_path, "static", static_video(h=75, w=109, n=40))
    m = vd["metrics"]
    assert vd["num_frames"] == 40 and (vd["height"], vd["width"]) == (75, 109)
    assert len(m["temporal_flickering"]["windows"]) == 3  # 0-16, 16-32, 24-40
    assert m["temporal_flickering"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert m["temporal_flickering"]["details"]["static_windows"] == [True, True, True]
    assert m["dynamic_degree_proxy"]["value"] == 0.0
    assert m["colour_drift"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert m["sharpness_ratio"]["value"] == pytest.approx(1.0, abs=1e-6)
    expected_luma = (static_video(h=75, w=109, n=1)[0].astype(float) @ np.array([0.299, 0.587, 0.114])).mean()
    assert m["mean_luma"]["value"] == pytest.approx(expected_luma, abs=1.0)
    assert m["luma_trend"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert m["subject_consistency_proxy"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert m["background_consistency_proxy"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert m["exposure_stability_proxy"]["value"] == pytest.approx(100.0, abs=0.01)
    assert m["flow_magnitude"]["value"] < 0.1


def test_brightening_video(tmp_path):
    vd = _evaluate_one(tmp_path, "bright", brightening_video(h=75, w=109, n=40))
    m = vd["metrics"]
    hi = _win_values(vd, "clipped_highlights")
    assert hi[0] == 0.0 and hi[-1] > 0.1
    assert all(b >= a for a, b in zip(hi, hi[1:]))  # clipped fraction rises over time
    drift = _win_values(vd, "colour_drift")
    assert drift[0] == 0.0 and drift[1] > 5 and drift[2] > drift[1] + 5  # colour drift grows
    assert m["luma_trend"]["value"] > 20  # luma units per second
    exp = _win_values(vd, "exposure_stability_proxy")
    assert exp[0] > exp[-1] and exp[-1] < 40  # drift counts from the first half second, inside window 0 too
    assert m["exposure_stability_proxy"]["value"] < 40  # low for the video
    assert m["sharpness_ratio"]["windows"][-1]["value"] < 0.5  # detail washes out


def test_moving_square(tmp_path):
    speed = 3
    vd = _evaluate_one(tmp_path, "square", moving_square_video(h=91, w=167, n=40, speed=speed))
    m = vd["metrics"]
    assert m["dynamic_degree_proxy"]["value"] == 1.0
    assert _win_values(vd, "dynamic_degree_proxy") == [1.0, 1.0, 1.0]
    curve = np.array(m["flow_magnitude"]["details"]["per_frame_top5"])
    assert len(curve) == 39
    assert np.abs(curve - speed).max() < 0.3  # the flow curve is the square's speed, every frame
    assert m["flow_magnitude"]["value"] == pytest.approx(speed, abs=0.15)
    assert m["stagnation"]["value"] == 0.0
    assert m["stagnation"]["details"]["stagnation_start_frame"] is None
    assert m["motion_smoothness_proxy"]["value"] > 0.99  # constant speed is perfectly interpolable


def test_freezing_video_detects_the_freeze_frame(tmp_path):
    vd = _evaluate_one(tmp_path, "freeze", freezing_video(freeze_at=23, h=91, w=167, n=40))
    st = vd["metrics"]["stagnation"]
    assert st["details"]["stagnation_start_frame"] == 23
    assert st["details"]["stagnation_start_s"] == pytest.approx(23 / FPS)
    assert st["details"]["segments"][0]["end_frame"] == 40
    assert st["value"] == pytest.approx(17 / 39)  # 17 of 39 frame pairs are frozen
    assert _win_values(vd, "stagnation")[0] == 0.0 and _win_values(vd, "stagnation")[-1] == 1.0
    flow = np.array(vd["metrics"]["flow_magnitude"]["details"]["per_frame_top5"])
    assert flow[:21].min() > 1.5 and flow[23:].max() < 0.1  # pans 2 px/frame, then stops


def test_window_option_changes_the_windows(tmp_path):
    vd = _evaluate_one(tmp_path, "square", moving_square_video(n=40), window_s=1.0, metrics=("flow_magnitude",))
    wins = vd["metrics"]["flow_magnitude"]["windows"]
    assert [(w["start_frame"], w["end_frame"]) for w in wins] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    assert list(vd["metrics"]) == ["flow_magnitude"]


def test_a_failing_metric_loses_nothing_else(tmp_path, monkeypatch):
    from sfpp.evaluate import runner

    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "sq.mp4", moving_square_video(n=20), FPS)
    cfg = EvaluateConfig(metrics=("flow_magnitude", "stagnation", "mean_luma"))

    def boom(a, win):
        raise RuntimeError("simulated crash")

    monkeypatch.setitem(runner._PER_WINDOW, "stagnation", boom)
    ev = evaluate_runs([run], cfg)
    assert [(e["metric"], "simulated crash" in e["error"]) for e in ev.errors] == [("stagnation", True)]
    m = ev.runs[0]["videos"][0]["metrics"]
    assert m["stagnation"]["value"] is None and m["flow_magnitude"]["value"] == pytest.approx(3.0, abs=0.15)
    monkeypatch.undo()
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))
    ev = evaluate_runs([run], cfg)
    m = ev.runs[0]["videos"][0]["metrics"]
    assert ev.ok
    assert {k: v["cached"] for k, v in m.items()} == {"flow_magnitude": True, "stagnation": False, "mean_luma": True}


def test_prompts_file_forms(tmp_path):
    from sfpp.errors import SfppError
    from sfpp.evaluate.video import discover_run, load_prompts_file

    (tmp_path / "p.json").write_text('{"a.mp4": "first prompt", "b": "second\\tprompt"}')
    assert load_prompts_file(tmp_path / "p.json") == {"a": "first prompt", "b": "second\tprompt"}
    (tmp_path / "p.txt").write_text("# comment\na\tfirst prompt\n\nb.mp4\tsecond prompt\n")
    assert load_prompts_file(tmp_path / "p.txt") == {"a": "first prompt", "b": "second prompt"}
    (tmp_path / "bad.txt").write_text("a first prompt\n")
    with pytest.raises(SfppError, match="bad.txt:1"):
        load_prompts_file(tmp_path / "bad.txt")
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "a.mp4", static_video(n=3), FPS, sidecar={"prompt": "from sidecar"})
    write_mp4(run / "b.mp4", static_video(n=3), FPS)
    videos = {v.name: v.prompt for v in discover_run(run, load_prompts_file(tmp_path / "p.txt")).videos}
    assert videos == {"a": "from sidecar", "b": "second prompt"}  # the sidecar wins
