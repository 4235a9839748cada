"""Writing converted students: an sfpp student file, or a diffusers folder (`sfpp convert`).

Reads any layout `sfpp.convert` understands (foreign pickles, original-Wan or diffusers state
dicts, sfpp students), merges LoRA adapters, checks the result fits the preset's transformer and
writes it out. The converters themselves live in `sfpp.convert`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sfpp.checkpoints import save_student
from sfpp.convert import ForeignCheckpoint, check_fits, infer_preset, num_layers, read_foreign, read_lora
from sfpp.errors import SfppError
from sfpp.lora import merge_lora
from sfpp.presets import get_preset, transformer_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Converted:
    state: dict[str, torch.Tensor]
    preset: str
    config: dict[str, Any]  # embedded in the output
    source: ForeignCheckpoint


def load_any(src: str | os.PathLike, *, model: str | None = None, lora: list[str] | tuple[str, ...] = (),
             lora_alpha: float | None = None, dtype: str | None = None,
             weights: str | os.PathLike | None = None) -> Converted:
    """Read `src` (any supported layout; sfpp students included), merge adapters, check it fits the preset."""
    ck = read_foreign(src)
    state = ck.state
    for path in lora:
        state = merge_lora(state, read_lora(path, alpha=lora_alpha))
    if dtype is not None:
        if dtype not in DTYPES:
            raise SfppError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        state = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in state.items()}
    preset = model or ck.config.get("model") or infer_preset(state)
    if preset is None:
        w = state.get("patch_embedding.weight")
        raise SfppError(f"cannot tell which model {src} is for (inner dim {None if w is None else w.shape[0]}, "
                        f"{num_layers(state)} blocks); pass --model")
    tcfg = transformer_config(preset, weights)
    check_fits(state, tcfg, source=str(src), preset=preset)
    config = dict(ck.config) if ck.config else {"model": preset}
    config["model"] = preset
    if ck.config.get("model") is None or ck.layout != "diffusers" or lora:
        config.update(ck.describe())
    if lora:
        config["merged_lora"] = [str(p) for p in lora]
    return Converted(state, preset, config, ck)


def convert_checkpoint(src: str | os.PathLike, out: str | os.PathLike, **kw) -> Converted:
    """Write `src` as an sfpp student (`.safetensors` + embedded config)."""
    res = load_any(src, **kw)
    save_student(out, res.state, res.config)
    return res


def export_diffusers(src: str | os.PathLike, out_dir: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                     **kw) -> Converted:
    """Write `src` as a diffusers folder: ``out_dir/transformer/`` (config.json + weights via
    `save_pretrained`); with `weights`, also copy its vae/text_encoder/tokenizer/scheduler and
    model_index.json; for the built-in ``debug`` model, save its own components instead."""
    from diffusers import WanTransformer3DModel

    res = load_any(src, weights=weights, **kw)
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (out_dir / "transformer").exists():
        raise SfppError(f"{out_dir / 'transformer'} already exists; choose another --out or remove it")
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = transformer_config(res.preset, weights)
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(cfg)
    model.load_state_dict(res.state, strict=True, assign=True)
    model.save_pretrained(out_dir / "transformer", safe_serialization=True)
    if weights is not None:
        root = Path(weights).expanduser()
        for sub in ("vae", "text_encoder", "tokenizer", "scheduler"):
            if (root / sub).is_dir():
                shutil.copytree(root / sub, out_dir / sub, dirs_exist_ok=True)
        if (root / "model_index.json").is_file():
            shutil.copy2(root / "model_index.json", out_dir / "model_index.json")
    elif get_preset(res.preset).source == "build":
        comps = get_preset(res.preset).build()
        comps.vae.save_pretrained(out_dir / "vae", safe_serialization=True)
        comps.text_encoder.save_pretrained(out_dir / "text_encoder", safe_serialization=True)
        comps.tokenizer.save_pretrained(out_dir / "tokenizer")
    (out_dir / "sfpp_export.json").write_text(json.dumps(res.config, indent=2, default=str) + "\n")
    return res
