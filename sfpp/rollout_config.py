"""`RolloutConfig`: how a student rolls out, defined once and carried from training to inference.

A rollout is decided by: the chunk size (latent frames denoised together), the nominal few-step
timestep list and the shift that warps it, the rolling KV cache (window, sink frames, RoPE
position policy) and the timestep of the cache refresh pass (context noise). Every default is
written here, once, on the fields of `RolloutConfig` (they are Self-Forcing's Wan values).

Where the values come from, in this order (`resolve_rollout`):

1. an explicit CLI flag / keyword (``--window 9``);
2. the student's own config, embedded in every checkpoint sfpp exports (what it was trained with);
3. the model preset's `RolloutConfig` (``sfpp.presets``).

A flag that contradicts what the student was trained with is obeyed, with a one-line warning
naming both values. The result records where each value came from (``sources``).

RoPE position policies (``rope``):

* ``absolute``: keys are cached rotated at their absolute frame index (Self-Forcing / the paper).
  The RoPE table (1024 frames for Wan) caps the length: a longer video is refused up front.
* ``relative``: keys are cached un-rotated and the window is re-rotated at positions 0..n-1 at
  every pass; no length limit. Without sinks the attention scores equal ``absolute``'s (RoPE
  scores depend only on position differences); with sinks the sink frames sit right before the
  recent frames instead of at their true distance.
* ``auto`` (default): ``absolute`` when the whole video fits the RoPE table, else ``relative``.
  Below the table it is exactly ``absolute``; it never caps. With sinks, past the table the sink
  frames are placed as under ``relative`` (a note says so).

This module is pure Python (no torch import), so the CLI can show defaults without loading torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from sfpp.errors import SfppError

RopePolicy = Literal["absolute", "relative"]
ROPE_CHOICES = ("auto", "absolute", "relative")
NUM_TRAIN_TIMESTEPS = 1000.0
MAX_STEPS = 1000  # one step per training timestep at most


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """Rolling KV cache policy (what `sfpp.kv_cache.RollingKVCache` implements).

    window: latent frames visible to a chunk, itself included.
    sink: first frames of the video kept permanently (0 = no sink, the paper's choice).
    rope: resolved position policy, ``absolute`` or ``relative`` (see the module docstring).
    """

    window: int
    sink: int = 0
    rope: RopePolicy = "absolute"

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window <= 0:
            raise SfppError(f"--window must be a positive number of latent frames, got {self.window}")
        if not isinstance(self.sink, int) or self.sink < 0:
            raise SfppError(f"--sink must be >= 0, got {self.sink}")
        if self.sink >= self.window:
            raise SfppError(f"--sink ({self.sink}) must be smaller than --window ({self.window})")
        if self.rope not in ("absolute", "relative"):
            raise SfppError(f"--rope must be 'absolute' or 'relative', got {self.rope!r}")


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """How a causal student generates: chunking, few-step schedule, KV cache, context noise.

    chunk_frames: latent frames per autoregressive chunk.
    timesteps: nominal few-step list on the 0..1000 scale, warped with `shift` before use
        (`shifted_timesteps`), e.g. [1000, 750, 500, 250] -> [1000, 937.5, 833.3, 625].
    shift: Wan's timestep shift, shift * s / (1 + (shift - 1) * s).
    window: rolling KV window in latent frames (the teacher horizon K; 21 = 5 s for Wan).
    sink: attention-sink frames kept for the whole video.
    rope: ``auto``, ``absolute`` or ``relative`` (module docstring).
    context_noise: timestep of the cache refresh pass (0 = the cache holds the clean chunk).
    """

    chunk_frames: int = 3
    timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    shift: float = 5.0
    window: int = 21
    sink: int = CacheConfig.sink
    rope: Literal["auto", "absolute", "relative"] = "auto"
    context_noise: float = 0.0

    def __post_init__(self) -> None:
        ints = {"chunk_frames": self.chunk_frames, "window": self.window, "sink": self.sink}
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise SfppError(f"{_flag(name)} must be a whole number, got {v!r}")
        if self.chunk_frames <= 0:
            raise SfppError(f"--chunk-frames must be positive, got {self.chunk_frames}")
        ts = tuple(self.timesteps)
        if not ts or len(ts) > MAX_STEPS:
            raise SfppError(f"--timesteps must list 1 to {MAX_STEPS} timesteps, e.g. 1000,750,500,250")
        for t in ts:
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or not 0 < t <= 1000:
                raise SfppError(f"--timesteps must lie in (0, 1000], got {t!r}")
        if any(b >= a for a, b in zip(ts, ts[1:])):
            raise SfppError(f"--timesteps must decrease, got {','.join(f'{t:g}' for t in ts)}")
        object.__setattr__(self, "timesteps", tuple(float(t) for t in ts))
        if not isinstance(self.shift, (int, float)) or not math.isfinite(self.shift) or self.shift <= 0:
            raise SfppError(f"--shift must be a positive number, got {self.shift!r}")
        object.__setattr__(self, "shift", float(self.shift))
        if self.rope not in ROPE_CHOICES:
            raise SfppError(f"--rope must be one of {', '.join(ROPE_CHOICES)}, got {self.rope!r}")
        cn = self.context_noise
        if not isinstance(cn, (int, float)) or isinstance(cn, bool) or not math.isfinite(cn) or not 0 <= cn < 1000:
            raise SfppError(f"--context-noise must be a timestep in [0, 1000), got {cn!r}")
        object.__setattr__(self, "context_noise", float(cn))
        CacheConfig(window=self.window, sink=self.sink)  # validates window and sink
        if self.chunk_frames > self.window - self.sink:
            raise SfppError(f"--window {self.window} with --sink {self.sink} leaves no room for a chunk of "
                            f"{self.chunk_frames} latent frames; raise --window or lower --chunk-frames")

    @property
    def shifted_timesteps(self) -> tuple[float, ...]:
        """The few-step list actually used: `timesteps` warped with `shift` (float32 values)."""
        from sfpp.schedule import few_step_timesteps

        return tuple(float(t) for t in few_step_timesteps(self.timesteps, self.shift).tolist())

    def resolve_rope(self, latent_frames: int, rope_max: int) -> RopePolicy:
        """The concrete policy for a rollout of `latent_frames` with a RoPE table of `rope_max` frames."""
        if self.rope == "auto":
            return "absolute" if latent_frames <= rope_max else "relative"
        return self.rope  # type: ignore[return-value]

    def cache(self, rope: RopePolicy) -> CacheConfig:
        return CacheConfig(window=self.window, sink=self.sink, rope=rope)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["timesteps"] = list(self.timesteps)
        return d


FIELDS = tuple(f.name for f in dataclasses.fields(RolloutConfig))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def nominal_steps(steps: int) -> tuple[float, ...]:
    """An evenly spaced nominal list for `steps` steps: 4 -> (1000, 750, 500, 250)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise SfppError(f"--steps must be a whole number from 1 to {MAX_STEPS}, got {steps!r}")
    return tuple(NUM_TRAIN_TIMESTEPS * (1 - i / steps) for i in range(steps))


def parse_timesteps(text: str) -> tuple[float, ...]:
    """'1000,750,500' -> (1000.0, 750.0, 500.0) (a nominal list; validated by `RolloutConfig`)."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise SfppError(f"--timesteps must be a comma-separated list of numbers like 1000,750,500,250, got {text!r}") from None
    if not values:
        raise SfppError("--timesteps must list at least one timestep, e.g. 1000,750,500,250")
    return values


def student_rollout(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The rollout settings a student checkpoint says it was trained with (possibly partial).

    sfpp exports carry a ``rollout`` table (`RolloutConfig.to_dict`). Exports written before it
    existed carried ``window``, ``chunk_frames`` and ``rope`` at the top level and the nominal
    list, shift and context noise in ``distill_config.rollout``; those are read too. In those old
    exports ``rope = "absolute"`` was the default of the time, and training never ran past the RoPE
    table, so it is read as ``auto`` (identical below the table).
    """
    if not isinstance(meta, dict):
        return {}
    if isinstance(meta.get("rollout"), dict):
        return {k: v for k, v in meta["rollout"].items() if k in FIELDS and v is not None}
    out: dict[str, Any] = {}
    old = (meta.get("distill_config") or {}).get("rollout") or {}
    for key in ("timesteps", "shift", "context_noise"):
        if old.get(key) is not None:
            out[key] = old[key]
    for key in ("window", "chunk_frames"):
        if meta.get(key) is not None:
            out[key] = meta[key]
    if meta.get("rope") is not None:
        out["rope"] = "auto" if meta["rope"] == "absolute" else meta["rope"]
    if old.get("sink") is not None:
        out["sink"] = old["sink"]
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(f"{float(x):g}" for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class ResolvedRollout:
    config: RolloutConfig
    sources: dict[str, str]  # field -> "flag" | "checkpoint" | "preset"
    warnings: tuple[str, ...]


def resolve_rollout(preset: RolloutConfig, student: dict[str, Any] | None = None,
                    flags: dict[str, Any] | None = None, *, steps: int | None = None,
                    student_name: str = "the student") -> ResolvedRollout:
    """Explicit flags > the student's own config > the preset, field by field.

    ``steps`` (``--steps N``) replaces the nominal list with `nominal_steps(N)`, unless the list
    that applies already has N steps (then that list is kept). A flag whose value differs from what
    the student was trained with gives a warning naming both values.
    """
    student = dict(student or {})
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = set(flags) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown rollout fields {sorted(unknown)}")
    values = preset.to_dict()
    sources = {k: "preset" for k in values}
    for k, v in student.items():
        if k in values:
            values[k], sources[k] = v, "checkpoint"
    if steps is not None and "timesteps" not in flags:
        nominal_steps(steps)  # validates
        if steps != len(values["timesteps"]):
            flags["timesteps"] = nominal_steps(steps)
    warnings = []
    for k, v in flags.items():
        if k in student and not _same(student[k], v):
            warnings.append(f"{_flag(k)} {_show(v)} overrides the {k.replace('_', ' ')} {student_name} was trained "
                            f"with ({_show(student[k])})")
        values[k], sources[k] = v, "flag"
    if isinstance(values["timesteps"], list):
        values["timesteps"] = tuple(values["timesteps"])
    try:
        cfg = RolloutConfig(**values)
    except TypeError as e:  # a malformed checkpoint table
        raise SfppError(f"{student_name}'s rollout settings are malformed ({e}); pass the settings as flags") from None
    return ResolvedRollout(cfg, sources, tuple(warnings))
