"""Nothing lost at the edges: full disks, interrupts, stale rollouts, bad input (generate, rollout, toyworld, distill)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train_helpers import one_line_error, run, write_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--model", "debug", "--height", "32", "--width", "32", "--window", "6")


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _one_line_exit_1(r, *needles):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip().startswith("error:")]
    assert len(lines) == 1, r.output
    for n in needles:
        assert n in lines[0], r.output


# ---------------------------------------------------------------------- full disk
@pytest.mark.parametrize("earlier", [True, False])
def test_a_full_disk_while_writing_the_video_keeps_what_was_there(tmp_path, earlier):
    """ffmpeg's output goes to /dev/full (ENOSPC on every write): one line, exit 1, nothing replaced or left."""
    out = tmp_path / "x.mp4"
    if earlier:
        assert run("generate", "a red circle", "--frames", 9, *TINY, "--out", out).exit_code == 0
        before = (_digest(out), _digest(out.with_suffix(".json")))
    (tmp_path / "x.partial.mp4").symlink_to("/dev/full")
    r = run("generate", "a blue square", "--frames", 9, *TINY, "--out", out)
    _one_line_exit_1(r, "x.mp4")
    assert "wrote" not in r.output
    if earlier:
        assert (_digest(out), _digest(out.with_suffix(".json"))) == before
    else:
        assert not out.exists() and not out.with_suffix(".json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["x.json", "x.mp4"] if earlier else [])


def test_a_full_disk_while_writing_the_sidecar_publishes_neither(tmp_path):
    out = tmp_path / "x.mp4"
    assert run("generate", "a red circle", "--frames", 9, *TINY, "--out", out).exit_code == 0
    before = (_digest(out), _digest(out.with_suffix(".json")))
    (tmp_path / "x.json.tmp").symlink_to("/dev/full")
    r = run("generate", "a blue square", "--frames", 9, *TINY, "--out", out)
    _one_line_exit_1(r, "x.json")
    assert (_digest(out), _digest(out.with_suffix(".json"))) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.mp4"]


# ---------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_generate_keeps_a_playable_partial_video_with_its_sidecar(tmp_path, sig):
    from sfpp.video import read_mp4

    out = tmp_path / "long.mp4"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFPP_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", SFPP_HOME=str(tmp_path / "home"))
    p = subprocess.Popen([sys.executable, "-m", "sfpp.cli.main", "generate", "a red circle on a black background",
                          "--seconds", "120", "--out", str(out)], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    partial = tmp_path / "long.partial.mp4"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if partial.is_file() and partial.stat().st_size > 20_000:  # a few seconds of video written
            break
        time.sleep(0.05)
    assert p.poll() is None, p.stdout.read().decode()[-2000:]
    t0 = time.time()
    p.send_signal(sig)
    rc = p.wait(60)
    output = p.stdout.read().decode()
    assert rc == 128 + sig, output
    assert time.time() - t0 < 30
    assert "Traceback" not in output and "interrupted" in output and "long.partial.mp4" in output
    assert not out.exists() and not out.with_suffix(".json").exists()
    side = json.loads((tmp_path / "long.partial.json").read_text())
    assert side["partial"] is True and side["interrupted_by"] == signal.Signals(sig).name
    frames, fps = read_mp4(partial)
    assert side["num_frames"] == len(frames) > 0 and fps == 16 and side["frames_planned"] == 1920
    assert [f.name for f in tmp_path.iterdir() if f.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------- stale rollouts
def test_rollout_reruns_only_what_changed_and_says_so(tmp_path):
    from sfpp.batch import load_latents

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square\n")
    out = tmp_path / "r"
    base = ("rollout", "--prompts", prompts, "--out", out, *TINY)
    r = run(*base, "--frames", 9)
    assert r.exit_code == 0 and "2 generated" in r.output, r.output
    folders = sorted(out.iterdir())
    assert load_latents(folders[0] / "latents.safetensors").shape[2] == 3
    r = run(*base, "--frames", 9)
    assert r.exit_code == 0 and "0 generated, 2 skipped" in r.output, r.output
    r = run(*base, "--frames", 17)  # longer: both recomputed, the reason named
    assert r.exit_code == 0 and "regenerated because settings changed" in r.output and "num_frames 9 -> 17" in r.output
    assert load_latents(folders[0] / "latents.safetensors").shape[2] == 6
    r = run(*base, "--frames", 17, "--seed", 1)  # another seed: recomputed too
    assert r.exit_code == 0 and "2 generated" in r.output and "seed" in r.output
    assert json.loads((folders[1] / "done.json").read_text())["key"]["seed"] == 2


# ---------------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize("args, needles", [
    (["generate", "x", "--seconds", "1e308"], ["--seconds", "hours"]),
    (["generate", "x", "--seconds", "inf"], ["--seconds"]),
    (["generate", "x", "--seconds", "nan"], ["--seconds"]),
    (["generate", "x", "--device", "tpu"], ["--device", "tpu"]),
    (["generate", "x", "--fps", "0"], ["--fps"]),
    (["generate", "a red circle[xs]"], ["[xs]", "switch time"]),
    (["generate", "a red circle[0s] | a blue square[500s]", "--seconds", "1"], ["500s", "never be used"]),
    (["toyworld", "clip", "a red circle", "--seconds", "nan"], ["--seconds"]),
    (["toyworld", "clip", "a red circle", "--seconds", "-1"], ["--seconds"]),
    (["toyworld", "oracle", ".", "--window", "0"], ["--window"]),
    (["toyworld", "oracle", ".", "--window", "nan"], ["--window"]),
])
def test_bad_values_are_one_line_errors(tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    one_line_error(run(*args), *needles)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_bad_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("un cercle rouge \xe9t\xe9\n".encode("latin-1"))
    one_line_error(run("rollout", "--prompts", bad, "--out", tmp_path / "o", *TINY), "not UTF-8", "latin1.txt")
    sched = tmp_path / "s.toml"
    sched.write_bytes(b'[[prompt]]\nat = "0s"\ntext = "caf\xe9"\n')
    one_line_error(run("generate", "--prompt-file", sched, *TINY), "not UTF-8")
    cfg = write_config(tmp_path / "cfg")
    cfg.write_bytes(cfg.read_bytes() + b"# \xff\xfe\n")
    one_line_error(run("distill", "--config", cfg), "not UTF-8", "config file")
    nan = tmp_path / "nan.json"
    nan.write_text('[{"at": 0, "text": "a red circle"}, {"at": NaN, "text": "a blue square"}]')
    one_line_error(run("generate", "--prompt-file", nan, *TINY), "finite")
    late = tmp_path / "late.json"
    late.write_text('[{"at": 0, "text": "a red circle"}, {"at": 3, "text": "a blue square"}]')
    one_line_error(run("generate", "--prompt-file", late, "--seconds", "1", *TINY), "3s", "never be used")
    one_line_error(run("generate", "--prompt-file", tmp_path, *TINY), "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "late.json", "latin1.txt", "nan.json", "s.toml"]


def test_a_killed_generate_leaves_at_worst_a_playable_partial_video(tmp_path):
    """SIGKILL: no handler runs, but ffmpeg (in its own session) reads end-of-input and closes the file."""
    from sfpp.video import read_mp4

    env = {k: v for k, v in os.environ.items() if not k.startswith("SFPP_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", SFPP_HOME=str(tmp_path / "home"))
    p = subprocess.Popen([sys.executable, "-m", "sfpp.cli.main", "generate", "a red circle on a black background",
                          "--seconds", "120", "--out", str(tmp_path / "k.mp4")], env=env, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / "k.partial.mp4"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not (partial.is_file() and partial.stat().st_size > 20_000):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    assert p.wait(30) == -signal.SIGKILL
    deadline = time.time() + 20  # ffmpeg finishes on its own
    frames = None
    while time.time() < deadline:
        try:
            frames, fps = read_mp4(partial)
            break
        except OSError:
            time.sleep(0.2)
    assert frames is not None and len(frames) > 0 and fps == 16
    assert not (tmp_path / "k.mp4").exists()
