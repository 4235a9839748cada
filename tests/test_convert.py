"""Foreign checkpoints -> sfpp students: every foreign layout synthesised from a tiny model.

The inverse map (diffusers -> original Wan names) is written here from the reference table
(shared/reference/diffusers_wan.md §5), independently of `sfpp.convert`, so a wrong entry in
either one makes the forwards disagree.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sfpp.errors import SfppError
from sfpp.presets import DEBUG_TRANSFORMER
from sfpp.video import read_mp4

runner = CliRunner()


from tests.train_helpers import one_line_error, run  # noqa: E402

# diffusers module path -> original Wan module path (first matching rule wins).
_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("proj_out.", "head.head."),
    (".attn1.to_out.0.", ".self_attn.o."),
    (".attn2.to_out.0.", ".cross_attn.o."),
    (".attn1.to_", ".self_attn."),
    (".attn2.to_", ".cross_attn."),
    (".attn1.", ".self_attn."),  # norm_q / norm_k
    (".attn2.", ".cross_attn."),
    (".norm2.", ".norm3."),  # the affine cross-attention norm: norm2 in diffusers, norm3 in Wan
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
]


def to_original(key: str) -> str:
    if key == "scale_shift_table":
        return "head.modulation"
    if key.endswith(".scale_shift_table"):
        return key[: -len("scale_shift_table")] + "modulation"
    for a, b in _TO_ORIGINAL:
        if a in key:
            return key.replace(a, b)
    assert key.startswith("patch_embedding."), key
    return key


def tiny_model(seed: int):
    """The debug transformer with every parameter (norm2 affine and modulation included) randomised."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    m = WanTransformer3DModel(**DEBUG_TRANSFORMER).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def forward(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3, 8, 8, generator=g)  # (B, C, F, H, W)
    emb = torch.randn(1, 7, DEBUG_TRANSFORMER["text_dim"], generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([600.0]), emb, return_dict=False)[0]


def loaded(state):
    from diffusers import WanTransformer3DModel

    from sfpp.checkpoints import load_into

    m = WanTransformer3DModel(**DEBUG_TRANSFORMER).eval()
    load_into(m, state, source="test")
    return m


def original_sd(model, prefix="", wrap=lambda k: k):
    return {prefix + wrap(to_original(k)): v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def models():
    return tiny_model(1), tiny_model(2)


def test_inverse_table_spot_checks(models):
    keys = set(original_sd(models[0]))
    for k in ("blocks.0.self_attn.q.weight", "blocks.1.cross_attn.o.bias", "blocks.0.self_attn.norm_k.weight",
              "blocks.1.norm3.weight", "blocks.0.ffn.2.bias", "blocks.1.modulation", "head.head.weight",
              "head.modulation", "time_embedding.2.bias", "text_embedding.0.weight", "time_projection.1.weight",
              "patch_embedding.weight"):
        assert k in keys, k
    assert not any(".norm2." in k or "attn1" in k for k in keys)
    assert len(keys) == len(models[0].state_dict())


def _fsdp(k: str) -> str:  # FSDP + activation-checkpoint wrappers around every block, as gathered full state dicts show
    if k.startswith("blocks."):
        n, rest = k.split(".", 2)[1:]
        return f"_fsdp_wrapped_module.blocks.{n}._fsdp_wrapped_module._checkpoint_wrapped_module.{rest}"
    return "_fsdp_wrapped_module." + k


LAYOUTS = {
    # name: (object saved with torch.save, file name, entry to ask for or None, which model it should equal)
    "self-forcing default entry": (lambda a, b: {"generator": original_sd(a, "model."),
                                                 "generator_ema": original_sd(b, "model."),
                                                 "critic": original_sd(b, "model.")}, "sf.pt", None, 0),
    "self-forcing ema entry": (lambda a, b: {"generator": original_sd(a, "model."),
                                             "generator_ema": original_sd(b, "model.")}, "sf.pt", "generator_ema", 1),
    "causvid with model. prefix": (lambda a, b: {"generator": original_sd(a, "model.")}, "model.pt", None, 0),
    "causvid without prefix": (lambda a, b: {"generator": original_sd(b)}, "model.pt", None, 1),
    "ode init model entry": (lambda a, b: {"model": original_sd(a, "model.")}, "ode_init.pt", None, 0),
    "fsdp + checkpoint wrapper": (lambda a, b: {"generator": original_sd(a, "model.", _fsdp)}, "fsdp.pt", None, 0),
    "torch.compile _orig_mod": (lambda a, b: {"generator_ema": original_sd(b, "_orig_mod.model.")}, "c.pth", None, 1),
    "flat original state dict": (lambda a, b: original_sd(a), "wan.bin", None, 0),
    "diffusers layout pickle": (lambda a, b: {"generator": {"model." + k: v for k, v in b.state_dict().items()}},
                                "d.pt", None, 1),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_foreign_layouts_give_the_source_outputs(name, models, tmp_path):
    from sfpp.checkpoints import read_checkpoint

    make, fname, entry, which = LAYOUTS[name]
    path = tmp_path / fname
    torch.save(make(*models), path)
    arg = f"{path}#{entry}" if entry else path
    state, cfg = read_checkpoint(arg)
    ref = forward(models[which])
    out = forward(loaded(state))
    assert (out - ref).abs().max().item() < 1e-6
    assert (forward(models[1 - which]) - ref).abs().max().item() > 1e-2  # the two sources are distinguishable
    assert cfg["source_layout"] == ("diffusers" if "diffusers" in name else "original")


def test_original_layout_safetensors_and_entry_option(models, tmp_path):
    from safetensors.torch import save_file

    from sfpp.checkpoints import read_checkpoint

    save_file(original_sd(models[0], "model."), str(tmp_path / "orig.safetensors"))
    state, _ = read_checkpoint(tmp_path / "orig.safetensors")
    assert (forward(loaded(state)) - forward(models[0])).abs().max().item() < 1e-6
    # `--entry` and FILE#ENTRY are the same; the written student embeds where it came from
    torch.save({"generator": original_sd(models[0], "model."), "generator_ema": original_sd(models[1], "model.")},
               tmp_path / "sf.pt")
    r = run("convert", tmp_path / "sf.pt", "--entry", "generator_ema", "--out", tmp_path / "s.safetensors")
    assert r.exit_code == 0, r.output
    assert "original layout, entry generator_ema" in r.output
    state, cfg = read_checkpoint(tmp_path / "s.safetensors")
    assert cfg["model"] == "debug" and cfg["source_entry"] == "generator_ema" and cfg["source_layout"] == "original"
    assert "model." in cfg["stripped"]
    assert (forward(loaded(state)) - forward(models[1])).abs().max().item() < 1e-6
    one_line_error(run("convert", f"{tmp_path / 'sf.pt'}#generator", "--entry", "generator_ema",
                       "--out", tmp_path / "t.safetensors"), "not both")


def _lora_reference(base, rank, alpha, seed=3):
    """`base` with peft LoRA on attention and FFN linears, adapters randomised: (model, peft adapter state)."""
    import copy

    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    m = copy.deepcopy(base)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj",
                                                                 "ffn.net.2"])
    inject_adapter_in_model(cfg, m)
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_" in n:
                p.copy_(0.1 * torch.randn_like(p))
    return m, get_peft_model_state_dict(m)


def _longlive_lora_keys(adapter):
    """peft keys of LongLive's generator (a PeftModel around the original-naming Wan model)."""
    out = {}
    for k, v in adapter.items():
        module, kind = k.split(".lora_")
        out[f"base_model.model.{to_original(module + '.weight')[:-len('.weight')]}.lora_{kind}"] = v.clone()
    return out


def test_longlive_base_plus_lora(models, tmp_path):
    from sfpp.checkpoints import read_checkpoint

    base = models[0]
    adapted, adapter = _lora_reference(base, rank=4, alpha=4)  # LongLive: alpha = rank
    keys = _longlive_lora_keys(adapter)
    assert "base_model.model.blocks.0.self_attn.q.lora_A.weight" in keys
    assert "base_model.model.blocks.1.ffn.2.lora_B.weight" in keys
    torch.save({"generator": original_sd(base, "model.")}, tmp_path / "longlive_base.pt")
    torch.save({"generator_lora": keys, "critic_lora": {k: torch.zeros_like(v) for k, v in keys.items()}},
               tmp_path / "lora.pt")
    ref = forward(adapted)
    assert (ref - forward(base)).abs().max().item() > 1e-2  # the adapter matters
    for args in (["longlive_base.pt", "--lora", "lora.pt"], ["lora.pt", "--lora-base", "longlive_base.pt"]):
        args = [tmp_path / a if a.endswith(".pt") else a for a in args]
        r = run("convert", *args, "--out", tmp_path / "merged.safetensors")
        assert r.exit_code == 0, r.output
        state, cfg = read_checkpoint(tmp_path / "merged.safetensors")
        assert (forward(loaded(state)) - ref).abs().max().item() < 1e-5
        assert cfg["merged_lora"]
    # a LoRA file alone is not a model
    one_line_error(run("convert", tmp_path / "lora.pt", "--out", tmp_path / "x.safetensors"), "LoRA", "--lora")


def test_lora_alpha_scales_the_adapter(models, tmp_path):
    from sfpp.convert import read_lora
    from sfpp.lora import merge_lora

    adapted, adapter = _lora_reference(models[1], rank=4, alpha=8)  # scale 2
    torch.save(_longlive_lora_keys(adapter), tmp_path / "lora.pt")
    base = models[1].state_dict()
    wrong = merge_lora(base, read_lora(tmp_path / "lora.pt"))  # alpha unknown -> rank -> scale 1
    right = merge_lora(base, read_lora(tmp_path / "lora.pt", alpha=8))
    ref = forward(adapted)
    assert (forward(loaded(right)) - ref).abs().max().item() < 1e-5
    assert (forward(loaded(wrong)) - ref).abs().max().item() > 1e-3


def test_unknown_layout_names_the_unexpected_keys(models, tmp_path):
    from sfpp.convert import read_foreign

    sd = original_sd(models[0], "model.")
    sd["model.blocks.0.mystery_gate.weight"] = torch.zeros(3)
    sd["model.extra_head.bias"] = torch.zeros(3)
    torch.save({"generator": sd}, tmp_path / "odd.pt")
    with pytest.raises(SfppError) as e:
        read_foreign(tmp_path / "odd.pt")
    msg = str(e.value)
    assert "unrecognised checkpoint layout" in msg and "2 of 71 keys do not fit the original Wan naming" in msg
    unexpected = msg.split("unexpected: ")[1].split(")")[0]
    assert unexpected == "blocks.0.mystery_gate.weight, extra_head.bias"
    one_line_error(run("convert", tmp_path / "odd.pt", "--out", tmp_path / "o.safetensors"),
                   "mystery_gate", "extra_head.bias")
    one_line_error(run("generate", "x", "--frames", 9, "--checkpoint", tmp_path / "odd.pt", "--out", tmp_path / "v.mp4"),
                   "unrecognised checkpoint layout", "mystery_gate")
    # no known entry / a missing entry / not weights-only
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}, "step": 3}, tmp_path / "opt.pt")
    with pytest.raises(SfppError, match="none of the entries generator, generator_ema.*found: optimizer"):
        read_foreign(tmp_path / "opt.pt")
    with pytest.raises(SfppError, match="no state-dict entry 'generator_ema'; its entries are: generator"):
        read_foreign(f"{tmp_path / 'odd.pt'}#generator_ema")
    torch.save({"generator": original_sd(models[0]), "args": __import__("argparse").Namespace(lr=1)}, tmp_path / "ns.pt")
    with pytest.raises(SfppError, match=r"weights_only=True"):
        read_foreign(tmp_path / "ns.pt")
    # a training state with peft adapters injected is not silently merged at some guessed scale
    from sfpp.lora import add_lora

    m = tiny_model(4)
    add_lora(m, rank=2, alpha=None, target_modules=("to_q",))
    torch.save({"student": m.state_dict()}, tmp_path / "state.pt")
    with pytest.raises(SfppError, match="peft adapters injected"):
        read_foreign(f"{tmp_path / 'state.pt'}#student")


def test_wrong_model_size_is_named(models, tmp_path):
    sd = original_sd(models[0], "model.")
    sd = {k: v for k, v in sd.items() if not k.startswith("model.blocks.1.")}  # a 1-block model
    torch.save({"generator": sd}, tmp_path / "short.pt")
    one_line_error(run("convert", tmp_path / "short.pt", "--out", tmp_path / "s.safetensors"), "pass --model")
    one_line_error(run("convert", tmp_path / "short.pt", "--model", "debug", "--out", tmp_path / "s.safetensors"),
                   "does not fit --model debug", "missing keys")


def test_generate_with_a_self_forcing_pt_through_the_cli(models, tmp_path):
    torch.save({"generator": original_sd(models[0], "model."), "generator_ema": original_sd(models[1], "model.")},
               tmp_path / "self_forcing_dmd.pt")
    common = ["--frames", 9, "--height", 32, "--width", 32]
    r = run("generate", "a red circle", *common, "--checkpoint", f"{tmp_path / 'self_forcing_dmd.pt'}#generator_ema",
            "--out", tmp_path / "a.mp4")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["checkpoint"].endswith("self_forcing_dmd.pt#generator_ema") and len(side["checkpoint_sha256"]) == 64
    # the same weights via `sfpp convert` give the same video; the other entry gives another one
    assert run("convert", f"{tmp_path / 'self_forcing_dmd.pt'}#generator_ema", "--out",
               tmp_path / "ema.safetensors").exit_code == 0
    assert run("generate", "a red circle", *common, "--checkpoint", tmp_path / "ema.safetensors",
               "--out", tmp_path / "b.mp4").exit_code == 0
    assert run("generate", "a red circle", *common, "--checkpoint", tmp_path / "self_forcing_dmd.pt",
               "--out", tmp_path / "c.mp4").exit_code == 0
    a, b, c = (read_mp4(tmp_path / f"{n}.mp4")[0].astype(int) for n in "abc")
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 0.5
    one_line_error(run("generate", "x", "--checkpoint", f"{tmp_path / 'missing.pt'}#generator"), "does not exist")


def test_export_diffusers_folder_loads_with_from_pretrained(models, tmp_path):
    from diffusers import WanTransformer3DModel

    from sfpp.presets import load_diffusers_components

    torch.save({"generator": original_sd(models[1], "model.")}, tmp_path / "sf.pt")
    assert run("convert", tmp_path / "sf.pt", "--out", tmp_path / "s.safetensors").exit_code == 0
    out = tmp_path / "export"
    r = run("convert", tmp_path / "s.safetensors", "--to", "diffusers", "--out", out)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "transformer" / "config.json").read_text())["num_layers"] == DEBUG_TRANSFORMER["num_layers"]
    m = WanTransformer3DModel.from_pretrained(out / "transformer").eval()
    assert (forward(m) - forward(models[1])).abs().max().item() < 1e-6
    comps = load_diffusers_components(out)  # a complete folder: usable as --weights
    assert (forward(comps.transformer) - forward(models[1])).abs().max().item() < 1e-6
    # copying the other components from --weights
    out2 = tmp_path / "export2"
    r = run("convert", tmp_path / "sf.pt", "--to", "diffusers", "--out", out2, "--weights", out, "--model", "debug")
    assert r.exit_code == 0, r.output
    for sub in ("vae", "text_encoder", "tokenizer"):
        assert (out2 / sub).is_dir()
    one_line_error(run("convert", tmp_path / "sf.pt", "--to", "diffusers", "--out", out2), "already exists")
    one_line_error(run("convert", tmp_path / "sf.pt", "--to", "onnx", "--out", out2), "--to must be")


def test_full_size_layout_converts_and_fits_on_the_meta_device():
    """The rename table covers Wan2.1-T2V-1.3B (checked on meta tensors: no memory, no weights)."""
    from diffusers import WanTransformer3DModel

    from sfpp.convert import check_fits, infer_preset, to_diffusers_state
    from sfpp.presets import transformer_config

    cfg = transformer_config("wan2.1-t2v-1.3b")
    with torch.device("meta"):
        m = WanTransformer3DModel.from_config(cfg)
    assert sum(p.numel() for p in m.parameters()) == 1_418_996_800
    foreign = {"model." + to_original(k): v for k, v in m.state_dict().items()}
    state, layout, removed = to_diffusers_state(foreign, source="sf")
    assert layout == "original" and removed == ["model."]
    assert infer_preset(state) == "wan2.1-t2v-1.3b"
    check_fits(state, cfg, source="sf", preset="wan2.1-t2v-1.3b")
    with pytest.raises(SfppError, match="does not fit --model wan2.1-t2v-14b"):
        check_fits(state, transformer_config("wan2.1-t2v-14b"), source="sf", preset="wan2.1-t2v-14b")
