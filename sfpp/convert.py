"""Every foreign-checkpoint converter, in one module: foreign files -> sfpp's diffusers-layout student.

What is read (the layout is detected from the keys, never from the file name):

* **Naming.** Original Wan (Wan-AI, Self-Forcing, CausVid, LongLive: ``blocks.0.self_attn.q.weight``,
  ``head.head``, ``time_embedding.0`` ...) is renamed to diffusers' `WanTransformer3DModel`
  naming with the table below (note the norm swap: original ``norm3`` is diffusers ``norm2``);
  diffusers-layout state dicts pass through. A key that fits neither naming is an error that
  names it.
* **Decorations.** Segments ``_fsdp_wrapped_module.``, ``_checkpoint_wrapped_module.`` and
  ``_orig_mod.`` are removed wherever they occur; then a prefix shared by *every* key is
  stripped, repeatedly: ``model.`` (Self-Forcing's ``WanDiffusionWrapper``), ``module.`` (DDP),
  ``model.diffusion_model.`` / ``diffusion_model.`` (single-file), ``base_model.model.``
  (peft), ``transformer.`` (diffusers pipelines / `CausalWan`).
* **Containers.** ``.safetensors`` files, and torch pickles (``.pt``, ``.pth``, ``.bin``) loaded
  only with ``torch.load(path, map_location="cpu", weights_only=True)``. A pickle is either a
  flat state dict or a dict of entries: Self-Forcing ``{"generator", "generator_ema", "critic"}``,
  CausVid ``{"generator"}``, ODE-init ``{"model"}`` or ``{"generator"}``, LongLive base
  ``{"generator"}`` and LoRA ``{"generator_lora", "critic_lora"}``.
* **Entry selection.** ``FILE#ENTRY`` picks an entry (``self_forcing_dmd.pt#generator_ema``);
  without one the first present of ``generator``, ``generator_ema``, ``model``, ``state_dict``
  is used (what the peers' inference scripts load without flags; Self-Forcing's README runs
  with ``--use_ema``, i.e. ``#generator_ema``). LoRA files default to ``generator_lora``.
* **LoRA files** (`read_lora`): peft keys ``{module}.lora_A[.<adapter>].weight`` /
  ``{module}.lora_B[...].weight`` or kohya keys ``lora_down`` / ``lora_up`` (with an optional
  per-module ``{module}.alpha``), module paths in original or diffusers naming. The scale is
  ``alpha / r`` with alpha from, in order: the per-module ``alpha`` tensor, the caller's
  ``alpha``, an sfpp adapter file's metadata, else ``alpha = r`` (scale 1; LongLive's released
  adapter is rank 256, alpha 256). Merged with `sfpp.lora.merge_lora`.

The library entry points used by the CLI are `convert_checkpoint` (-> sfpp student safetensors
with its config embedded) and `export_diffusers` (-> a diffusers-layout folder).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sfpp.errors import SfppError
from sfpp.lora import LORA_FORMAT, LoraModule, LoraWeights

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
SHARED_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "module.", "model.",
                   "transformer.")
DEFAULT_ENTRIES = ("generator", "generator_ema", "model", "state_dict")
DEFAULT_LORA_ENTRIES = ("generator_lora", "lora", "state_dict")
IGNORED_KEYS = re.compile(r"(?:freqs|rope\.freqs(?:_cos|_sin)?)")  # RoPE tables some wrappers save

# ---------------------------------------------------------------------- naming tables
# Original Wan module path -> diffusers module path (regex fullmatch, applied to the part before
# ".weight"/".bias" or before the LoRA suffix).
_ORIGINAL_MODULES: list[tuple[re.Pattern, str]] = [
    (re.compile(p), r) for p, r in [
        (r"patch_embedding", "patch_embedding"),
        (r"time_embedding\.0", "condition_embedder.time_embedder.linear_1"),
        (r"time_embedding\.2", "condition_embedder.time_embedder.linear_2"),
        (r"text_embedding\.0", "condition_embedder.text_embedder.linear_1"),
        (r"text_embedding\.2", "condition_embedder.text_embedder.linear_2"),
        (r"time_projection\.1", "condition_embedder.time_proj"),
        (r"head\.head", "proj_out"),
        (r"blocks\.(\d+)\.norm3", r"blocks.\1.norm2"),  # the cross-attention norm (affine); names swapped
        (r"blocks\.(\d+)\.ffn\.0", r"blocks.\1.ffn.net.0.proj"),
        (r"blocks\.(\d+)\.ffn\.2", r"blocks.\1.ffn.net.2"),
    ] + [
        (rf"blocks\.(\d+)\.{orig}\.{o}", rf"blocks.\1.{diff}.{d}")
        for orig, diff in (("self_attn", "attn1"), ("cross_attn", "attn2"))
        for o, d in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"), ("norm_q", "norm_q"),
                     ("norm_k", "norm_k"))
    ]
]
# Parameters that are not under a module of their own.
_ORIGINAL_PARAMS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"head\.modulation"), "scale_shift_table"),
    (re.compile(r"blocks\.(\d+)\.modulation"), r"blocks.\1.scale_shift_table"),
]
_DIFFUSERS_MODULE = re.compile(
    r"patch_embedding|proj_out"
    r"|condition_embedder\.(?:time_embedder\.linear_[12]|text_embedder\.linear_[12]|time_proj)"
    r"|blocks\.\d+\.(?:attn[12]\.(?:to_q|to_k|to_v|to_out\.0|norm_q|norm_k)|norm2|ffn\.net\.0\.proj|ffn\.net\.2)"
)
_DIFFUSERS_PARAM = re.compile(r"(?:blocks\.\d+\.)?scale_shift_table")
_PARAM_SUFFIX = re.compile(r"(.+)\.(weight|bias)")
_LORA_SUFFIX = re.compile(r"(.+)\.(lora_A|lora_B|lora_down|lora_up)(?:\.[A-Za-z0-9_]+)?\.weight|(.+)\.(alpha)")


def original_module_to_diffusers(module: str) -> str | None:
    for pat, rep in _ORIGINAL_MODULES:
        if pat.fullmatch(module):
            return pat.sub(rep, module)
    return None


def _original_key(key: str) -> str | None:
    for pat, rep in _ORIGINAL_PARAMS:
        if pat.fullmatch(key):
            return pat.sub(rep, key)
    m = _PARAM_SUFFIX.fullmatch(key)
    if m:
        mod = original_module_to_diffusers(m.group(1))
        return None if mod is None else f"{mod}.{m.group(2)}"
    return None


def _is_diffusers_key(key: str) -> bool:
    if _DIFFUSERS_PARAM.fullmatch(key):
        return True
    m = _PARAM_SUFFIX.fullmatch(key)
    return bool(m and _DIFFUSERS_MODULE.fullmatch(m.group(1)))


# ---------------------------------------------------------------------- reading containers
def split_entry(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``"ckpt.pt#generator_ema"`` -> (Path("ckpt.pt"), "generator_ema"); an existing file wins."""
    text = str(path)
    if "#" in text and not Path(text).exists():
        file, entry = text.rsplit("#", 1)
        return Path(file), (entry or None)
    return Path(text), None


def _load_file(file: Path) -> tuple[Any, dict[str, str]]:
    """The raw content of a checkpoint file and its safetensors metadata (empty for pickles)."""
    if not file.is_file():
        raise SfppError(f"checkpoint {file} does not exist")
    if file.suffix.lower() in PICKLE_SUFFIXES:
        try:
            return torch.load(file, map_location="cpu", weights_only=True), {}
        except Exception as e:  # unpickling errors of many kinds: not loadable without code execution
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise SfppError(
                f"{file} cannot be loaded with torch.load(weights_only=True) ({type(e).__name__}: {first}); "
                "sfpp only reads tensors: re-save it as a plain dict of state dicts with torch.save"
            ) from None
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise SfppError(f"checkpoint {file} is not a readable safetensors file ({type(e).__name__}); "
                        f"give a .safetensors file or a torch pickle ({', '.join(PICKLE_SUFFIXES)})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_entry(obj: Any, entry: str | None, *, source: str, lora: bool = False) -> tuple[dict[str, torch.Tensor], str | None]:
    """Pick the state dict inside a loaded checkpoint: itself if flat, else the named/default entry."""
    if not isinstance(obj, dict) or not obj:
        raise SfppError(f"{source} holds a {type(obj).__name__}, not a state dict or a dict of state dicts")
    if _is_state_dict(obj) and entry is None:
        return dict(obj), None
    entries = [k for k, v in obj.items() if isinstance(v, dict) and any(isinstance(x, torch.Tensor) for x in v.values())]
    if entry is not None:
        if entry not in entries:
            raise SfppError(f"{source} has no state-dict entry {entry!r}; its entries are: "
                            f"{', '.join(map(str, entries)) or 'none'}")
        chosen = entry
    else:
        order = DEFAULT_LORA_ENTRIES if lora else DEFAULT_ENTRIES
        found = [e for e in order if e in entries]
        if not found and not lora and any("lora" in str(e) for e in entries):
            raise SfppError(f"{source} holds LoRA adapters ({', '.join(map(str, entries))}), not a full model; "
                            "load it with --lora on top of its base (sfpp convert LORA --lora-base BASE)")
        if not found:
            raise SfppError(
                f"{source} has none of the entries {', '.join(order)} (found: {', '.join(map(str, entries)) or 'none'}); "
                "pick one with FILE#ENTRY"
            )
        chosen = found[0]
    sd = {k: v for k, v in obj[chosen].items() if isinstance(v, torch.Tensor)}
    return sd, chosen


def normalize_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper segments everywhere and prefixes shared by every key. Returns (state, removed)."""
    removed: list[str] = []
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        nk = k
        for seg in WRAPPER_SEGMENTS:
            if seg in nk:
                nk = nk.replace(seg, "")
                if seg not in removed:
                    removed.append(seg)
        if nk in out:
            raise SfppError(f"keys {k!r} and another collapse to {nk!r} once wrapper segments are removed")
        out[nk] = v
    changed = True
    while changed and out:
        changed = False
        for p in SHARED_PREFIXES:
            if all(k.startswith(p) for k in out):
                out = {k[len(p):]: v for k, v in out.items()}
                removed.append(p)
                changed = True
                break
    return out, removed


def _examples(keys: list[str], n: int = 3) -> str:
    return ", ".join(sorted(keys)[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def to_diffusers_state(state: dict[str, torch.Tensor], *, source: str) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Normalise and rename a full transformer state dict. Returns (state, layout, decorations removed)."""
    state, removed = normalize_keys(state)
    state = {k: v for k, v in state.items() if not IGNORED_KEYS.fullmatch(k)}
    if any(".base_layer." in k for k in state):
        raise SfppError(f"{source} is a model with peft adapters injected (base_layer/lora_A keys); use the merged "
                        "student instead (sfpp exports it as student.safetensors next to student_lora.safetensors)")
    if any(_LORA_SUFFIX.fullmatch(k) for k in state):
        raise SfppError(f"{source} holds LoRA adapter weights, not a full model; load it with --lora "
                        "(or `sfpp convert LORA --lora-base BASE`) on top of its base checkpoint")
    if not state:
        raise SfppError(f"{source} holds no tensors")
    keys = list(state)
    diffusers_bad = [k for k in keys if not _is_diffusers_key(k)]
    original_bad = [k for k in keys if _original_key(k) is None]
    if not diffusers_bad:
        return state, "diffusers", removed
    if not original_bad:
        out: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            nk = _original_key(k)
            if nk in out:
                raise SfppError(f"{source}: two keys map to {nk} (e.g. {k}); the checkpoint mixes layouts")
            out[nk] = v
        return out, "original", removed
    # Neither layout fits every key: report the keys that do not fit the closer one.
    layout, bad = ("original Wan", original_bad) if len(original_bad) < len(diffusers_bad) else ("diffusers", diffusers_bad)
    raise SfppError(
        f"unrecognised checkpoint layout in {source}: {len(bad)} of {len(keys)} keys do not fit the {layout} naming, "
        f"the closer of original Wan and diffusers (unexpected: {_examples(bad)}); sfpp reads Wan T2V transformers "
        "(keys like blocks.0.self_attn.q.weight or blocks.0.attn1.to_q.weight); if this is the wrong part of the "
        "file, pick another entry with FILE#ENTRY"
    )


@dataclass
class ForeignCheckpoint:
    """A checkpoint converted to the diffusers layout, with how it was read."""

    state: dict[str, torch.Tensor]
    source: str
    layout: str  # "original" or "diffusers"
    entry: str | None
    removed: list[str] = field(default_factory=list)  # wrapper segments / prefixes stripped
    config: dict[str, Any] = field(default_factory=dict)  # embedded sfpp config, if any

    def describe(self) -> dict[str, Any]:
        return {"converted_from": self.source, "source_layout": self.layout, "source_entry": self.entry,
                "stripped": self.removed}


def read_foreign(path: str | os.PathLike) -> ForeignCheckpoint:
    """Read any supported full-model checkpoint (``FILE`` or ``FILE#ENTRY``) in the diffusers layout."""
    file, entry = split_entry(path)
    obj, meta = _load_file(file)
    if meta.get("sfpp_format") == LORA_FORMAT:
        raise SfppError(f"{file} is an sfpp LoRA adapter, not a student; load it with --lora on top of its base")
    sd, chosen = select_entry(obj, entry, source=str(file))
    state, layout, removed = to_diffusers_state(sd, source=f"{file}" + (f"#{chosen}" if chosen else ""))
    config = json.loads(meta["sfpp_config"]) if "sfpp_config" in meta else {}
    return ForeignCheckpoint(state, str(path), layout, chosen, removed, config)


def read_lora(path: str | os.PathLike, *, alpha: float | None = None) -> LoraWeights:
    """Read an adapter file (sfpp, peft, LongLive ``lora.pt``, kohya naming) as `LoraWeights` (diffusers naming)."""
    file, entry = split_entry(path)
    obj, meta = _load_file(file)
    if meta.get("sfpp_format") == LORA_FORMAT and alpha is None:
        alpha = json.loads(meta.get("sfpp_lora", "{}")).get("alpha")
    sd, chosen = select_entry(obj, entry, source=str(file), lora=True)
    sd, _ = normalize_keys(sd)
    source = str(file) + (f"#{chosen}" if chosen else "")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    bad = []
    for k, v in sd.items():
        m = _LORA_SUFFIX.fullmatch(k)
        if not m:
            bad.append(k)
            continue
        module, kind = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        kind = {"lora_down": "lora_A", "lora_up": "lora_B"}.get(kind, kind)
        if _DIFFUSERS_MODULE.fullmatch(module):
            name = module
        else:
            name = original_module_to_diffusers(module)
            if name is None:
                bad.append(k)
                continue
        if kind in parts.setdefault(name, {}):
            raise SfppError(f"{source} has two {kind} tensors for {name} (several adapters?); keep one")
        parts[name][kind] = v
    if bad:
        raise SfppError(f"{source} is not a LoRA file sfpp can read: {len(bad)} unexpected keys ({_examples(bad)}); "
                        "expected {module}.lora_A.weight / {module}.lora_B.weight")
    if not parts:
        raise SfppError(f"{source} holds no LoRA tensors")
    modules: dict[str, LoraModule] = {}
    for name, p in sorted(parts.items()):
        if "lora_A" not in p or "lora_B" not in p:
            raise SfppError(f"{source}: {name} has {' and '.join(sorted(p))} but needs both lora_A and lora_B")
        a, b = p["lora_A"], p["lora_B"]
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0]:
            raise SfppError(f"{source}: {name} lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not form a "
                            "linear LoRA (A: r x in, B: out x r)")
        r = a.shape[0]
        a_val = float(p["alpha"]) if "alpha" in p else (float(alpha) if alpha is not None else float(r))
        modules[name] = LoraModule(a, b, a_val / r)
    return LoraWeights(modules, source=source)


# ---------------------------------------------------------------------- model configs
def num_layers(state: dict[str, torch.Tensor]) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def infer_preset(state: dict[str, torch.Tensor]) -> str | None:
    """The preset whose transformer has this inner dim and depth, if one does."""
    from sfpp.arch import DEBUG_TRANSFORMER, WAN_TRANSFORMERS, inner_dim

    w = state.get("patch_embedding.weight")
    if w is None:
        return None
    dim, depth = int(w.shape[0]), num_layers(state)
    for name, cfg in {"debug": DEBUG_TRANSFORMER, **WAN_TRANSFORMERS}.items():
        if (dim, depth) == (inner_dim(cfg), cfg["num_layers"]):
            return name
    return None


def check_fits(state: dict[str, torch.Tensor], config: dict[str, Any], *, source: str, preset: str) -> None:
    """Keys and shapes of `state` against a meta-device model of `config` (no memory, no copy)."""
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in WanTransformer3DModel.from_config(config).state_dict().items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} vs {own[k]}" for k in sorted(set(own) & set(state))
             if tuple(state[k].shape) != own[k]]
    if missing or unexpected or wrong:
        parts = ([f"{len(wrong)} shape mismatches (e.g. {wrong[0]})"] if wrong else []) + \
                ([f"{len(missing)} missing keys (e.g. {missing[0]})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})"] if unexpected else [])
        raise SfppError(f"checkpoint {source} does not fit --model {preset}: {'; '.join(parts)}; "
                        "pick the --model the checkpoint was trained for")
