"""`sfpp evaluate` from the command line: two runs side by side, a corrupt MP4, outputs on disk."""

from __future__ import annotations

import csv
import json

import matplotlib.image as mpimg
import pytest
import typer
from evaluate_fixtures import brightening_video, moving_square_video, static_video, write_mp4
from typer.testing import CliRunner

from sfpp.cli.evaluate import evaluate_cmd

app = typer.Typer()
app.command("evaluate")(evaluate_cmd)
app.command("noop", hidden=True)(lambda: None)  # keep 'evaluate' a named subcommand, as in sfpp.cli.main


@pytest.fixture(autouse=True)
def _sfpp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SFPP_HOME", str(tmp_path / "home"))


@pytest.fixture
def two_runs(tmp_path):
    a, b = tmp_path / "model-a", tmp_path / "model-b"
    a.mkdir()
    b.mkdir()
    write_mp4(a / "p0.mp4", static_video(h=75, w=109, n=40), 8, sidecar={"prompt": "a still life"})
    write_mp4(a / "p1.mp4", moving_square_video(h=75, w=109, n=24, speed=2), 8, sidecar={"prompt": "a square"})
    write_mp4(b / "p0.mp4", brightening_video(h=75, w=109, n=40), 8, sidecar={"prompt": "a still life"})
    write_mp4(b / "p1.mp4", moving_square_video(h=75, w=109, n=24, speed=1), 8, sidecar={"prompt": "a square"})
    return a, b


def test_two_runs_table_json_csv_plots(two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["evaluate", str(a), str(b), "--out", str(out), "--window", "2s"])
    assert res.exit_code == 0, res.output
    # the table shows both runs side by side and the aggregates
    assert "model-a" in res.output and "model-b" in res.output
    assert "exposure_stability_proxy" in res.output and "Temporal Quality (proxy)" in res.output

    data = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["model-a", "model-b"]
    summ = {r["name"]: r["summary"] for r in data["runs"]}
    # run b brightens to white: its exposure proxy is far below run a's
    assert summ["model-a"]["exposure_stability_proxy"]["value"] > 95
    assert summ["model-b"]["exposure_stability_proxy"]["value"] < 70
    assert summ["model-b"]["colour_drift"]["value"] > summ["model-a"]["colour_drift"]["value"] + 5
    # per-run curves: the mean over videos per window, on seconds
    curve = data["runs"][0]["curves"]["mean_luma"]
    # p0 (40 frames) has windows 0-2, 2-4, 3-5 s; p1 (24 frames) 0-2, 1-3 s
    assert [c["mid_s"] for c in curve] == [1.0, 2.0, 3.0, 4.0] and [c["n_videos"] for c in curve] == [2, 1, 1, 1]
    assert data["config"]["window_s"] == 2.0

    with open(out / "windows.csv") as f:
        rows = list(csv.DictReader(f))
    flick = [r for r in rows if r["run"] == "model-a" and r["video"] == "p0" and r["metric"] == "temporal_flickering"]
    assert [(r["start_s"], r["end_s"]) for r in flick] == [("0.0", "2.0"), ("2.0", "4.0"), ("3.0", "5.0")]
    assert float(flick[0]["value"]) == pytest.approx(1.0, abs=1e-6)
    with open(out / "summary.csv") as f:
        summary = {(r["run"], r["metric"]): r for r in csv.DictReader(f)}
    assert float(summary[("model-b", "flow_magnitude")]["value"]) < float(summary[("model-a", "flow_magnitude")]["value"])
    assert summary[("model-a", "temporal_quality_proxy")]["family"] == "aggregate"

    png = out / "plots" / "exposure_stability_proxy.png"
    img = mpimg.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert (out / "plots" / "flow_magnitude_per_frame.png").is_file()

    # a second run is served from the cache and prints the same numbers as JSON
    res2 = CliRunner().invoke(app, ["evaluate", str(a), str(b), "--out", str(tmp_path / "out2"), "--json"])
    assert res2.exit_code == 0, res2.output
    data2 = json.loads(res2.stdout)
    v = data2["runs"][1]["videos"][0]["metrics"]["exposure_stability_proxy"]
    assert v["cached"] is True
    assert data2["runs"][1]["summary"] == data["runs"][1]["summary"]


def test_corrupt_mp4_is_reported_and_the_good_one_scored(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_mp4(run / "good.mp4", static_video(h=75, w=109, n=16), 8, sidecar={"prompt": "ok"})
    (run / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["evaluate", str(run), "--out", str(out), "-m", "temporal_flickering,colour_drift"])
    assert res.exit_code == 1
    assert "bad.mp4" in res.output and "cannot decode" in res.output
    data = json.loads((out / "results.json").read_text())
    videos = {v["name"]: v for v in data["runs"][0]["videos"]}
    assert videos["good"]["metrics"]["temporal_flickering"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert videos["bad"]["error"].startswith("cannot decode bad.mp4")
    assert data["runs"][0]["summary"]["temporal_flickering"]["n_videos"] == 1
    assert data["errors"][0]["video"] == "bad"
    assert (out / "windows.csv").is_file() and (out / "plots" / "temporal_flickering.png").is_file()


def test_usage_errors_exit_2(tmp_path, two_runs):
    a, _ = two_runs
    res = CliRunner().invoke(app, ["evaluate", str(a), "--metric", "sharpnes"])
    assert res.exit_code == 2 and "unknown metric 'sharpnes'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(a), "--window", "soon"])
    assert res.exit_code == 2 and "--window" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(a), "-m", "subject_consistency"])
    assert res.exit_code == 2 and "--weights-dir" in res.output
