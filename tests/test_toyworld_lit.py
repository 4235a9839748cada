"""toy-v4lit: ToyWorld v4 in the lit world (issue #19's exposure experiment) on its own codec, end to end."""

import sys
from pathlib import Path

import numpy as np
import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from sfpp.toyworld.world import FPS, Lighting, held_out_prompts, parse_prompt, render_clip

V2 = Path(__file__).resolve().parents[1] / "examples" / "toyworld_v2"


def _luma(frames: np.ndarray) -> np.ndarray:
    return (0.299 * frames[..., 0] + 0.587 * frames[..., 1] + 0.114 * frames[..., 2]).mean(axis=(1, 2))  # (F,)


def test_the_lit_codec_carries_the_light_that_the_v3_codec_pulls_back():
    """The v4lit codec keeps each frame's exposure through encode/decode (the shipped v3 codec pulls a lit
    frame about a third of the way back to the unlit exposure; docs/toyworld.md "Scaling", Exposure)."""
    from sfpp.toyworld.model import shipped_codec_path, toy_codec, toy_lighting

    torch.set_num_threads(1)
    assert shipped_codec_path("v4lit") != shipped_codec_path("v4") and shipped_codec_path("v4lit").is_file()
    assert toy_lighting("v4lit") == Lighting(0.15, 12.0) and toy_lighting("v4") is None
    pull = {}
    for arch in ("v4", "v4lit"):
        codec = toy_codec(arch)
        gains, rel = [], []
        for i, p in enumerate(held_out_prompts()[:2]):
            clip = render_clip(parse_prompt(p), 12 * FPS, np.random.default_rng(i), lighting=toy_lighting("v4lit"))
            video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # (1, 3, F, H, W)
            with torch.no_grad():
                rec = codec.decode_native(codec.encode(video))  # (1, 3, F, H, W) in [-1, 1]
            rec = ((rec[0].permute(1, 2, 3, 0) + 1) * 127.5).clamp(0, 255).numpy()  # (F, H, W, 3)
            truth = _luma(clip.frames.astype(np.float32))
            gains += list(clip.gain - 1)
            rel += list((_luma(rec) - truth) / truth)
        # relative luma error against the gain's distance from 1: -1/3 means a third of the light pulled back
        pull[arch] = float(np.polyfit(np.array(gains), np.array(rel), 1)[0])
    assert pull["v4"] < -0.2 and abs(pull["v4lit"]) < 0.1, pull


def test_a_v4lit_teacher_trains_on_lit_clips_and_the_chain_runs(tmp_path):
    """train-teacher --arch v4lit renders lit clips; its checkpoint names toy-v4lit; the ODE init and a
    Self-Forcing++ student distilled from it name it too, and generate runs them on the lit codec."""
    import sfpp
    from sfpp.checkpoints import read_checkpoint_config
    from sfpp.config_io import from_dict
    from sfpp.distill import distill
    from sfpp.presets import bundled_files, get_preset
    from sfpp.toyworld.learned_codec import load_codec
    from sfpp.toyworld.model import shipped_codec_path, toy_lighting, toy_text_encoder
    from sfpp.toyworld.teacher import TeacherConfig, load_teacher, render_pool, train_teacher
    from sfpp.train.config import DistillConfig

    torch.set_num_threads(1)
    held = set(held_out_prompts())
    plain, prompts = render_pool(3, 24, 0, held)
    lit, prompts_lit = render_pool(3, 24, 0, held, lighting=toy_lighting("v4lit"))
    assert prompts[0] == prompts_lit[0] and not np.array_equal(plain[0], lit[0])  # the first clip: same scene, lit
    ratio = lit[0].astype(np.float64).sum(axis=(1, 2, 3)) / plain[0].astype(np.float64).sum(axis=(1, 2, 3))
    assert np.abs(ratio - 1).max() > 0.005 and np.abs(ratio - 1).max() < 0.16  # within the +-15 % cycle

    a, b = toy_text_encoder("v4").state_dict(), toy_text_encoder("v4lit").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # v4's word-order-aware text encoder
    teacher = train_teacher(TeacherConfig(steps=2, batch_size=2, pool_clips=4, log_every=1, arch="v4lit"),
                            tmp_path / "teacher")
    meta = read_checkpoint_config(teacher)
    assert (meta["model"], meta["train"]["arch"]) == ("toy-v4lit", "v4lit")
    assert load_teacher(teacher)[1] == "v4lit"
    preset = get_preset("toy-v4lit")
    assert preset.needs_checkpoint and bundled_files(preset)["codec"] == shipped_codec_path("v4lit")
    built = preset.build().codec.net.state_dict()
    lit_codec = load_codec(shipped_codec_path("v4lit")).net.state_dict()
    assert all(torch.equal(built[k], lit_codec[k]) for k in lit_codec)

    def config(name: str, **overrides) -> DistillConfig:
        data = tomllib.loads((V2 / name).read_text())
        data["model"]["preset"] = "toy-v4lit"
        data["data"]["prompts"] = str(V2 / "prompts.txt")
        data["run"]["sample_every"] = 0
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        return from_dict(DistillConfig, data)

    small_run = {"batch_size": 1, "checkpoint_every": 1, "sample_every": 0, "sample_seconds": 0.5}
    ode = config("ode.toml", model={"teacher_checkpoint": str(teacher), "student_checkpoint": str(teacher)},
                 ema={"start_step": 1}, run=small_run,
                 ode={"num_trajectories": 2, "teacher_steps": 2, "shard_size": 1, "base_steps": 1})
    # the same teacher under the unlit toy-v4 preset (same transformer shape) is refused, not loaded silently
    wrong = config("ode.toml", model={"preset": "toy-v4", "teacher_checkpoint": str(teacher),
                                      "student_checkpoint": str(teacher)}, ode={"base_steps": 1})
    import pytest

    from sfpp.errors import SfppError

    with pytest.raises(SfppError, match='trained for toy-v4lit, the config.s preset is toy-v4; set preset = "toy-v4lit"'):
        distill(wrong, out=tmp_path / "wrong")
    init = distill(ode, out=tmp_path / "ode")["ode"].with_name("student_ema.safetensors")
    sfpp_cfg = config("self_forcing_pp.toml", model={"teacher_checkpoint": str(teacher), "student_checkpoint": str(init)},
                      dmd={"critic_ratio": 1}, run=small_run, extended={"base_steps": 1, "n_max": 12, "ramp_steps": 1})
    student = next(iter(distill(sfpp_cfg, out=tmp_path / "sfpp").values()))
    assert read_checkpoint_config(student)["model"] == "toy-v4lit"
    # no --model: the checkpoint's own model, on the lit codec
    out = sfpp.generate("a red circle on a black background", seconds=1, checkpoint=str(student),
                        out=tmp_path / "v.mp4")
    assert out.path.is_file() and out.num_frames == 16
    import json

    side = json.loads(out.sidecar.read_text())
    assert "toy-v4lit" in json.dumps(side), side  # the sidecar names the model the checkpoint declared


def test_the_lit_configs_are_the_v2_configs_on_the_lit_model():
    """examples/toyworld_lit/*.toml: the lit experiment's students differ from the sweep's 1x point only in
    the model (toy-v4lit) and where the teacher and init live."""
    from pathlib import Path

    from sfpp.config_io import load_config, to_dict
    from sfpp.train.config import DistillConfig

    ex = Path(__file__).resolve().parents[1] / "examples"
    for name in ("ode", "self_forcing", "self_forcing_pp"):
        lit, v2 = (load_config(DistillConfig, ex / d / f"{name}.toml") for d in ("toyworld_lit", "toyworld_v2"))
        assert lit.model.preset == "toy-v4lit" and v2.model.preset == "toy-v4"
        import os

        teacher = os.path.normpath(ex / "toyworld_lit" / lit.model.teacher_checkpoint)  # runs/ may be a link
        assert teacher == str(ex.parent / "runs" / "toylit" / "teacher.safetensors")
        assert (ex / "toyworld_lit" / lit.data.prompts).resolve() == (ex / "toyworld_v2" / v2.data.prompts).resolve()
        a, b = to_dict(lit), to_dict(v2)
        for d in (a, b):
            d.pop("model"), d["data"].pop("prompts")
        assert a == b, name


def test_the_teacher_gate_script(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    gate = Path(__file__).resolve().parents[1] / "examples" / "toyworld_v2" / "teacher_gate.py"
    ok = {"shapes_all": 0.91, "all_moving": 1.0, "band": 0.0}
    for held_out, passes in ((ok, True), ({**ok, "shapes_all": 0.899}, False), ({**ok, "band": 0.03}, False),
                             ({**ok, "all_moving": None}, False)):
        score = tmp_path / "score.json"
        score.write_text(json.dumps({"training": {"mean": ok}, "held-out": {"mean": held_out}}))
        r = subprocess.run([sys.executable, str(gate), str(score)], capture_output=True, text=True)
        assert (r.returncode == 0) == passes, (held_out, r.stdout)
        assert ("does not pass" in r.stdout) != passes
