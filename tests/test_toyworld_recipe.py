"""A smoke run of the whole ToyWorld recipe (a few steps of every stage) so it cannot rot."""

import json
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import torch

from sfpp.config_io import from_dict
from sfpp.train.config import DistillConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "toyworld"


def _config(name: str, tmp: Path, **overrides) -> DistillConfig:
    data = tomllib.loads((EXAMPLES / name).read_text())
    data["data"]["prompts"] = str(EXAMPLES / "prompts.txt")
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return from_dict(DistillConfig, data)


def test_recipe_smoke(tmp_path):
    import sfpp
    from sfpp.distill import distill
    from sfpp.toyworld.teacher import TeacherConfig, train_teacher

    teacher = train_teacher(TeacherConfig(steps=2, batch_size=2, pool_clips=6, log_every=1), tmp_path / "teacher")
    # continuing from a teacher starts from its weights
    more = train_teacher(TeacherConfig(steps=1, batch_size=2, pool_clips=6, log_every=1, lr=0.0, ema=1.0),
                         tmp_path / "teacher2", init=teacher)
    from sfpp.checkpoints import read_checkpoint as _read

    a0, b0 = _read(teacher)[0], _read(more)[0]
    assert all(torch.equal(a0[k], b0[k]) for k in a0)  # lr 0 and EMA 1: unchanged weights
    small_run = {"batch_size": 1, "checkpoint_every": 1, "sample_every": 2, "sample_seconds": 0.5}
    ode = _config("ode.toml", tmp_path, model={"teacher_checkpoint": str(teacher), "student_checkpoint": str(teacher)},
                  ema={"start_step": 1},
                  ode={"num_trajectories": 2, "teacher_steps": 3, "shard_size": 1, "base_steps": 2}, run=small_run)
    ode_out = distill(ode, out=tmp_path / "ode")["ode"]
    init = ode_out.with_name("student_ema.safetensors")
    assert init.is_file()
    students = {}
    for name, cfg_file, extra in (("sf", "self_forcing.toml", {"self_forcing": {"base_steps": 2}}),
                                  ("sfpp", "self_forcing_pp.toml", {"extended": {"base_steps": 2, "n_max": 12,
                                                                                 "ramp_steps": 1}})):
        cfg = _config(cfg_file, tmp_path, model={"teacher_checkpoint": str(teacher), "student_checkpoint": str(init)},
                      dmd={"critic_ratio": 1}, run=small_run, **extra)
        res = distill(cfg, out=tmp_path / name)
        students[name] = next(iter(res.values()))
        assert (students[name].parent / "samples" / "step_000002.mp4").is_file()
    out = sfpp.generate("a red circle and a blue square bouncing on a black background", model="toy", seconds=1,
                        checkpoint=str(students["sfpp"]), out=tmp_path / "v.mp4")
    assert out.num_frames == 16 and out.path.is_file()
    from sfpp.toyworld.compare import compare

    res = compare({"sf": str(students["sf"]), "sfpp-sink": {"checkpoint": str(students["sfpp"]), "sink": 3}},
                  ["a red circle on a black background"], tmp_path / "compare", multiples=(1, 2), log=lambda s: None)
    assert set(res["runs"]) == {"sf", "sfpp-sink"}
    assert res["runs"]["sf"]["2x"]["seconds"] == 1.5 and 0 <= res["runs"]["sf"]["2x"]["overall"]["fidelity"] <= 1
    r2 = res["runs"]["sf"]["2x"]  # 1.5 s = one 2 s window: the window curves equal the overall means
    for key in ("fidelity", "all_colours", "objects", "brightness"):
        assert len(r2[f"{key}_curve"]) == 1 and abs(r2[f"{key}_curve"][0] - r2["overall"][key]) < 1e-9
    assert (tmp_path / "compare" / "fidelity_over_time.png").is_file()
    assert (tmp_path / "compare" / "sfpp-sink" / "2x" / "p00.json").is_file()
    # --reuse scores the videos already there (same checkpoint, sink, prompt, seed, length) without regenerating
    video = tmp_path / "compare" / "sf" / "2x" / "p00.mp4"
    before = video.stat().st_mtime_ns
    again = compare({"sf": str(students["sf"]), "sfpp-sink": {"checkpoint": str(students["sfpp"]), "sink": 3}},
                    ["a red circle on a black background"], tmp_path / "compare", multiples=(1, 2), log=lambda s: None,
                    reuse=True)
    same = json.dumps(again["runs"], sort_keys=True) == json.dumps(res["runs"], sort_keys=True)  # NaN-safe
    assert video.stat().st_mtime_ns == before and same
    # another checkpoint under the same label is not reused
    again = compare({"sf": str(students["sfpp"])}, ["a red circle on a black background"], tmp_path / "compare",
                    multiples=(2,), log=lambda s: None, reuse=True)
    assert video.stat().st_mtime_ns != before
    from safetensors.torch import load_file

    a, b = load_file(str(students["sf"])), load_file(str(students["sfpp"]))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_v2_recipe_configs_smoke(tmp_path):
    """examples/toyworld_v2: the toy-v4 configs train (a few steps of each stage) and `toyworld compare` runs
    their students in their own architecture without being told (--model comes from the checkpoint)."""
    from sfpp.distill import distill
    from sfpp.toyworld.compare import compare
    from sfpp.toyworld.teacher import TeacherConfig, train_teacher

    v2 = EXAMPLES.parent / "toyworld_v2"
    teacher = train_teacher(TeacherConfig(steps=1, batch_size=1, pool_clips=2, log_every=1, arch="v4"),
                            tmp_path / "teacher")

    def cfg(name, **overrides):
        data = tomllib.loads((v2 / name).read_text())
        assert data["model"]["preset"] == "toy-v4" and data["model"]["teacher_checkpoint"].endswith("teacher.safetensors")
        data["data"]["prompts"] = str(v2 / "prompts.txt")
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        return from_dict(DistillConfig, data)

    small_run = {"batch_size": 1, "checkpoint_every": 1, "sample_every": 0}
    ode = distill(cfg("ode.toml", model={"teacher_checkpoint": str(teacher), "student_checkpoint": str(teacher)},
                      ema={"start_step": 1}, run=small_run,
                      ode={"num_trajectories": 1, "teacher_steps": 2, "shard_size": 1, "base_steps": 1}),
                  out=tmp_path / "ode")["ode"].with_name("student_ema.safetensors")
    students = {}
    for name, file, extra in (("sf", "self_forcing.toml", {"self_forcing": {"base_steps": 1}}),
                              ("sfpp", "self_forcing_pp.toml", {"extended": {"base_steps": 1, "n_max": 12, "ramp_steps": 1}})):
        res = distill(cfg(file, model={"teacher_checkpoint": str(teacher), "student_checkpoint": str(ode)},
                          dmd={"critic_ratio": 1}, ema={"start_step": 1}, run=small_run, **extra), out=tmp_path / name)
        students[name] = str(next(iter(res.values())))
    res = compare(students, ["a red circle on a black background"], tmp_path / "compare", multiples=(1,),
                  log=lambda s: None)
    assert set(res["runs"]) == {"sf", "sfpp"}
    side = json.loads((tmp_path / "compare" / "sfpp" / "1x" / "p00.json").read_text())
    assert side["model"] == "toy-v4"
