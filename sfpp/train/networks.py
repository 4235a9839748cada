"""The networks of a distillation stage: causal student, frozen teacher, trainable critic.

Built on the CPU or the device from the preset's components (`sfpp.presets`): the teacher is the
base model (or another diffusers folder / a teacher checkpoint), the critic a trainable copy of
the teacher (or of the student), the student a `CausalWan` over a copy of the base (or a student
checkpoint), optionally with LoRA adapters. Under FSDP they stay on the CPU here and are sharded
onto the device block by block (`sfpp.train.distributed`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sfpp.causal import CausalWan
from sfpp.checkpoints import load_into, read_checkpoint
from sfpp.presets import get_preset, load_components, load_diffusers_components
from sfpp.text import encode_prompts
from sfpp.train.config import DistillConfig


@dataclass
class Networks:
    student: CausalWan
    teacher: Any  # frozen bidirectional WanTransformer3DModel
    critic: Any | None  # trainable bidirectional copy (None for the ODE stage)
    codec: Any  # pixels <-> latents (for sample videos)
    text_len: int


def bidirectional_flow(model, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """Flow prediction of a bidirectional Wan transformer: x_t (B, C, F, H, W), t (B,), emb (B, L, D)."""
    dtype = next(model.parameters()).dtype
    return model(x_t.to(dtype), t, emb.to(dtype), return_dict=False)[0].float()


def _check_declared_model(path: str, preset: str, what: str) -> None:
    """A checkpoint that names another built-in model than the config's preset is refused: models of one
    transformer shape can differ in codec, text encoder or world (toy-v4 vs toy-v4lit), and its weights
    would load without a complaint and mean something else."""
    from sfpp.checkpoints import read_checkpoint_config
    from sfpp.errors import SfppError
    from sfpp.presets import PRESETS

    declared = read_checkpoint_config(path).get("model")
    if isinstance(declared, str) and declared in PRESETS and declared != preset:
        raise SfppError(f"[model] {what} {path} was trained for {declared}, the config's preset is {preset}; "
                        f"set preset = \"{declared}\" or give a checkpoint of {preset}")


def build_networks(cfg: DistillConfig, *, stage: str, config_dir: Path, student_init: Path | None,
                   device: torch.device) -> tuple[Networks, Callable[[list[str]], torch.Tensor], str]:
    """Load base components; teacher (frozen), critic (trainable copy), student (causal)."""
    preset = get_preset(cfg.model.preset)

    def resolve(p: str | None) -> str | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (config_dir / q))

    comps = load_components(preset, weights=resolve(cfg.model.weights))
    base = comps.transformer
    if cfg.model.teacher_weights:
        teacher = load_diffusers_components(Path(resolve(cfg.model.teacher_weights))).transformer
    else:
        teacher = copy.deepcopy(base)
    for what, path in (("teacher_checkpoint", cfg.model.teacher_checkpoint), ("student_checkpoint", cfg.model.student_checkpoint)):
        if path:
            _check_declared_model(resolve(path), preset.name, what)
    if cfg.model.teacher_checkpoint:
        state, _ = read_checkpoint(resolve(cfg.model.teacher_checkpoint))
        load_into(teacher, state, source=cfg.model.teacher_checkpoint)
    student_tr = copy.deepcopy(base)
    init = resolve(cfg.model.student_checkpoint) if cfg.model.student_checkpoint else student_init
    if init is not None:
        state, _ = read_checkpoint(init)
        load_into(student_tr, state, source=str(init))
    critic = None
    if stage != "ode":
        critic = copy.deepcopy(teacher if cfg.model.critic_init == "teacher" else student_tr)
        if cfg.model.critic_init == "teacher" and cfg.model.teacher_weights and teacher.config != base.config:
            critic = copy.deepcopy(base)  # e.g. 14B teacher, 1.3B critic (Self-Forcing's recipe)
        critic.requires_grad_(True).train()
        if cfg.run.gradient_checkpointing:
            critic.enable_gradient_checkpointing()
    teacher.requires_grad_(False).eval()
    student = CausalWan(student_tr)
    student.requires_grad_(True).train()
    if cfg.lora.enabled:  # adapters from outside the model; freezes every base weight
        from sfpp.lora import add_lora

        lo = cfg.lora
        add_lora(student_tr, rank=lo.rank, alpha=lo.alpha, target_modules=lo.target_modules, dropout=lo.dropout,
                 seed=cfg.run.seed)
    student.gradient_checkpointing = cfg.run.gradient_checkpointing
    # FSDP: the networks stay on the CPU here; sharding moves each block's shard to the device one
    # block at a time, so a model larger than one device never has to fit on it whole.
    model_device = torch.device("cpu") if cfg.run.fsdp else device
    for m in (teacher, critic, student):
        if m is not None:
            m.to(model_device)
    comps.codec.to(device)
    text_encoder, tokenizer = comps.text_encoder.to(device), comps.tokenizer

    def encode(prompts: list[str]) -> torch.Tensor:
        return encode_prompts(tokenizer, text_encoder, prompts, max_length=preset.text_len, device=device)

    encoder_id = f"{preset.name}:{comps.source}"
    return Networks(student, teacher, critic, comps.codec, preset.text_len), encode, encoder_id
