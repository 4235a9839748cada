"""Loading a diffusers-layout folder (a tiny WanPipeline saved with save_pretrained)."""

import pytest
import torch

from sfpp.causal import CausalWan
from sfpp.errors import SfppError
from sfpp.presets import check_diffusers_folder, load_diffusers_components


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from sfpp.presets import build_debug_components

    c = build_debug_components(seed=7)
    pipe = WanPipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae, transformer=c.transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))
    root = tmp_path_factory.mktemp("wan_tiny")
    pipe.save_pretrained(root)
    return root


def test_tiny_pipeline_loads_and_student_equals_diffusers_forward(pipeline_dir):
    comps = load_diffusers_components(pipeline_dir)
    student = CausalWan(comps.transformer)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3, 8, 6, generator=g)
    text = torch.randn(1, 9, 32, generator=g)
    t = torch.tensor([640.0])
    with torch.no_grad():
        ref = comps.transformer(x, t, text, return_dict=False)[0]
        out = student(x, t, student.encode_text(text))
    assert (out - ref).abs().max().item() < 1e-5


def test_incomplete_folder_lists_what_is_missing(pipeline_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(pipeline_dir, broken)
    shutil.rmtree(broken / "tokenizer")
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(SfppError) as e:
        check_diffusers_folder(broken)
    msg = str(e.value)
    assert "vae/diffusion_pytorch_model.safetensors" in msg and "tokenizer/" in msg
    assert "transformer" not in msg.split("missing:")[1]


def test_generate_through_weights_flag_and_env(pipeline_dir, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from sfpp.cli.main import app
    from sfpp.video import read_mp4

    args = ["generate", "a red circle", "--model", "wan2.1-t2v-1.3b", "--height", "64", "--width", "64",
            "--frames", "13", "--window", "6", "--device", "cpu"]
    r = CliRunner().invoke(app, args + ["--weights", str(pipeline_dir), "--out", str(tmp_path / "a.mp4")])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("SFPP_WEIGHTS", str(pipeline_dir))
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "b.mp4")])
    assert r.exit_code == 0, r.output
    a, b = read_mp4(tmp_path / "a.mp4")[0], read_mp4(tmp_path / "b.mp4")[0]
    assert a.shape == (13, 64, 64, 3) and (a == b).all()
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["weights"] == str(pipeline_dir) and side["model"] == "wan2.1-t2v-1.3b"
