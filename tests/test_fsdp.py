"""FSDP (`[run] fsdp = true`, `sfpp.parallel`): two CPU processes (gloo) shard student, critic and
teacher; the result must equal plain data parallelism, including across a resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sfpp.train.state import CheckpointManager
from tests.train_helpers import one_line_error, run, write_config

ROOT = Path(__file__).resolve().parents[1]


def _launch(cfg: Path, out: Path, *extra: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", SFPP_MODEL="debug")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "-m", "sfpp.cli.main", "distill", "--config", str(cfg), "--out", str(out), *extra]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def _full_dcp(ckpt: Path, tmp: Path) -> dict:
    """A sharded (DCP) checkpoint read back whole, with torch's own converter."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(ckpt / "dcp"), str(tmp))
    return torch.load(tmp, weights_only=False)


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.slow
def test_fsdp_equals_data_parallel_and_resumes(tmp_path):
    steps = {"ode": {"base_steps": 3, "num_trajectories": 6}, "self_forcing": {"base_steps": 3},
             "extended": {"base_steps": 3}}
    ddp = write_config(tmp_path / "ddp", run={"device": "cpu"}, **steps)
    _launch(ddp, tmp_path / "ddp" / "run")
    # FSDP: the extended stage stops after 2 steps, then a resume (from the sharded run's gathered
    # checkpoint: weights, critic, EMA, Adam moments, RNG) takes it to 3.
    first = write_config(tmp_path / "fsdp", run={"device": "cpu", "fsdp": True},
                         **{**steps, "extended": {"base_steps": 2}})
    _launch(first, tmp_path / "fsdp" / "run")
    assert json.loads((tmp_path / "fsdp" / "run" / "extended" / "done.json").read_text())["step"] == 2
    (tmp_path / "fsdp" / "run" / "extended" / "done.json").unlink()
    # the resumed part also runs with gradient checkpointing (recomputed blocks re-gather their shards)
    more = write_config(tmp_path / "fsdp2", run={"device": "cpu", "fsdp": True, "gradient_checkpointing": True},
                        **steps)
    _launch(more, tmp_path / "fsdp" / "run", "--resume")

    for stage in ("ode", "self-forcing", "extended"):
        d, f = tmp_path / "ddp" / "run" / stage, tmp_path / "fsdp" / "run" / stage
        done = json.loads((f / "done.json").read_text())
        assert done["step"] == 3
        shard = done["fsdp"]
        assert shard["world"] == 2 and sum(shard["student_params_per_rank"]) >= shard["student_params"]
        assert max(shard["student_params_per_rank"]) <= 0.55 * shard["student_params"]  # each rank ~half
        for name in ("student", "student_ema"):
            a, b = load_file(str(d / f"{name}.safetensors")), load_file(str(f / f"{name}.safetensors"))
            assert _max_diff(a, b) <= 1e-5, (stage, name)
        if stage != "ode":
            sa = CheckpointManager(d / "checkpoints").load()
            sb = _full_dcp(CheckpointManager(f / "checkpoints").latest(), tmp_path / f"{stage}.pt")
            assert _max_diff(sa["critic"], sb["critic"]) <= 1e-5
            la = [json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()]
            lb = [json.loads(x) for x in (f / "log.jsonl").read_text().splitlines()]
            assert [r["step"] for r in lb] == [1, 2, 3]
            for x, y in zip(la, lb):
                assert x["gen_loss"] == pytest.approx(y["gen_loss"], rel=1e-4, abs=1e-9)
                assert x["critic_loss"] == pytest.approx(y["critic_loss"], rel=1e-4)
    # the updates are far larger than the tolerance, so the comparison means something
    init = load_file(str(tmp_path / "ddp" / "run" / "ode" / "student.safetensors"))
    final = load_file(str(tmp_path / "ddp" / "run" / "extended" / "student.safetensors"))
    assert _max_diff(init, final) > 1e-4


def test_fsdp_with_one_process_warns_and_with_lora_is_a_clear_error(tmp_path):
    cfg = write_config(tmp_path, run={"fsdp": True}, self_forcing={"base_steps": 1})
    r = run("distill", "--config", cfg, "--stage", "self-forcing", "--out", tmp_path / "o")
    assert r.exit_code == 0 and "warning:" in r.output and "nothing to shard" in r.output, r.output
    lora = write_config(tmp_path / "lora", run={"fsdp": True}, lora={"rank": 4, "alpha": 4.0})
    one_line_error(run("distill", "--config", lora, "--stage", "self-forcing", "--out", tmp_path / "o2"),
                   "[lora]", "fsdp = false")


@pytest.mark.slow
def test_sharded_checkpoints_resume_on_one_or_two_processes(tmp_path):
    """A 2-process FSDP run saves each rank's shards (torch.distributed.checkpoint); stopped after step 2,
    it resumes on 2 processes and on 1 process, and both reach the uninterrupted run's weights and losses."""
    import shutil

    stage = {"stages": ["self-forcing"], "device": "cpu", "fsdp": True}
    full = write_config(tmp_path / "full", run=stage, self_forcing={"base_steps": 3})
    _launch(full, tmp_path / "ref")
    stop = write_config(tmp_path / "stop", run=stage, self_forcing={"base_steps": 2})
    _launch(stop, tmp_path / "two")
    ck = tmp_path / "two" / "self-forcing" / "checkpoints" / "step_000002"
    shards = sorted(p.name for p in (ck / "dcp").iterdir())
    assert "__0_0.distcp" in shards and "__1_0.distcp" in shards and (ck / "trainer.json").is_file()
    (tmp_path / "two" / "self-forcing" / "done.json").unlink()
    shutil.copytree(tmp_path / "two", tmp_path / "one")
    _launch(full, tmp_path / "two", "--resume")  # resumed on 2 processes
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", SFPP_MODEL="debug")
    p = subprocess.run([sys.executable, "-m", "sfpp.cli.main", "distill", "--config", str(full), "--out",
                        str(tmp_path / "one"), "--resume"], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]  # resumed on 1 process (DCP reshards)
    ref = tmp_path / "ref" / "self-forcing"
    la = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
    for run_dir in (tmp_path / "two", tmp_path / "one"):
        d = run_dir / "self-forcing"
        for name in ("student", "student_ema"):
            a, b = load_file(str(ref / f"{name}.safetensors")), load_file(str(d / f"{name}.safetensors"))
            assert _max_diff(a, b) <= 1e-5, (run_dir.name, name)
        lb = [json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in lb] == [1, 2, 3]
        for x, y in zip(la, lb):
            assert x["gen_loss"] == pytest.approx(y["gen_loss"], rel=1e-4, abs=1e-9), run_dir.name
            assert x["critic_loss"] == pytest.approx(y["critic_loss"], rel=1e-4), run_dir.name
