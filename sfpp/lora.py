"""LoRA on the student: adapters added from outside the model (peft), merged for export and inference.

Representation used everywhere in sfpp (`LoraWeights`): per target module, in diffusers naming
(``blocks.0.attn1.to_q``), a down matrix ``A`` of shape ``(r, in)``, an up matrix ``B`` of shape
``(out, r)`` and a scale; merging sets ``W <- W + scale * B @ A`` (computed in float32, cast back
to W's dtype). This is peft's LoRA with ``scale = alpha / r``.

sfpp adapter files (``*_lora.safetensors``, written by `save_adapter`) hold peft-style keys
``{module}.lora_A.weight`` / ``{module}.lora_B.weight`` in diffusers naming, with metadata
``sfpp_format = "sfpp-lora-v1"`` and ``sfpp_lora`` (JSON: rank, alpha, target_modules) plus
``sfpp_config``. Foreign adapter files (LongLive's ``lora.pt``, peft or kohya naming, original
Wan module names) are read by `sfpp.convert.read_lora`.

Training: `add_lora` injects peft LoRA layers into the student's `WanTransformer3DModel` and
freezes everything else, so only adapter parameters train; the injected state dict then uses
peft's names (``...to_q.base_layer.weight``, ``...to_q.lora_A.default.weight``) and
`merge_injected_state` turns it back into a plain diffusers-layout student state dict.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sfpp.errors import SfppError

LORA_FORMAT = "sfpp-lora-v1"
ADAPTER = "default"  # peft's adapter name inside an injected model


@dataclass(frozen=True)
class LoraModule:
    """One adapted linear layer: ``W + scale * up @ down``."""

    down: torch.Tensor  # A, (r, in)
    up: torch.Tensor  # B, (out, r)
    scale: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> torch.Tensor:
        return self.scale * (self.up.float() @ self.down.float())  # (out, in)


@dataclass(frozen=True)
class LoraWeights:
    """Adapters keyed by diffusers module path (``blocks.0.attn1.to_q``)."""

    modules: dict[str, LoraModule]
    source: str = ""

    def __len__(self) -> int:
        return len(self.modules)


def merge_lora(state: dict[str, torch.Tensor], lora: LoraWeights) -> dict[str, torch.Tensor]:
    """A new diffusers-layout state dict with every adapter merged into its ``.weight``."""
    missing = sorted(m for m in lora.modules if f"{m}.weight" not in state)
    if missing:
        raise SfppError(
            f"LoRA {lora.source} adapts {len(missing)} modules the model does not have (e.g. {', '.join(missing[:3])}); "
            "merge it onto the base checkpoint it was trained for"
        )
    out = dict(state)
    for name, mod in lora.modules.items():
        w = state[f"{name}.weight"]
        if w.ndim != 2 or tuple(w.shape) != (mod.up.shape[0], mod.down.shape[1]):
            raise SfppError(
                f"LoRA {lora.source} does not fit {name}.weight {tuple(w.shape)}: adapter gives "
                f"{(mod.up.shape[0], mod.down.shape[1])}; merge it onto the base checkpoint it was trained for"
            )
        out[f"{name}.weight"] = (w.float() + mod.delta()).to(w.dtype)
    return out


# ---------------------------------------------------------------------- training (peft)
def lora_scale(rank: int, alpha: float | None) -> float:
    return float(alpha if alpha is not None else rank) / float(rank)


def add_lora(transformer: torch.nn.Module, *, rank: int, alpha: float | None, target_modules: tuple[str, ...],
             dropout: float = 0.0, seed: int = 0) -> int:
    """Inject peft LoRA layers into `transformer` in place; only adapter parameters stay trainable.

    The adapters' random init is drawn from its own seeded generator (so it is the same on every
    rank and every run). Returns the number of adapted modules.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:  # the [train] extra
        raise SfppError("LoRA training needs peft: pip install 'sfpp[train]'") from None
    cfg = LoraConfig(r=rank, lora_alpha=float(alpha if alpha is not None else rank), lora_dropout=dropout,
                     target_modules=list(target_modules), bias="none", init_lora_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            inject_adapter_in_model(cfg, transformer, adapter_name=ADAPTER)
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise SfppError(f"[lora].target_modules {list(target_modules)} do not fit the student ({first}); "
                            "use module names like to_q, to_k, to_v, to_out.0, ffn.net.0.proj, ffn.net.2") from None
    for name, p in transformer.named_parameters():
        p.requires_grad_(".lora_" in name)
    return sum(1 for n, _ in transformer.named_modules() if n.endswith(f".lora_A.{ADAPTER}"))


def split_injected_state(state: dict[str, torch.Tensor], scale: float) -> tuple[dict[str, torch.Tensor], LoraWeights]:
    """Split a peft-injected state dict into (base diffusers state dict, adapters)."""
    base: dict[str, torch.Tensor] = {}
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if f".lora_A.{ADAPTER}." in k:
            downs[k.split(".lora_A.")[0]] = v
        elif f".lora_B.{ADAPTER}." in k:
            ups[k.split(".lora_B.")[0]] = v
        elif ".lora_" in k:
            raise SfppError(f"unexpected LoRA key {k} in the student state (only adapter {ADAPTER!r} is supported)")
        else:
            base[k.replace(".base_layer.", ".")] = v
    if set(downs) != set(ups):
        odd = sorted(set(downs) ^ set(ups))
        raise SfppError(f"LoRA state is incomplete: modules without both lora_A and lora_B (e.g. {odd[0]})")
    mods = {m: LoraModule(downs[m], ups[m], scale) for m in sorted(downs)}
    return base, LoraWeights(mods, source="student adapters")


def merge_injected_state(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Plain diffusers-layout student weights (adapters merged) from a peft-injected state dict."""
    base, lora = split_injected_state(state, scale)
    return merge_lora(base, lora)


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of an injected state dict in file naming (``{module}.lora_A.weight``)."""
    return {k.replace(f".{ADAPTER}.", "."): v for k, v in state.items() if ".lora_" in k}


def save_adapter(path: str | os.PathLike, state: dict[str, torch.Tensor], *, rank: int, alpha: float | None,
                 target_modules: tuple[str, ...], config: dict[str, Any]) -> Path:
    """Write an sfpp adapter file (see the module docstring) atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in adapter_state(state).items()}
    meta = {"rank": rank, "alpha": float(alpha if alpha is not None else rank), "target_modules": list(target_modules)}
    save_file(tensors, str(tmp), metadata={"sfpp_format": LORA_FORMAT, "sfpp_lora": json.dumps(meta),
                                           "sfpp_config": json.dumps(config)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
