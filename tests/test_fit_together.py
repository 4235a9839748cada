"""Commands fit together: `evaluate` and `toyworld oracle` read what `rollout` and `generate` write,
and their tables stay whole when piped or at 80 columns."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from evaluate_fixtures import static_video, write_mp4
from train_helpers import one_line_error, run
from sfpp.errors import SfppError
from sfpp.videos import find_videos

PROMPTS = ["a red circle", "a blue square over the sea"]
SUBS = ["0000-a-red-circle", "0001-a-blue-square-over-the-sea"]
FAST = ["-m", "temporal_flickering,mean_luma"]  # offline metrics without optical flow


@pytest.fixture(scope="module")
def rollout_dir(tmp_path_factory):
    """A real `sfpp rollout` folder (debug model, 9 frames of 32x32 per prompt), built once."""
    root = tmp_path_factory.mktemp("rollout")
    (root / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SFPP_HOME", str(root / "home"))
        mp.setenv("SFPP_MODEL", "debug")
        r = run("rollout", "--prompts", root / "p.txt", "--out", root / "ro", "--model", "debug",
                "--height", 32, "--width", 32, "--window", 6, "--frames", 9)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (root / "ro").iterdir()) == SUBS
    return root / "ro"


@pytest.fixture
def mixed_dir(tmp_path, rollout_dir):
    """Rollout sub-folders + a flat generate-style video + things that must be ignored."""
    mixed = tmp_path / "mixed"
    for sub in SUBS:
        shutil.copytree(rollout_dir / sub, mixed / sub)
    src = rollout_dir / SUBS[0] / "preview.mp4"
    shutil.copy(src, mixed / "flat.mp4")
    side = json.loads((rollout_dir / SUBS[0] / "preview.json").read_text())
    (mixed / "flat.json").write_text(json.dumps({**side, "prompt": "a green square"}))
    (mixed / "extra").mkdir()
    shutil.copy(src, mixed / "extra" / "clip.mp4")  # no sidecar: prompt from --prompts / --prompt
    (mixed / "half.partial.mp4").write_bytes(b"unfinished")
    (mixed / SUBS[1] / "preview.partial.mp4").write_bytes(b"unfinished")
    (mixed / "deep" / "deeper").mkdir(parents=True)
    shutil.copy(src, mixed / "deep" / "deeper" / "too-deep.mp4")  # two levels down: not read
    return mixed


def test_evaluate_scores_every_video_of_a_rollout_folder(rollout_dir, tmp_path):
    out = tmp_path / "ev"
    r = run("evaluate", rollout_dir, "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "results.json").read_text())
    videos = data["runs"][0]["videos"]
    assert [v["name"] for v in videos] == SUBS
    assert [v["prompt"] for v in videos] == PROMPTS  # from preview.json
    assert [v["file"] for v in videos] == [f"{s}/preview.mp4" for s in SUBS]
    assert all(v["metrics"]["mean_luma"]["value"] is not None for v in videos)
    with open(out / "summary.csv") as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert rows["mean_luma"]["n_videos"] == "2" and rows["temporal_flickering"]["n_videos"] == "2"
    with open(out / "windows.csv") as f:
        assert {r["video"] for r in csv.DictReader(f)} == set(SUBS)


def test_oracle_scores_every_video_of_a_rollout_folder(rollout_dir):
    r = run("toyworld", "oracle", rollout_dir, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [x["name"] for x in res] == SUBS
    assert [x["frames"] for x in res] == [9, 9]
    assert res[1]["prompt"].startswith("a blue square")  # from the sidecar
    # one rollout video given as a file is named after its folder
    r = run("toyworld", "oracle", rollout_dir / SUBS[0] / "preview.mp4", "--json")
    assert r.exit_code == 0, r.output
    assert [x["name"] for x in json.loads(r.stdout)] == [SUBS[0]]


def test_mixed_folder_evaluate_and_oracle(mixed_dir, tmp_path):
    names = ["0000-a-red-circle", "0001-a-blue-square-over-the-sea", "extra", "flat"]
    assert [v.name for v in find_videos(mixed_dir)] == names
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("extra\ta yellow star\n")
    out = tmp_path / "ev"
    r = run("evaluate", mixed_dir, "--out", out, "--prompts", prompts, *FAST)
    assert r.exit_code == 0, r.output
    videos = json.loads((out / "results.json").read_text())["runs"][0]["videos"]
    assert [v["name"] for v in videos] == names
    assert {v["name"]: v["prompt"] for v in videos} == {
        "0000-a-red-circle": "a red circle", "0001-a-blue-square-over-the-sea": "a blue square over the sea",
        "extra": "a yellow star", "flat": "a green square"}
    assert all(v["error"] is None for v in videos)

    r = run("toyworld", "oracle", mixed_dir, "--json", "--prompt", "a white triangle on a navy background")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [x["name"] for x in res] == names
    assert res[3]["prompt"].startswith("a green square") and res[2]["prompt"].startswith("a white triangle")
    # without --prompt, the video without a sidecar is a one-line error naming it
    one_line_error(run("toyworld", "oracle", mixed_dir), "clip.mp4", "--prompt")
    one_line_error(run("toyworld", "oracle", mixed_dir, "--prompt", "a sunset"), "clip.mp4", "no ToyWorld object")


def test_prompts_file_names_for_rollout_videos(tmp_path, rollout_dir):
    from sfpp.evaluate.video import discover_run, load_prompts_file

    run_dir = tmp_path / "ro"
    for sub in SUBS:
        (run_dir / sub).mkdir(parents=True)
        shutil.copy(rollout_dir / sub / "preview.mp4", run_dir / sub / "preview.mp4")  # sidecars lost
    (tmp_path / "p.json").write_text(json.dumps({SUBS[0]: "by name", f"{SUBS[1]}/preview.mp4": "by path"}))
    got = {v.name: v.prompt for v in discover_run(run_dir, load_prompts_file(tmp_path / "p.json")).videos}
    assert got == {SUBS[0]: "by name", SUBS[1]: "by path"}
    # metrics without prompts run on videos without sidecars
    from sfpp.evaluate import EvaluateConfig, evaluate_runs

    ev = evaluate_runs([run_dir], EvaluateConfig(metrics=("mean_luma",)))
    assert ev.ok and [v["name"] for v in ev.runs[0]["videos"]] == SUBS


def test_naming_rules_and_what_is_ignored(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    for rel in ("b.mp4", "a.mp4", "a/preview.mp4", "solo/x.mp4", "multi/p1.mp4", "multi/p0.mp4",
                "c.partial.mp4", ".hidden.mp4", ".cache/y.mp4", "deep/er/z.mp4", "notes.txt"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    (d / "a.json").write_text("{}")
    found = find_videos(d)
    assert [(v.name, v.rel) for v in found] == [
        ("a", "a.mp4"), ("a/preview", "a/preview.mp4"),  # 'a' is taken by a.mp4
        ("b", "b.mp4"), ("multi/p0", "multi/p0.mp4"), ("multi/p1", "multi/p1.mp4"), ("solo", "solo/x.mp4")]
    assert found[0].sidecar == d / "a.json" and found[1].sidecar is None
    assert found[1].key == "a/preview"
    assert [v.name for v in find_videos(d / "b.mp4")] == ["b"]
    assert [v.name for v in find_videos(d / "a" / "preview.mp4")] == ["a"]


@pytest.mark.parametrize("layout,needle", [
    ({}, "has no .mp4 files in it or in its direct sub-folders"),
    ({"x.partial.mp4": b"x", "s/y.partial.mp4": b"x"}, "only unfinished"),
    ({"r/s/v.mp4": b"x"}, "not searched deeper"),
])
def test_folders_without_videos_are_one_line_errors(tmp_path, layout, needle):
    d = tmp_path / "empty"
    d.mkdir()
    for rel, data in layout.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    with pytest.raises(SfppError, match=needle):
        find_videos(d)
    one_line_error(run("evaluate", d, "--out", tmp_path / "ev"), needle)
    one_line_error(run("toyworld", "oracle", d), needle)
    one_line_error(run("toyworld", "oracle", tmp_path / "nope"), "does not exist")
    (tmp_path / "notes.txt").write_text("x")
    one_line_error(run("evaluate", tmp_path / "notes.txt"), "is not an .mp4 file")


def test_tables_stay_whole_when_piped_at_80_columns(tmp_path, monkeypatch):
    """CliRunner's stdout is not a terminal; COLUMNS=80 used to cut numbers and names to '…'."""
    monkeypatch.setenv("COLUMNS", "80")
    runs = []
    for i in range(4):
        d = tmp_path / f"a-rather-long-run-name-number-{i}"
        d.mkdir()
        write_mp4(d / "v.mp4", static_video(h=32, w=32, n=6, seed=i), 8, sidecar={"prompt": "a red circle"})
        runs.append(d)
    out = tmp_path / "ev"
    r = run("evaluate", *runs, "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    assert "…" not in r.output
    from sfpp.evaluate.report import _fmt

    data = json.loads((out / "results.json").read_text())
    for rd in data["runs"]:
        assert rd["name"] in r.output
        for m in ("temporal_flickering", "mean_luma"):
            assert _fmt(rd["summary"][m]["value"]) in r.output

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("0000-a-red-circle-on-a-black-background", "0001-a-blue-square-over-the-sea-at-night"):
        write_mp4(clips / f"{name}.mp4", static_video(h=32, w=32, n=4), 8, sidecar={"prompt": "a red circle"})
    r = run("toyworld", "oracle", clips)
    assert r.exit_code == 0, r.output
    assert "…" not in r.output
    assert "0001-a-blue-square-over-the-sea-at-night" in r.output and "shapes right" in r.output and "all moving" in r.output


def test_print_table_in_a_narrow_terminal_wraps_but_never_cuts(monkeypatch, capsys):
    from rich.table import Table

    from sfpp.cli._common import print_table

    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat stdout as a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    t = Table(title="t")
    t.add_column("metric", no_wrap=True)
    for i in range(3):
        t.add_column(f"0000-a-red-circle-{i}", justify="right")
    t.add_row("exposure_stability_proxy", "0.961234", "12.345678", "99.999999")
    print_table(t)
    text = capsys.readouterr().out
    assert "…" not in text
    for needle in ("exposure_stability_proxy", "0.961234", "12.345678", "99.999999", "0000-a-red-circle-2"):
        assert needle in text
