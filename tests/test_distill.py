"""`sfpp distill` end to end on `debug`: stages, checkpoints, resume after SIGKILL, bad input, 2 processes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sfpp.cli.main import app
from tests.train_helpers import write_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


from tests.train_helpers import one_line_error, run  # noqa: E402


def test_every_stage_runs_and_generate_uses_the_checkpoint(tmp_path):
    cfg = write_config(tmp_path, run={"sample_every": 3, "sample_seconds": 0.5})
    out = tmp_path / "run"
    r = run("distill", "--config", cfg, "--out", out)
    assert r.exit_code == 0, r.output
    for stage in ("ode", "self-forcing", "extended"):
        d = out / stage
        rows = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
        assert [row["step"] for row in rows] == [1, 2, 3]
        assert (d / "checkpoints" / "latest").read_text() == "step_000003"
        assert (d / "student.safetensors").is_file() and (d / "student_ema.safetensors").is_file()
        assert (d / "samples" / "step_000003.mp4").is_file()
        assert list((d / "tb").iterdir())  # TensorBoard event file
    ext = [json.loads(l) for l in (out / "extended" / "log.jsonl").read_text().splitlines()]
    assert all(6 <= row["N"] <= 18 and 0 <= row["window_start"] <= row["N"] - 6 for row in ext)
    traj = json.loads((out / "ode" / "trajectories" / "manifest.json").read_text())
    assert traj["num_trajectories"] == 4 and len(traj["shards"]) == 2
    # stages chain: self-forcing starts from the ODE student, so they differ from the debug init
    a = load_file(str(out / "ode" / "student.safetensors"))
    b = load_file(str(out / "extended" / "student.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert "budget 1x" in (out / "config.toml").read_text()
    v = tmp_path / "v.mp4"
    r = run("generate", "a red circle", "--frames", 9, "--height", 32, "--width", 32, "--window", 6,
            "--checkpoint", out / "extended" / "student_ema.safetensors", "--out", v)
    assert r.exit_code == 0, r.output
    assert json.loads(v.with_suffix(".json").read_text())["checkpoint_sha256"]
    # resume of a finished run is a no-op
    r = run("distill", "--config", cfg, "--out", out, "--resume")
    assert r.exit_code == 0, r.output


def _distill_proc(cfg, out, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "sfpp.cli.main", "distill", "--config", str(cfg),
                             "--stage", "self-forcing", "--out", str(out), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)


def test_sigkill_and_resume_reaches_the_same_weights_and_losses(tmp_path):
    cfg = write_config(tmp_path, self_forcing={"base_steps": 6})
    ref = _distill_proc(cfg, tmp_path / "ref")
    assert ref.wait(300) == 0, ref.stdout.read().decode()[-2000:]
    out = tmp_path / "killed"
    p = _distill_proc(cfg, out)
    latest = out / "self-forcing" / "checkpoints" / "latest"
    target = f"step_{random.Random().randint(1, 4):06d}"  # kill right after a random step's checkpoint
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= target:
            break
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert not (out / "self-forcing" / "done.json").is_file()
    r = _distill_proc(cfg, out, "--resume")
    assert r.wait(300) == 0, r.stdout.read().decode()[-2000:]
    a = load_file(str(tmp_path / "ref" / "self-forcing" / "student.safetensors"))
    b = load_file(str(out / "self-forcing" / "student.safetensors"))
    assert set(a) == set(b)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    la = [json.loads(l) for l in (tmp_path / "ref" / "self-forcing" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (out / "self-forcing" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lb] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(la, lb):
        assert x["gen_loss"] == pytest.approx(y["gen_loss"], rel=1e-5, abs=1e-9)
        assert x["critic_loss"] == pytest.approx(y["critic_loss"], rel=1e-5)
        assert (x["N"], x["exit_step"]) == (y["N"], y["exit_step"])


def test_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    from sfpp.train import state as state_mod
    from sfpp.train.state import CheckpointManager

    cfg = write_config(tmp_path, self_forcing={"base_steps": 3})
    out = tmp_path / "run"
    calls = {"n": 0}
    real = state_mod.save_student

    class Killed(BaseException):  # like SIGKILL: no handler runs
        pass

    def dying_save(path, sd, config):  # dies in the middle of writing the 2nd checkpoint
        calls["n"] += 1
        if calls["n"] == 3:  # checkpoint 1 wrote student + student_ema; this is checkpoint 2's first file
            Path(path).write_bytes(b"partial")
            raise Killed()
        return real(path, sd, config)

    monkeypatch.setattr(state_mod, "save_student", dying_save)
    with pytest.raises(Killed):
        runner.invoke(app, ["distill", "--config", str(cfg), "--stage", "self-forcing", "--out", str(out)],
                      catch_exceptions=False)
    assert (out / "self-forcing" / "checkpoints" / "step_000002.tmp").is_dir()  # the interrupted write
    mgr = CheckpointManager(out / "self-forcing" / "checkpoints")
    assert mgr.latest().name == "step_000001"
    st = mgr.load()
    assert st["step"] == 1
    assert load_file(str(mgr.latest() / "student.safetensors"))  # readable
    monkeypatch.setattr(state_mod, "save_student", real)
    r = run("distill", "--config", cfg, "--stage", "self-forcing", "--out", out, "--resume")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "self-forcing" / "done.json").read_text())["step"] == 3


def test_bad_input(tmp_path):
    cfg = write_config(tmp_path)
    one_line_error(run("distill", "--config", tmp_path / "nope.toml"), "does not exist")
    one_line_error(run("distill", "--config", cfg, "--budget", "eight"), "--budget must look like '8x'")
    one_line_error(run("distill", "--config", cfg, "--budget", "0x"), "--budget")
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace("[optim]", "[optim]\nlearning_rat = 3\nfoo = 1"))
    one_line_error(run("distill", "--config", bad), "unknown config key(s) in [optim]: foo, learning_rat")
    bad.write_text(cfg.read_text() + "\n[wandb]\nkey = 1\n")
    one_line_error(run("distill", "--config", bad), "unknown config key(s): wandb")
    (tmp_path / "prompts.txt").write_text("\n# only a comment\n")
    one_line_error(run("distill", "--config", cfg), "prompts file", "is empty")
    (tmp_path / "prompts.txt").unlink()
    one_line_error(run("distill", "--config", cfg), "prompts file", "does not exist")
    one_line_error(run("distill", "--config", cfg, "--stage", "gan"), "--stage must be one of")
    (tmp_path / "prompts.txt").write_text("a red circle\n")
    odd = write_config(tmp_path / "odd", model={"height": 24})  # debug: codec x8, patch x2 -> multiples of 16
    one_line_error(run("distill", "--config", odd, "--out", tmp_path / "odd_run"), "multiples of 16/16", "24x32")


def test_incompatible_resume_and_existing_run_lose_nothing(tmp_path):
    cfg = write_config(tmp_path, self_forcing={"base_steps": 2})
    out = tmp_path / "run"
    assert run("distill", "--config", cfg, "--stage", "self-forcing", "--out", out).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (out / "self-forcing").rglob("*") if p.is_file()}
    one_line_error(run("distill", "--config", cfg, "--stage", "self-forcing", "--out", out), "already holds a run", "--resume")
    (out / "self-forcing" / "done.json").unlink()
    other = write_config(tmp_path / "other", rollout={"window": 9})
    one_line_error(run("distill", "--config", other, "--stage", "self-forcing", "--out", out, "--resume"),
                   "cannot resume", "[rollout]", "window")
    after = {p: p.stat().st_mtime_ns for p in (out / "self-forcing").rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.name != "done.json"} == {k: v for k, v in before.items() if k.name != "done.json"}


@pytest.mark.slow
def test_two_processes_under_accelerate_end_with_identical_weights(tmp_path):
    cfg = write_config(tmp_path, run={"device": "cpu"}, ode={"base_steps": 3, "num_trajectories": 4},
                       self_forcing={"base_steps": 3}, extended={"base_steps": 3})
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # accelerate's `--cpu` flag starts a single process unless MPI is set up; `--multi_gpu` starts
    # two torchrun processes, which run on the CPU with gloo because [run].device = "cpu".
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           str(ROOT / "tests" / "dist_check.py"), str(cfg), str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for stage in ("ode", "self-forcing", "extended"):
        h = [json.loads((out / f"hash-{stage}-rank{r}.json").read_text()) for r in (0, 1)]
        assert h[0] == h[1], stage
        assert h[0]["steps"] == 3
    assert (out / "extended" / "student.safetensors").is_file()


def test_gradient_accumulation_and_bf16_mixed_precision_run(tmp_path):
    """grad_accum = 2 averages two micro-batches per update; bf16 autocast runs on CPU too."""
    from sfpp.checkpoints import read_checkpoint

    outs = {}
    for name, run_cfg in (("accum", {"grad_accum": 2}), ("bf16", {"mixed_precision": "bf16"}), ("plain", {})):
        cfg = write_config(tmp_path / name, self_forcing={"base_steps": 1}, run=run_cfg)
        r = run("distill", "--config", cfg, "--stage", "self-forcing", "--out", tmp_path / name / "out")
        assert r.exit_code == 0, r.output
        row = json.loads((tmp_path / name / "out" / "self-forcing" / "log.jsonl").read_text().splitlines()[0])
        assert row["gen_loss"] > 0 and row["critic_loss"] > 0
        outs[name] = read_checkpoint(tmp_path / name / "out" / "self-forcing" / "student.safetensors")[0]
    # accumulation sees another micro-batch, bf16 rounds differently: both change the update
    for name in ("accum", "bf16"):
        assert any(not torch.equal(outs[name][k], outs["plain"][k]) for k in outs["plain"])


def test_seed_override_is_saved_and_changes_the_run(tmp_path):
    cfg = write_config(tmp_path, run={"stages": ["self-forcing"]}, self_forcing={"base_steps": 1})
    outs = {}
    for name, extra in (("a", ()), ("b", ("--seed", 7)), ("c", ("--seed", 7))):
        outs[name] = tmp_path / name
        r = run("distill", "--config", cfg, "--out", outs[name], *extra)
        assert r.exit_code == 0, r.output
    assert "seed = 0" in (outs["a"] / "config.toml").read_text()
    assert "seed = 7" in (outs["b"] / "config.toml").read_text()
    from sfpp.checkpoints import read_checkpoint

    _, meta = read_checkpoint(outs["b"] / "self-forcing" / "student.safetensors")
    assert meta["distill_config"]["run"]["seed"] == 7  # the checkpoint describes its run
    w = {k: load_file(str(outs[k] / "self-forcing" / "student.safetensors")) for k in outs}
    assert any(not torch.equal(w["a"][k], w["b"][k]) for k in w["a"])  # another seed, another run
    assert all(torch.equal(w["b"][k], w["c"][k]) for k in w["b"])  # same seed, same run


def test_resume_finishes_a_multi_stage_run_killed_in_its_second_stage(tmp_path):
    """SIGKILL in stage 2 of 3; `--resume` skips stage 1 (exports verified), resumes 2, runs 3: same weights."""
    cfg = write_config(tmp_path, self_forcing={"base_steps": 4})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

    def proc(out, *extra):
        return subprocess.Popen([sys.executable, "-m", "sfpp.cli.main", "distill", "--config", str(cfg), "--out",
                                 str(out), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)

    ref = proc(tmp_path / "ref")
    assert ref.wait(600) == 0, ref.stdout.read().decode()[-2000:]
    out = tmp_path / "killed"
    p = proc(out)
    latest = out / "self-forcing" / "checkpoints" / "latest"
    deadline = time.time() + 400
    while time.time() < deadline and p.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step_000002":
            break
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert (out / "ode" / "done.json").is_file() and not (out / "self-forcing" / "done.json").exists()
    assert not (out / "extended").exists()
    ode_before = (out / "ode" / "student.safetensors").stat().st_mtime_ns
    # without --resume the run is refused (nothing touched); with it, every stage finishes
    r = proc(out)
    assert r.wait(120) == 2 and b"--resume" in r.stdout.read()
    r = proc(out, "--resume")
    assert r.wait(600) == 0, r.stdout.read().decode()[-2000:]
    assert (out / "ode" / "student.safetensors").stat().st_mtime_ns == ode_before  # skipped, not redone
    for stage in ("ode", "self-forcing", "extended"):
        a = load_file(str(tmp_path / "ref" / stage / "student.safetensors"))
        b = load_file(str(out / stage / "student.safetensors"))
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, stage
    # a damaged export of a finished stage is found on the next resume, with the fix named
    (out / "ode" / "student.safetensors").write_bytes(b"damaged")
    one_line_error(run("distill", "--config", cfg, "--out", out, "--resume"), "ode", "student.safetensors", "done.json")
