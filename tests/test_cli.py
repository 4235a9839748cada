"""`sfpp generate` / `sfpp rollout` end to end on `debug`, and bad input through Typer's CliRunner."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sfpp.cli.main import app
from sfpp.video import read_mp4

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_generate_writes_mp4_with_requested_frames_fps_and_sidecar(tmp_path):
    out = tmp_path / "v.mp4"
    r = run("generate", "a red circle over the sea", "--frames", 37, "--fps", 12, "--seed", 5, "--out", out)
    assert r.exit_code == 0, r.output
    frames, fps = read_mp4(out)
    assert frames.shape == (37, 64, 64, 3)
    assert fps == 12
    side = json.loads((tmp_path / "v.json").read_text())
    assert side["prompt"] == "a red circle over the sea" and side["seed"] == 5 and side["model"] == "debug"
    assert side["num_frames"] == 37 and side["fps"] == 12
    assert side["config"]["cache"]["window"] == 9 and side["config"]["timesteps"][1] == pytest.approx(937.5)
    assert len(side["timings"]["chunk_denoise_s"]) == side["config"]["latent_frames"] // 3
    assert frames.std() > 5  # not a blank video
    assert not (tmp_path / "v.partial.mp4").exists()


def test_same_seed_same_frames_other_seed_differs(tmp_path):
    vids = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        r = run("generate", "blue square", "--seconds", 1.5, "--seed", seed, "--out", tmp_path / f"{name}.mp4")
        assert r.exit_code == 0, r.output
        vids[name] = read_mp4(tmp_path / f"{name}.mp4")[0]
    assert vids["a"].shape[0] == 24
    assert np.array_equal(vids["a"], vids["b"])
    assert np.abs(vids["a"].astype(int) - vids["c"].astype(int)).mean() > 1


def test_relative_rope_equals_absolute_for_a_video_inside_the_window(tmp_path):
    for rope in ("absolute", "relative"):
        r = run("generate", "green ball", "--frames", 33, "--rope", rope, "--out", tmp_path / f"{rope}.mp4")
        assert r.exit_code == 0, r.output
    a, b = read_mp4(tmp_path / "absolute.mp4")[0], read_mp4(tmp_path / "relative.mp4")[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # same latents up to float noise


def test_rollout_writes_latents_stats_preview_and_resumes(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n\n# comment\nyellow star at night\n")
    out = tmp_path / "ro"
    r = run("rollout", "--prompts", prompts, "--seconds", 2, "--out", out)
    assert r.exit_code == 0, r.output
    from sfpp.batch import load_latents

    folders = sorted(p for p in out.iterdir())
    assert [f.name for f in folders] == ["0000-a-red-circle", "0001-yellow-star-at-night"]
    z = load_latents(folders[0] / "latents.safetensors")
    assert z.shape == (1, 16, 9, 8, 8)
    stats = [json.loads(l) for l in (folders[0] / "stats.jsonl").read_text().splitlines()]
    assert [s["frame_start"] for s in stats] == [0, 3, 6]
    np.testing.assert_allclose(stats[1]["std"], z[:, :, 3:6].std().item(), rtol=1e-5)
    assert read_mp4(folders[0] / "preview.mp4")[0].shape[0] == 32
    # resume: a finished prompt is skipped, an unfinished one is redone
    (folders[1] / "done.json").unlink()
    before = (folders[0] / "latents.safetensors").stat().st_mtime_ns
    r = run("rollout", "--prompts", prompts, "--seconds", 2, "--out", out)
    assert r.exit_code == 0, r.output
    assert (folders[0] / "latents.safetensors").stat().st_mtime_ns == before
    assert (folders[1] / "done.json").is_file()


def _assert_one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("error:")
    for n in needles:
        assert n in lines[0], r.output


@pytest.mark.parametrize(
    "args,needles",
    [
        (["generate", "   "], ["prompt is empty"]),
        (["generate", "x", "--seconds", "0"], ["--seconds must be a positive"]),
        (["generate", "x", "--seconds", "-3"], ["--seconds must be a positive"]),
        (["generate", "x", "--frames", "0"], ["--frames must be a positive"]),
        (["generate", "x", "--model", "wan9"], ["unknown model 'wan9'", "debug"]),
        (["generate", "x", "--model", "wan2.1-t2v-1.3b"], ["--weights", "SFPP_WEIGHTS"]),
        (["generate", "x", "--height", "50"], ["multiple of 16"]),
        (["generate", "x", "--window", "2"], ["no room for a chunk"]),
        (["generate", "x", "--seconds", "300", "--rope", "absolute"], ["absolute RoPE", "--rope auto or relative", "255."]),
    ],
)
def test_bad_input_one_line_exit_2(args, needles):
    _assert_one_line_error(run(*args), *needles)


def test_missing_and_incomplete_weights_folder(tmp_path):
    _assert_one_line_error(run("generate", "x", "--model", "wan2.1-t2v-14b", "--weights", tmp_path / "nope"),
                           "does not exist")
    (tmp_path / "w" / "transformer").mkdir(parents=True)
    (tmp_path / "w" / "transformer" / "config.json").write_text("{}")
    _assert_one_line_error(run("generate", "x", "--model", "wan2.1-t2v-1.3b", "--weights", tmp_path / "w"),
                           "incomplete", "vae/config.json", "text_encoder/", "tokenizer/")


def test_unwritable_output_path_loses_nothing(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    _assert_one_line_error(run("generate", "x", "--out", blocker / "v.mp4"), "cannot create output folder")
    assert blocker.read_text() == "keep me"
    _assert_one_line_error(run("generate", "x", "--out", tmp_path / "v.avi"), "must end in .mp4")


def test_checkpoint_of_wrong_shape(tmp_path):
    import torch

    from sfpp.checkpoints import save_student
    from sfpp.presets import build_debug_components

    sd = build_debug_components().transformer.state_dict()
    sd["proj_out.weight"] = torch.zeros(3, 3)
    ckpt = save_student(tmp_path / "bad.safetensors", sd, {"model": "debug"})
    out = tmp_path / "v.mp4"
    _assert_one_line_error(run("generate", "x", "--checkpoint", ckpt, "--out", out), "does not fit", "proj_out.weight")
    assert not out.exists() and not (tmp_path / "v.partial.mp4").exists()
    _assert_one_line_error(run("generate", "x", "--checkpoint", tmp_path / "none.safetensors"), "does not exist")


def test_checkpoint_is_used(tmp_path):

    from sfpp.checkpoints import save_student
    from sfpp.presets import build_debug_components

    sd = build_debug_components().transformer.state_dict()
    sd = {k: (v * 1.5 if k.startswith("proj_out") else v) for k, v in sd.items()}
    ckpt = save_student(tmp_path / "s.safetensors", sd, {"model": "debug"})
    assert run("generate", "x", "--frames", 9, "--out", tmp_path / "a.mp4").exit_code == 0
    r = run("generate", "x", "--frames", 9, "--checkpoint", ckpt, "--out", tmp_path / "b.mp4")
    assert r.exit_code == 0, r.output
    a, b = read_mp4(tmp_path / "a.mp4")[0], read_mp4(tmp_path / "b.mp4")[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1
    side = json.loads((tmp_path / "b.json").read_text())
    assert len(side["checkpoint_sha256"]) == 64


def test_python_api(tmp_path):
    import sfpp

    res = sfpp.generate("a plane over snowy mountains", seconds=1, out=tmp_path / "api.mp4", seed=3)
    assert res.num_frames == 16 and res.path.is_file() and res.sidecar.is_file()
