"""One `RolloutConfig` from training to inference: resolution order, checkpoints obeyed, any length by default."""

import json

import pytest
import torch

from sfpp.errors import SfppError
from sfpp.rollout_config import RolloutConfig, resolve_rollout, student_rollout
from tests.train_helpers import run, write_config


def test_flags_beat_the_student_which_beats_the_preset():
    preset = RolloutConfig(window=9)
    student = {"window": 6, "chunk_frames": 2, "rope": "relative"}
    r = resolve_rollout(preset, student, {"window": 8})
    assert (r.config.window, r.config.chunk_frames, r.config.rope, r.config.shift) == (8, 2, "relative", 5.0)
    assert r.sources == {"chunk_frames": "checkpoint", "timesteps": "preset", "shift": "preset", "window": "flag",
                         "sink": "preset", "rope": "checkpoint", "context_noise": "preset"}
    assert len(r.warnings) == 1 and "--window 8" in r.warnings[0] and "(6)" in r.warnings[0]
    # a flag equal to the student's value is no contradiction
    assert resolve_rollout(preset, student, {"window": 6}).warnings == ()
    # --steps N replaces the list only when its length differs
    assert resolve_rollout(preset, {"timesteps": [1000, 500]}, {}, steps=2).config.timesteps == (1000.0, 500.0)
    assert resolve_rollout(preset, {"timesteps": [1000, 500]}, {}, steps=4).config.timesteps == (1000, 750, 500, 250)


def test_old_exports_are_read_and_their_absolute_rope_runs_as_auto():
    old = {"model": "toy", "window": 6, "chunk_frames": 3, "timesteps": [1000.0, 937.5, 833.33, 625.0],
           "rope": "absolute", "distill_config": {"rollout": {"timesteps": [1000.0, 750.0, 500.0, 250.0],
                                                              "shift": 5.0, "context_noise": 0.0}}}
    assert student_rollout(old) == {"timesteps": [1000.0, 750.0, 500.0, 250.0], "shift": 5.0, "context_noise": 0.0,
                                    "window": 6, "chunk_frames": 3, "rope": "auto"}
    assert student_rollout({"rollout": {"window": 4, "rope": "absolute"}}) == {"window": 4, "rope": "absolute"}


@pytest.mark.parametrize("bad, needle", [
    (dict(chunk_frames=0), "--chunk-frames"), (dict(timesteps=()), "--timesteps"),
    (dict(timesteps=(500, 750)), "decrease"), (dict(timesteps=(1200,)), "(0, 1000]"),
    (dict(shift=float("nan")), "--shift"), (dict(rope="sideways"), "--rope"),
    (dict(context_noise=-1), "--context-noise"), (dict(window=4, chunk_frames=5), "no room"),
    (dict(window=4, sink=4), "--sink"),
])
def test_bad_rollout_settings_name_the_flag(bad, needle):
    with pytest.raises(SfppError, match=None) as e:
        RolloutConfig(**bad)
    assert needle in str(e.value)


def test_auto_rope_is_absolute_inside_the_table_and_relative_past_it():
    c = RolloutConfig()
    assert c.resolve_rope(1024, 1024) == "absolute" and c.resolve_rope(1026, 1024) == "relative"
    assert RolloutConfig(rope="absolute").resolve_rope(2000, 1024) == "absolute"  # refused later, up front


def _latents(tmp_path, name, *args):
    from sfpp.batch import load_latents

    p = tmp_path / name
    (tmp_path / "p.txt").write_text("a red circle\n")
    r = run("rollout", "--prompts", tmp_path / "p.txt", "--out", p, "--frames", 13, "--height", 32, "--width", 32,
            "--model", "debug", *args)
    assert r.exit_code == 0, r.output
    folder = next(p.iterdir())
    return load_latents(folder / "latents.safetensors"), json.loads((folder / "preview.json").read_text()), r.output


def test_a_student_generates_with_the_settings_it_was_trained_with(tmp_path):
    """Distil on debug with non-default chunk frames, timesteps, window and rope; generate with no flag."""
    cfg = write_config(tmp_path / "cfg", rollout={"window": 8, "chunk_frames": 2, "timesteps": [1000.0, 500.0],
                                                  "rope": "relative", "exit_step": "random"},
                       run={"stages": ["self-forcing"]}, self_forcing={"base_steps": 1})
    r = run("distill", "--config", cfg, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "run" / "self-forcing" / "student.safetensors"
    from sfpp.checkpoints import read_checkpoint_config

    assert read_checkpoint_config(ckpt)["rollout"] == {"chunk_frames": 2, "timesteps": [1000.0, 500.0], "shift": 5.0,
                                                      "window": 8, "sink": 0, "rope": "relative",
                                                      "context_noise": 0.0}
    own, side, _ = _latents(tmp_path, "own", "--checkpoint", ckpt)
    cfg_side = side["config"]
    assert cfg_side["rollout"]["chunk_frames"] == 2 and cfg_side["rollout"]["window"] == 8
    assert cfg_side["rollout"]["timesteps"] == [1000.0, 500.0] and cfg_side["rope"] == "relative"
    assert cfg_side["rollout_sources"]["window"] == "checkpoint" and cfg_side["rollout_sources"]["shift"] == "checkpoint"
    assert cfg_side["latent_frames"] == 4  # 13 frames -> 4 latent frames, a whole number of 2-frame chunks
    flags = ("--chunk-frames", 2, "--timesteps", "1000,500", "--window", 8, "--rope", "relative")
    explicit, side2, out2 = _latents(tmp_path, "explicit", "--checkpoint", ckpt, *flags)
    assert torch.equal(own, explicit)
    assert side2["config"]["rollout_sources"]["window"] == "flag" and "warning" not in out2
    # the preset's settings give another video: the checkpoint's settings were really used
    preset, side3, out3 = _latents(tmp_path, "preset", "--checkpoint", ckpt, "--chunk-frames", 3, "--window", 9,
                                   "--timesteps", "1000,750,500,250", "--rope", "absolute")
    assert preset.shape != own.shape or not torch.equal(preset, own)
    warns = [ln for ln in out3.splitlines() if ln.startswith("warning:")]
    assert len(warns) == 4, out3
    assert any("--window 9" in w and "(8)" in w for w in warns)
    assert any("--chunk-frames 3" in w and "(2)" in w for w in warns)


def test_any_length_with_the_defaults(tmp_path):
    """Past the RoPE table the default `auto` policy goes on (relative); `--rope absolute` refuses up front."""
    from sfpp.spec import VideoSpec, resolve_spec

    rs = resolve_spec(VideoSpec(model="toy", seconds=240))
    assert rs.rope == "relative" and rs.latent_frames == 1920 and rs.num_frames == 3840
    assert rs.rollout.rope == "auto" and rs.sources["rope"] == "checkpoint"  # the bundled student's own setting
    assert resolve_spec(VideoSpec(model="toy", seconds=60)).rope == "absolute"
    with pytest.raises(SfppError, match="absolute RoPE"):
        resolve_spec(VideoSpec(model="toy", seconds=240, rope="absolute"))
