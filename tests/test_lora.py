"""`sfpp distill` with `[lora]`: only adapters train, exports merge exactly, resume and `generate --lora` work."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from sfpp.presets import DEBUG_TRANSFORMER, build_debug_components
from tests.train_helpers import write_config

runner = CliRunner()
LORA = {"rank": 4, "alpha": 8}
N_ADAPTED = 2 * (4 + 4 + 2)  # per block: attn1 q/k/v/out, attn2 q/k/v/out, ffn in/out


from tests.train_helpers import one_line_error, run  # noqa: E402


def lora_config(tmp_path, **lora):
    return write_config(tmp_path, run={"stages": ["self-forcing"]}, self_forcing={"base_steps": 2},
                        dmd={"critic_ratio": 1}, optim={"gen_lr": 1e-2, "critic_lr": 1e-4}, lora={**LORA, **lora})


def forward(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3, 4, 4, generator=g)  # (B, C, F, H, W)
    emb = torch.randn(1, 7, DEBUG_TRANSFORMER["text_dim"], generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([700.0]), emb, return_dict=False)[0]


def plain(state):
    from diffusers import WanTransformer3DModel

    from sfpp.checkpoints import load_into

    m = WanTransformer3DModel(**DEBUG_TRANSFORMER).eval()
    load_into(m, state, source="test")
    return m


def adapted(injected_state):
    """The debug transformer with peft adapters, loaded from a training state (adapters applied at run time)."""
    from sfpp.checkpoints import load_into
    from sfpp.lora import add_lora

    m = build_debug_components().transformer
    add_lora(m, rank=LORA["rank"], alpha=LORA["alpha"], target_modules=("to_q", "to_k", "to_v", "to_out.0",
                                                                          "ffn.net.0.proj", "ffn.net.2"))
    load_into(m, injected_state, source="test")
    return m.eval()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    cfg = lora_config(tmp)
    out = tmp / "run"
    r = run("distill", "--config", cfg, "--out", out)
    assert r.exit_code == 0, r.output
    return cfg, out


def test_only_adapters_train_and_base_weights_stay_bit_identical(lora_run):
    _, out = lora_run
    d = out / "self-forcing"
    st = torch.load(d / "checkpoints" / "step_000002" / "state.pt", map_location="cpu", weights_only=True)
    base = build_debug_components().transformer.state_dict()
    student = st["student"]
    lora_keys = [k for k in student if ".lora_" in k]
    assert len(lora_keys) == 2 * N_ADAPTED
    base_keys = [k for k in student if ".lora_" not in k]
    assert sorted(k.replace(".base_layer.", ".") for k in base_keys) == sorted(base)
    for k in base_keys:
        assert torch.equal(student[k], base[k.replace(".base_layer.", ".")]), k
    ups = [student[k] for k in lora_keys if ".lora_B." in k]
    assert all(u.abs().max() > 0 for u in ups)  # peft inits B = 0: every adapter moved
    # the generator optimiser holds exactly the adapter tensors
    groups = st["opt_gen"]["param_groups"]
    assert sum(len(g["params"]) for g in groups) == 2 * N_ADAPTED
    assert len(st["opt_gen"]["state"]) == 2 * N_ADAPTED
    rows = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["gen_grad_norm"] > 0 for r in rows)
    # the critic still trains its full weights
    assert any(not torch.equal(st["critic"][k], base[k]) for k in base)


def test_merged_export_equals_the_adapter_applied_model(lora_run):
    from sfpp.checkpoints import read_checkpoint
    from sfpp.convert import read_lora
    from sfpp.lora import merge_lora

    _, out = lora_run
    d = out / "self-forcing"
    st = torch.load(d / "checkpoints" / "step_000002" / "state.pt", map_location="cpu", weights_only=True)
    merged, cfg = read_checkpoint(d / "student.safetensors")
    assert cfg["lora"]["rank"] == 4 and cfg["lora"]["merged"] is True
    assert set(merged) == set(build_debug_components().transformer.state_dict())  # a plain student
    ref = forward(adapted(st["student"]))
    out_merged = forward(plain(merged))
    base_out = forward(build_debug_components().transformer)
    assert (out_merged - ref).abs().max().item() < 1e-5
    assert (ref - base_out).abs().max().item() > 1e-3  # the adapters changed the model
    # the adapter file alone, merged onto the stage's starting student (debug init), is the same student
    with safe_open(str(d / "student_lora.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["sfpp_format"] == "sfpp-lora-v1" and json.loads(meta["sfpp_lora"])["alpha"] == 8.0
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in load_file(str(d / "student_lora.safetensors")))
    again = merge_lora(build_debug_components().transformer.state_dict(), read_lora(d / "student_lora.safetensors"))
    assert max((again[k] - merged[k]).abs().max().item() for k in merged) < 1e-6
    # step checkpoints hold merged students too
    step = load_file(str(d / "checkpoints" / "step_000002" / "student.safetensors"))
    assert all(torch.equal(step[k], merged[k]) for k in merged)
    assert set(load_file(str(d / "student_ema.safetensors"))) == set(merged)


def test_generate_with_lora_flag_equals_the_merged_checkpoint(lora_run, tmp_path):
    from sfpp.spec import VideoSpec, load_model, resolve_spec

    _, out = lora_run
    d = out / "self-forcing"
    a = load_model(resolve_spec(VideoSpec(lora=str(d / "student_lora.safetensors"))))
    b = load_model(resolve_spec(VideoSpec(checkpoint=str(d / "student.safetensors"))))
    sa, sb = a.student.transformer.state_dict(), b.student.transformer.state_dict()
    assert max((sa[k] - sb[k]).abs().max().item() for k in sa) < 1e-6
    v = tmp_path / "v.mp4"
    r = run("generate", "a red circle", "--frames", 9, "--height", 32, "--width", 32,
            "--lora", d / "student_lora.safetensors", "--out", v)
    assert r.exit_code == 0, r.output
    assert json.loads(v.with_suffix(".json").read_text())["config"]["lora"].endswith("student_lora.safetensors")
    one_line_error(run("generate", "x", "--lora", tmp_path / "none.safetensors"), "LoRA file", "does not exist")
    one_line_error(run("generate", "x", "--checkpoint", d / "student_lora.safetensors"), "LoRA adapter", "--lora")


def test_resume_continues_the_adapters(lora_run, tmp_path):
    cfg, out = lora_run
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    (run_dir / "self-forcing" / "done.json").unlink()
    r = run("distill", "--config", cfg, "--out", run_dir, "--budget", "2x", "--resume")
    assert r.exit_code == 0, r.output
    d = run_dir / "self-forcing"
    assert json.loads((d / "done.json").read_text())["step"] == 4
    st = torch.load(d / "checkpoints" / "step_000004" / "state.pt", map_location="cpu", weights_only=True)
    s2 = torch.load(out / "self-forcing" / "checkpoints" / "step_000002" / "state.pt", map_location="cpu",
                    weights_only=True)
    base = build_debug_components().transformer.state_dict()
    for k, v in st["student"].items():
        if ".lora_" not in k:
            assert torch.equal(v, base[k.replace(".base_layer.", ".")]), k
    assert any(not torch.equal(st["student"][k], s2["student"][k]) for k in st["student"] if ".lora_" in k)
    # other [lora] settings cannot resume this run
    other = lora_config(tmp_path / "other", rank=2)
    (d / "done.json").unlink()
    one_line_error(run("distill", "--config", other, "--out", run_dir, "--budget", "3x", "--resume"),
                   "different [lora] settings", "rank")


def test_bad_lora_config_is_one_line(tmp_path):
    one_line_error(run("distill", "--config", lora_config(tmp_path / "a", rank=-1), "--out", tmp_path / "ra"),
                   "[lora]")
    one_line_error(run("distill", "--config", lora_config(tmp_path / "b", target_modules=["no_such_layer"]),
                       "--out", tmp_path / "rb"), "target_modules", "no_such_layer")
