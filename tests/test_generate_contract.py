"""What `sfpp generate` / `sfpp rollout` run and record: fast paths, threads, hashes, timings, help texts."""

import hashlib
import json

import pytest
import torch

from tests.train_helpers import run


def _rollout(tmp_path, name, *args):
    from sfpp.batch import load_latents

    (tmp_path / "p.txt").write_text("a red circle\n")
    r = run("rollout", "--prompts", tmp_path / "p.txt", "--out", tmp_path / name, "--frames", 13, "--height", 32,
            "--width", 32, "--model", "debug", *args)
    assert r.exit_code == 0, r.output
    folder = next((tmp_path / name).iterdir())
    return load_latents(folder / "latents.safetensors"), json.loads((folder / "preview.json").read_text())


@pytest.mark.slow
def test_compiled_generation_equals_eager_and_reports_its_warm_up(tmp_path):
    """`--compile` (inductor, CPU): same latents as eager within 1e-4; the compile warm-up is reported on its own."""
    eager, se = _rollout(tmp_path, "eager", "--no-fused-qkv")
    comp, sc = _rollout(tmp_path, "compiled", "--compile", "--no-fused-qkv")
    assert (eager - comp).abs().max().item() <= 1e-4
    assert se["timings"]["compile_warmup"] is None and se["fast_paths_applied"]["compile"] is False
    w = sc["timings"]["compile_warmup"]
    assert sc["fast_paths_applied"]["compile"] is True and w["graphs_compiled"] >= 1 and w["seconds"] > 0
    # the warm-up is outside the video's own timing: generation after it compiles nothing new
    assert sc["timings"]["generate_s"] < w["seconds"]


def test_fused_qkv_is_on_by_default_on_cpu_and_bit_exact(tmp_path):
    fused, sf = _rollout(tmp_path, "fused")
    plain, sp = _rollout(tmp_path, "plain", "--no-fused-qkv")
    assert sf["fast_paths_applied"]["fused_qkv"] is True and sp["fast_paths_applied"]["fused_qkv"] is False
    assert torch.equal(fused, plain)


def test_sidecar_records_threads_hashes_version_and_process_time(tmp_path, monkeypatch):
    import sfpp
    from sfpp.presets import TOY_ASSETS

    monkeypatch.delenv("SFPP_MODEL")
    out = tmp_path / "v.mp4"
    r = run("generate", "a red circle and a blue square bouncing on a black background", "--seconds", 1, "--out", out)
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    sha = hashlib.sha256((TOY_ASSETS / "student_v4.safetensors").read_bytes()).hexdigest()
    assert side["model"] == "toy-v4" and side["checkpoint_sha256"] == sha  # the bundled student's hash
    assert side["weights_sha256"]["student"] == sha and len(side["weights_sha256"]["text_encoder"]) == 64
    assert side["sfpp_version"] == sfpp.__version__
    t = side["timings"]
    assert t["torch_threads"] == 1 and side["config"]["threads"] == 1  # the toy model's default
    assert t["process_s"] >= t["total_s"] > 0 and t["load_s"] >= 0
    r = run("generate", "a red circle", "--seconds", 1, "--threads", 2, "--out", tmp_path / "t2.mp4")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "t2.json").read_text())["timings"]["torch_threads"] == 2
    bad = run("generate", "a red circle", "--threads", 0)
    assert bad.exit_code == 2 and "--threads" in bad.output


def test_bench_builds_the_toy_architecture():
    from diffusers import WanTransformer3DModel

    from sfpp.toyworld.model import TOY_TRANSFORMER

    r = run("bench", "--model", "toy", "--seconds", 1, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    with torch.device("meta"):
        n = sum(p.numel() for p in WanTransformer3DModel(**TOY_TRANSFORMER).parameters())
    s = rep["setup"]
    assert s["params"] == n and s["model"] == "toy" and s["codec"] == "PixelCodec"
    assert (s["width"], s["height"], s["window"], s["frames"]) == (256, 256, 6, 16)


def test_help_states_real_constraints_and_defaults():
    import re

    r = run("generate", "--help")
    text = re.sub(r"\s+", " ", r.output.replace("│", " "))
    assert "toy 32" in text and "debug 16" in text  # the real size multiples per model
    assert "default: 5" in text and "outputs/ named after the prompt and the seed" in text
    assert "[[prompt]]" in text  # not swallowed by rich markup
    assert "auto" in text and "--threads" in text and "--chunk-frames" in text


def test_a_checkpoint_runs_in_the_model_it_was_trained_for(tmp_path):
    """A toy-v2 student runs as toy-v2 without --model (even with $SFPP_MODEL set to another model);
    a contradicting --model is one line naming the right one, not a list of shape mismatches."""
    from sfpp.checkpoints import save_student
    from sfpp.toyworld.model import new_toy_transformer

    ckpt = tmp_path / "v2.safetensors"
    save_student(ckpt, new_toy_transformer(3, "v2").state_dict(), {"model": "toy-v2", "stage": "extended"})
    out = tmp_path / "v.mp4"
    r = run("generate", "a red circle on a black background", "--checkpoint", ckpt, "--seconds", 0.5, "--out", out)
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["model"] == "toy-v2" and side["num_frames"] == 8
    r = run("generate", "a red circle", "--checkpoint", ckpt, "--model", "toy", "--out", tmp_path / "w.mp4")
    assert r.exit_code in (1, 2), r.output
    assert "trained for --model toy-v2, not toy" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "w.mp4").exists()
    r = run("generate", "a red circle", "--checkpoint", ckpt, "--model", "toy-v2", "--seconds", 0.5,
            "--out", tmp_path / "x.mp4")
    assert r.exit_code == 0, r.output
    # no weights at all: an error naming --checkpoint, not a video from random weights
    r = run("generate", "a red circle", "--model", "toy-v2", "--seconds", 0.5, "--out", tmp_path / "y.mp4")
    assert r.exit_code != 0 and "--checkpoint" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "y.mp4").exists()


def test_size_multiples_in_help_are_the_ones_checked():
    """--height/--width help states, per preset, the multiple that resolve_spec enforces (codec x patch):
    the multiple passes and half of it (when whole and the codec allows it) is refused."""
    import re

    from sfpp.cli._options import _MULTIPLES
    from sfpp.errors import SfppError
    from sfpp.presets import PRESETS
    from sfpp.spec import VideoSpec, resolve_spec

    stated = {n: int(m) for n, m in re.findall(r"(\S+) (\d+)", _MULTIPLES)}
    assert set(stated) == set(PRESETS)
    for name, mult in stated.items():
        rs = resolve_spec(VideoSpec(model=name, frames=1, height=mult, width=mult * 2), need_weights=False)
        assert (rs.height, rs.width) == (mult, mult * 2), name
        with pytest.raises(SfppError, match=f"multiple of {mult} "):
            resolve_spec(VideoSpec(model=name, frames=1, height=mult + mult // 2, width=mult), need_weights=False)
