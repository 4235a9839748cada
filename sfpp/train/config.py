"""Distillation configs: one frozen dataclass per component, resolved from a TOML file.

Defaults follow the released Self-Forcing recipe and the Self-Forcing++ paper (see
`shared/reference/method.md`); where the paper is silent, sfpp's documented decisions apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from sfpp.errors import SfppError

STAGES = ("ode", "self-forcing", "extended")

# Wan's default negative prompt (English rendering), used as the unconditional text for CFG.
WAN_NEGATIVE = (
    "bright colors, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    """Networks. The student and critic start from `weights` (the teacher's family) unless overridden."""

    preset: str = "debug"
    weights: str | None = None  # diffusers-layout folder of the base model (student, critic init, teacher)
    teacher_weights: str | None = None  # a different (e.g. 14B) teacher folder; default: `weights`
    teacher_checkpoint: str | None = None  # safetensors teacher transformer (e.g. a ToyWorld teacher)
    student_checkpoint: str | None = None  # safetensors student init (e.g. the ODE stage's output)
    critic_init: Literal["teacher", "student"] = "teacher"
    height: int | None = None  # pixels (default: the preset's)
    width: int | None = None


@dataclass(frozen=True, kw_only=True)
class DataSection:
    prompts: str = "prompts.txt"  # one prompt per line; relative paths are relative to the config file
    negative_prompt: str = WAN_NEGATIVE


@dataclass(frozen=True, kw_only=True)
class RolloutSection:
    """Student rollout: overrides of the preset's `sfpp.rollout_config.RolloutConfig` (None = the preset's value).

    The resolved settings are exported with every student, and `sfpp generate --checkpoint` obeys them.
    """

    chunk_frames: int | None = None
    window: int | None = None  # K = teacher horizon = rolling KV window (latent frames)
    timesteps: tuple[float, ...] | None = None  # nominal; warped with `shift`
    shift: float | None = None
    sink: int | None = None
    rope: Literal["auto", "absolute", "relative"] | None = None
    context_noise: float | None = None
    exit_step: Literal["last", "random"] = "last"  # SF++: last; Self-Forcing: random shared across chunks

    def overrides(self) -> dict:
        """The `RolloutConfig` fields this section sets."""
        from sfpp.rollout_config import FIELDS

        return {k: getattr(self, k) for k in FIELDS if getattr(self, k) is not None}


@dataclass(frozen=True, kw_only=True)
class DMDSection:
    guidance_scale: float = 4.0  # Wan convention: uncond + g (cond - uncond); Self-Forcing's "3.0" = 4.0 here
    min_step: float = 0.02
    max_step: float = 0.98
    timestep_shift: float = 5.0
    critic_ratio: int = 5  # critic updates per generator update
    # Which sigma the DMD and critic steps use for a timestep t: "exact" (sigma = t / 1000 for noising,
    # both x0 conversions and the critic target; self-consistent), or "self-forcing": the released
    # Self-Forcing code's grids (shift-5 noising, shift-8 score wrappers, bf16 network timesteps under
    # bf16 mixed precision), to reproduce its training; see sfpp/train/sigma_grid.py and docs/training.md.
    sigma_grid: Literal["exact", "self-forcing"] = "exact"


@dataclass(frozen=True, kw_only=True)
class OptimSection:
    gen_lr: float = 2e-6
    critic_lr: float = 4e-7
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    warmup_steps: int = 0


@dataclass(frozen=True, kw_only=True)
class EMASection:
    decay: float = 0.99
    start_step: int = 200


@dataclass(frozen=True, kw_only=True)
class ODESection:
    """ODE initialisation: teacher Euler trajectories, then causal regression."""

    num_trajectories: int = 16000
    teacher_steps: int = 48
    shift: float = 8.0
    guidance_scale: float = 6.0
    shard_size: int = 64
    lr: float = 2e-6
    base_steps: int = 3000  # regression updates at --budget 1x
    # Probability that an earlier chunk is given as its clean final ODE state (timestep 0), as the
    # KV cache holds at inference, instead of a noisy stored state; such chunks are left out of the
    # loss. 0 = Self-Forcing's ODE init (context always noisy).
    clean_context: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SelfForcingSection:
    base_steps: int = 120  # generator updates at --budget 1x (Self-Forcing's 600 critic steps / ratio 5)


@dataclass(frozen=True, kw_only=True)
class ExtendedSection:
    """Self-Forcing++: long rollouts, a sampled window, backward noise initialisation, DMD on the window."""

    base_steps: int = 120
    n_max: int = 400  # latent frames (about 100 s for Wan)
    n_max_start: int | None = None  # first N_max of the ramp (default: K)
    ramp_steps: int = 0  # steps (at --budget 1x; Nx stretches it N times) over which N_max grows from n_max_start to n_max
    window_sampling: Literal["uniform", "beta12"] = "uniform"
    renoise_steps: tuple[int, ...] = (0, 1, 2, 3)  # indices into the few-step list for backward noise init


@dataclass(frozen=True, kw_only=True)
class LoraSection:
    """Train LoRA adapters (peft) on the student instead of its full weights; ``rank = 0`` is off.

    Only the adapters train (the critic is unchanged); exports hold the merged student plus the
    adapter alone (``student_lora.safetensors``, relative to the stage's starting student).
    """

    rank: int = 0
    alpha: float | None = None  # None = rank (scale alpha / rank = 1)
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
    dropout: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.rank > 0


@dataclass(frozen=True, kw_only=True)
class RunSection:
    stages: tuple[str, ...] = ("self-forcing", "extended")
    batch_size: int = 1  # per process and micro-batch
    grad_accum: int = 1
    seed: int = 0
    mixed_precision: Literal["no", "bf16"] = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    sample_every: int = 200  # 0 = never
    sample_prompt: str = "a red circle and a blue square bouncing on a black background"
    sample_seconds: float = 10.0
    log_every: int = 1
    device: str | None = None
    fsdp: bool = False  # shard student, critic and teacher across processes (FSDP2) instead of replicating


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    dmd: DMDSection = field(default_factory=DMDSection)
    optim: OptimSection = field(default_factory=OptimSection)
    ema: EMASection = field(default_factory=EMASection)
    ode: ODESection = field(default_factory=ODESection)
    self_forcing: SelfForcingSection = field(default_factory=SelfForcingSection)
    extended: ExtendedSection = field(default_factory=ExtendedSection)
    lora: LoraSection = field(default_factory=LoraSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        bad = [s for s in self.run.stages if s not in STAGES]
        if bad:
            raise SfppError(f"unknown stage(s) {bad} in [run].stages; choose from {', '.join(STAGES)}")
        if self.dmd.critic_ratio < 1 or self.run.batch_size < 1 or self.run.grad_accum < 1:
            raise SfppError("critic_ratio, batch_size and grad_accum must be >= 1")
        lo = self.lora
        if lo.rank < 0 or (lo.alpha is not None and lo.alpha <= 0) or not 0.0 <= lo.dropout < 1.0:
            raise SfppError("[lora] needs rank >= 0 (0 = off), alpha > 0 and 0 <= dropout < 1")
        if lo.enabled and not lo.target_modules:
            raise SfppError("[lora].target_modules is empty; name the student's linear layers, e.g. [\"to_q\", \"to_v\"]")

    def base_steps(self, stage: str) -> int:
        return {"ode": self.ode.base_steps, "self-forcing": self.self_forcing.base_steps,
                "extended": self.extended.base_steps}[stage]


def parse_budget(text: str) -> float:
    """'8x' -> 8.0 (a multiple of the preset's base number of generator updates)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[xX]\s*", text or "")
    if not m or not 0 < float(m.group(1)) <= 1000:
        raise SfppError(f"--budget must look like '8x' (a positive multiple of the base run, at most 1000x), got {text!r}")
    return float(m.group(1))
