"""Exposure against the lit world's lighting cycle (issue #19's exposure experiment), fixed before any lit
student exists: checked on synthetic luma with a known answer and on rendered lit clips with the failures it
must catch (a creeping exposure, a frozen light, a cycle at the wrong rate)."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from sfpp.cli.main import app
from sfpp.toyworld.exposure import exposure_cycle, exposure_of_folder, fit_cycle, frame_luma, world_reference
from sfpp.toyworld.world import FPS, Lighting, ObjectSpec, SceneSpec, render_clip
from sfpp.video import Mp4Writer

runner = CliRunner()
SCENE = SceneSpec((ObjectSpec("blue", "square"),), "gray")  # grey: no clipping at white, amplitude = A
LIGHT = Lighting(0.15, 4.0)


def _lit(seconds: float, lighting: Lighting = LIGHT, seed: int = 0) -> np.ndarray:
    """(F, 32, 32, 3) uint8 frames of SCENE under `lighting`."""
    return render_clip(SCENE, int(round(seconds * FPS)), np.random.default_rng(seed), lighting=lighting).frames


def test_fit_cycle_recovers_mean_amplitude_and_phase_of_a_known_cycle():
    t = np.arange(64) / FPS + 8.0  # a window that does not start at zero: phases are in absolute time
    luma = 100 * (1 + 0.15 * np.sin(2 * math.pi * t / 4.0 + 0.7))
    c0, amp, phase = fit_cycle(luma, t, 4.0)
    assert c0 == pytest.approx(100, rel=1e-9) and amp == pytest.approx(0.15, rel=1e-9)
    assert phase == pytest.approx(0.7, abs=1e-9)
    c0, amp, _ = fit_cycle(np.full(64, 80.0), t, 4.0)  # no cycle at all
    assert c0 == pytest.approx(80) and amp == pytest.approx(0, abs=1e-12)


def test_frame_luma_is_bt601_and_checks_the_layout():
    f = np.zeros((2, 4, 4, 3), np.uint8)
    f[1] = (100, 200, 50)
    assert frame_luma(f) == pytest.approx([0, 0.299 * 100 + 0.587 * 200 + 0.114 * 50])
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        frame_luma(np.zeros((2, 3, 4, 4)))


def test_the_worlds_own_lit_clip_holds_its_cycle():
    r = exposure_cycle(frame_luma(_lit(12.0)), FPS, LIGHT.period_s)
    assert r["periods"] == 3
    assert all(a == pytest.approx(0.15, abs=0.02) for a in r["amplitude"])
    assert abs(r["mean_drift"]) < 0.01 and r["mean_range"] < 0.02
    assert abs(r["phase_drift_deg"]) < 5
    assert r["amplitude_ratio"] == pytest.approx(1, abs=0.15)


def test_a_creeping_exposure_shows_as_mean_drift():
    f = _lit(12.0).astype(np.float64)
    ramp = np.linspace(1.0, 1.2, len(f))[:, None, None, None]  # 20% brighter by the end
    r = exposure_cycle(frame_luma(f * ramp), FPS, LIGHT.period_s)
    # period means at t = 2, 6, 10 s of a 12 s ramp: 1.0333 -> 1.1667, a drift of about +0.129
    assert r["mean_drift"] == pytest.approx(0.2 * (10 - 2) / 12 / 1.0333, abs=0.02)
    assert r["mean_drift"] > 0.1


def test_a_frozen_light_shows_as_a_fading_cycle():
    f = _lit(12.0)
    n = int(LIGHT.period_s * FPS)
    f[n:] = f[n - 1]  # the light (and everything else) stops after the first period
    r = exposure_cycle(frame_luma(f), FPS, LIGHT.period_s)
    assert r["amplitude_first"] == pytest.approx(0.15, abs=0.02)
    assert r["amplitude_last"] < 0.01 and r["amplitude_ratio"] < 0.1


def test_a_cycle_at_the_wrong_rate_shows_as_phase_drift():
    f = _lit(12.0, Lighting(0.15, 4.4))  # the student's light runs 10% slow
    r = exposure_cycle(frame_luma(f), FPS, 4.0)
    # per 4 s period the phase moves by 360 * 4 * (1/4.4 - 1/4) = -32.7 degrees; two steps over three periods
    assert r["phase_drift_deg"] == pytest.approx(2 * 360 * 4 * (1 / 4.4 - 1 / 4), abs=10)
    assert np.diff(r["phase_deg"]) == pytest.approx([-32.7, -32.7], abs=6)


def test_less_than_one_period_has_no_answer():
    with pytest.raises(ValueError, match="no whole 4 s lighting period"):
        exposure_cycle(frame_luma(_lit(3.5)), FPS, LIGHT.period_s)


def test_world_reference_scores_the_worlds_own_clips():
    ref = world_reference([SCENE.prompt] * 2, 8.0, LIGHT)
    assert ref["summary"]["videos"] == 2 and [v["periods"] for v in ref["per_video"]] == [2, 2]
    assert ref["summary"]["amplitude_first"] == pytest.approx(0.15, abs=0.02)
    assert ref["summary"]["abs_mean_drift"] < 0.01


def _write(path, frames, prompt):
    w = Mp4Writer(path, fps=FPS, width=frames.shape[2], height=frames.shape[1])
    w.write(frames)
    w.finish()
    w.publish()
    path.with_suffix(".json").write_text(json.dumps({"prompt": prompt, "fps": FPS}))


def _folder(root, label, videos: dict[int, list[np.ndarray]]):
    d = root / label
    for m, clips in videos.items():
        (d / f"{m}x").mkdir(parents=True)
        for i, f in enumerate(clips):
            _write(d / f"{m}x" / f"p{i:02d}.mp4", f, SCENE.prompt)
    return d


def test_folder_reads_the_longest_length_and_tells_a_good_student_from_a_drifting_one(tmp_path):
    good = _folder(tmp_path, "good", {1: [_lit(4.0, seed=0)], 3: [_lit(12.0, seed=i) for i in range(2)]})
    f = _lit(12.0).astype(np.float64) * np.linspace(1.0, 1.25, 12 * FPS)[:, None, None, None]
    bad = _folder(tmp_path, "bad", {3: [np.clip(f, 0, 255).astype(np.uint8)]})
    rg, rb = exposure_of_folder(good, LIGHT.period_s), exposure_of_folder(bad, LIGHT.period_s)
    assert rg["multiple"] == 3 and rg["seconds"] == pytest.approx(12.0) and rg["summary"]["videos"] == 2
    assert rg["prompts"] == [SCENE.prompt] * 2
    assert rg["summary"]["abs_mean_drift"] < 0.02 and rb["summary"]["mean_drift"] > 0.12  # through H.264
    assert exposure_of_folder(good, LIGHT.period_s, 1)["per_video"][0]["periods"] == 1


def test_cli_exposure_json_and_bad_input(tmp_path):
    from sfpp.toyworld.model import toy_lighting

    lit = toy_lighting("v4lit")  # the shipped lit world's cycle (what --world v4lit reads against)
    good = _folder(tmp_path, "good", {2: [_lit(2 * lit.period_s, lit, seed=3)]})
    r = runner.invoke(app, ["toyworld", "exposure", str(good), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    world = f"world (1 prompts, {2 * lit.period_s:g} s)"
    assert set(res) == {str(good), world}
    assert res[str(good)]["summary"]["amplitude_first"] == pytest.approx(lit.amplitude, abs=0.03)
    assert res[world]["per_video"][0]["periods"] == 2
    assert res[world]["summary"]["amplitude_first"] == pytest.approx(lit.amplitude, abs=0.02)
    r = runner.invoke(app, ["toyworld", "exposure", str(good), "--no-reference"])
    assert r.exit_code == 0 and "good" in r.output and "world" not in r.output

    (tmp_path / "empty").mkdir()
    cases = {
        (str(tmp_path / "nope"),): "not a folder",
        (str(tmp_path / "empty"),): "no <m>x/ video folders",
        (str(good), "--multiple", "5"): "has no 5x/ videos",
        (str(good), "--multiple", "0"): "--multiple",
        (str(good), "--world", "v4"): "unlit",
        (str(good), "--world", "v9"): "not a toy architecture",
    }
    for args, msg in cases.items():
        r = runner.invoke(app, ["toyworld", "exposure", *args])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, (args, r.output)
    short = _folder(tmp_path, "short", {1: [_lit(lit.period_s - 1, lit)]})
    r = runner.invoke(app, ["toyworld", "exposure", str(short)])
    assert r.exit_code != 0 and "pick a longer --multiple" in r.output


def _summary(abs_drift: float, amp_last: float) -> dict:
    return {"summary": {"abs_mean_drift": abs_drift, "amplitude_last": amp_last}}


def _world(drifts, amps) -> dict:
    return {"per_video": [{"mean_drift": d, "amplitude_last": a} for d, a in zip(drifts, amps)]}


def test_exposure_verdict_applies_the_fixed_rule():
    from sfpp.errors import SfppError
    from sfpp.toyworld.exposure import exposure_verdict

    # World spread: |drift| 0.01..0.03 -> 0.02; amplitude 0.13..0.15 -> 0.02.
    world = {"world (3 prompts, 225 s)": _world([0.01, -0.03, 0.02], [0.15, 0.13, 0.14])}
    one = {"runs/v/sf_s0/": _summary(0.10, 0.14), "runs/v/sfpp_s0/": _summary(0.02, 0.135), **world}
    v = exposure_verdict(one)
    q = v["quantities"]
    assert q["abs_mean_drift"]["world_spread"] == pytest.approx(0.02)
    assert q["abs_mean_drift"]["sfpp_minus_sf"][0] == pytest.approx(-0.08)
    assert q["abs_mean_drift"]["differ"] and not q["amplitude_last"]["differ"]  # 0.005 < 0.02
    assert v["differ"] and not v["seed_check"] and q["abs_mean_drift"]["seed_difference"] is None
    # A difference inside the world's spread does not count.
    close = {"a/sf_s0": _summary(0.03, 0.14), "a/sfpp_s0": _summary(0.015, 0.14), **world}
    assert not exposure_verdict(close)["differ"]
    # Two seeds: the difference must beat the seed difference and keep its sign in both seeds.
    two = {**one, "runs/v/sf_s1/": _summary(0.05, 0.14), "runs/v/sfpp_s1/": _summary(0.02, 0.14)}
    v2 = exposure_verdict(two)
    assert v2["seed_check"] and v2["quantities"]["abs_mean_drift"]["seed_difference"] == pytest.approx(0.05)
    assert not v2["quantities"]["abs_mean_drift"]["differ"]  # seed 1 differs by 0.03 < 0.05
    flip = {**one, "runs/v/sf_s1/": _summary(0.02, 0.14), "runs/v/sfpp_s1/": _summary(0.10, 0.14)}
    assert not exposure_verdict(flip)["quantities"]["abs_mean_drift"]["differ"]  # signs disagree (seed diff 0.08)
    with pytest.raises(SfppError, match="world reference"):
        exposure_verdict({k: v for k, v in one.items() if not k.startswith("world")})
    with pytest.raises(SfppError, match="both"):
        exposure_verdict({"a/sf_s0": _summary(0.1, 0.1), **world})
    partial = {**one, "runs/v/sfpp_s0/": {"summary": {"abs_mean_drift": 0.02, "amplitude_last": 0.1, "videos": 2}}}
    with pytest.raises(SfppError, match="different numbers of videos"):
        exposure_verdict(partial)  # 2 videos beside the world's 3: a folder still being written
    with pytest.raises(SfppError, match="named"):
        exposure_verdict({"a/student": _summary(0.1, 0.1), **world})
