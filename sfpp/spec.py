"""Shared set-up for `generate` and `rollout`: resolve a request into numbers, load the model.

`VideoSpec` is the user-facing request (what the CLI flags map to); `resolve_spec` turns it into
a `ResolvedSpec` with every number decided (frame counts, latent grid, schedule, cache policy)
without loading anything, so bad input fails before any work. `load_model` then builds the
student, VAE and text encoder once.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sfpp.causal import CausalWan
from sfpp.checkpoints import checkpoint_file, file_sha256, load_into, read_checkpoint
from sfpp.errors import SfppError
from sfpp.kv_cache import CacheConfig
from sfpp.presets import ModelPreset, get_preset, load_components, resolve_weights_dir
from sfpp.schedule import few_step_timesteps, nominal_steps

VAE_TEMPORAL = 4
VAE_SPATIAL = 8
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, kw_only=True)
class VideoSpec:
    """A generation request. ``None`` means "the preset's default"."""

    model: str | None = None  # None: $SFPP_MODEL, else the bundled `toy` model
    seconds: float | None = None
    frames: int | None = None
    seed: int = 0
    fps: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    window: int | None = None
    sink: int = 0
    rope: str = "absolute"
    blend_chunks: int = 0  # prompt switches: blend text embeddings over this many chunks
    device: str | None = None
    dtype: str | None = None
    weights: str | None = None
    checkpoint: str | None = None  # FILE or FILE#ENTRY (foreign .pt files are converted on load)
    lora: str | None = None  # LoRA adapter merged into the student after the checkpoint


@dataclass(frozen=True)
class ResolvedSpec:
    """Every number of a generation decided. Saved in sidecars and checkpoints."""

    model: str
    seed: int
    fps: int
    num_frames: int  # pixel frames written
    latent_frames: int  # latent frames generated (a whole number of chunks)
    height: int
    width: int
    latent_height: int
    latent_width: int
    chunk_frames: int
    timesteps: tuple[float, ...]  # shifted few-step list
    nominal_timesteps: tuple[float, ...]
    shift: float
    cache: CacheConfig
    device: str
    dtype: str
    text_len: int
    weights: str | None
    checkpoint: str | None
    lora: str | None = None
    blend_chunks: int = 0  # prompt switches: embedding blend over this many chunks

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cache"] = asdict(self.cache)
        d["timesteps"] = list(self.timesteps)
        d["nominal_timesteps"] = list(self.nominal_timesteps)
        d["seconds"] = self.seconds
        return d


DEFAULT_MODEL = "toy"


def default_model(name: str | None) -> str:
    """The model to use: the one asked for, else ``$SFPP_MODEL``, else the bundled `toy` model."""
    return name or os.environ.get("SFPP_MODEL") or DEFAULT_MODEL


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _transformer_config(preset: ModelPreset, weights: str | None) -> dict[str, Any]:
    """The transformer config without loading weights (for up-front checks)."""
    if preset.source == "build":
        return dict(preset.arch)
    root = resolve_weights_dir(weights)
    from sfpp.presets import check_diffusers_folder

    check_diffusers_folder(root)
    try:
        return json.loads((root / "transformer" / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise SfppError(f"{root / 'transformer' / 'config.json'} is not valid JSON; re-copy the weights folder") from None


def resolve_spec(spec: VideoSpec) -> ResolvedSpec:
    """Validate a request and decide every number; loads no weights."""
    preset = get_preset(default_model(spec.model))
    if spec.seconds is not None and spec.frames is not None:
        raise SfppError("give either --seconds or --frames, not both")
    fps = spec.fps if spec.fps is not None else preset.fps
    if fps <= 0:
        raise SfppError(f"--fps must be positive, got {fps}")
    if spec.frames is not None:
        num_frames = int(spec.frames)
        if num_frames <= 0:
            raise SfppError(f"--frames must be a positive number, got {spec.frames}")
    else:
        seconds = spec.seconds if spec.seconds is not None else 5.0
        if not (seconds > 0) or math.isinf(seconds):
            raise SfppError(f"--seconds must be a positive number, got {spec.seconds}")
        num_frames = max(1, round(seconds * fps))
    height = spec.height if spec.height is not None else preset.height
    width = spec.width if spec.width is not None else preset.width
    codec = preset.codec
    mult = codec.spatial_factor * 2
    for name, v in (("--height", height), ("--width", width)):
        if v <= 0 or v % mult:
            raise SfppError(f"{name} must be a positive multiple of {mult} (codec x{codec.spatial_factor}, patch x2), got {v}")
    if spec.blend_chunks < 0:
        raise SfppError(f"--blend-chunks must be >= 0, got {spec.blend_chunks}")
    steps = spec.steps if spec.steps is not None else len(preset.timesteps)
    if steps <= 0:
        raise SfppError(f"--steps must be positive, got {steps}")
    nominal = tuple(preset.timesteps) if steps == len(preset.timesteps) else tuple(nominal_steps(steps))
    timesteps = tuple(float(t) for t in few_step_timesteps(nominal, preset.shift).tolist())
    window = spec.window if spec.window is not None else preset.window
    cache = CacheConfig(window=window, sink=spec.sink, rope=spec.rope)  # validates
    chunk = preset.chunk_frames
    if chunk > window - spec.sink:
        raise SfppError(f"--window {window} with --sink {spec.sink} leaves no room for a chunk of {chunk} frames")
    latent_frames = math.ceil(codec.latent_frames(num_frames) / chunk) * chunk
    device = spec.device or _default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SfppError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    dtype = spec.dtype or ("bfloat16" if device.startswith("cuda") and preset.source != "build" else "float32")
    if dtype not in DTYPES:
        raise SfppError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")

    tcfg = _transformer_config(preset, spec.weights)  # also checks the weights folder up front
    rope_max = int(tcfg.get("rope_max_seq_len", 1024))
    if cache.rope == "absolute" and latent_frames > rope_max:
        max_latent = (rope_max // chunk) * chunk
        max_seconds = codec.pixel_frames(max_latent) / fps
        raise SfppError(
            f"{num_frames / fps:.1f} s needs {latent_frames} latent frames but absolute RoPE has {rope_max} positions "
            f"(at most {max_seconds:.1f} s at {fps} fps); shorten the video or use --rope relative"
        )
    if spec.checkpoint is not None and not checkpoint_file(spec.checkpoint).is_file():
        raise SfppError(f"checkpoint {spec.checkpoint} does not exist")
    if spec.lora is not None and not checkpoint_file(spec.lora).is_file():
        raise SfppError(f"LoRA file {spec.lora} does not exist")
    return ResolvedSpec(
        model=preset.name,
        seed=int(spec.seed),
        fps=int(fps),
        num_frames=num_frames,
        latent_frames=latent_frames,
        height=height,
        width=width,
        latent_height=height // codec.spatial_factor,
        latent_width=width // codec.spatial_factor,
        chunk_frames=chunk,
        timesteps=timesteps,
        nominal_timesteps=tuple(float(t) for t in nominal),
        shift=preset.shift,
        cache=cache,
        blend_chunks=int(spec.blend_chunks),
        device=device,
        dtype=dtype,
        text_len=preset.text_len,
        weights=str(resolve_weights_dir(spec.weights)) if preset.source != "build" else None,
        checkpoint=str(spec.checkpoint) if spec.checkpoint else None,
        lora=str(spec.lora) if spec.lora else None,
    )


@dataclass
class LoadedModel:
    """The modules a rollout needs, on their device."""

    student: CausalWan
    codec: Any  # pixels <-> latents (`sfpp.codec`)
    text_encoder: Any
    tokenizer: Any
    source: str
    checkpoint_sha256: str | None = None
    checkpoint_config: dict[str, Any] = field(default_factory=dict)


def load_model(rs: ResolvedSpec) -> LoadedModel:
    """Build/load the preset's modules, apply a student checkpoint, move to the device."""
    preset = get_preset(rs.model)
    dtype = DTYPES[rs.dtype]
    comps = load_components(preset, weights=rs.weights, dtype=dtype)
    sha, ckpt_cfg = None, {}
    if rs.checkpoint:
        state, ckpt_cfg = read_checkpoint(rs.checkpoint)
        load_into(comps.transformer, state, source=rs.checkpoint)
        sha = file_sha256(checkpoint_file(rs.checkpoint))
    if rs.lora:
        from sfpp.convert import read_lora
        from sfpp.lora import merge_lora

        merged = merge_lora(comps.transformer.state_dict(), read_lora(rs.lora))
        load_into(comps.transformer, merged, source=rs.lora)
    comps.to(rs.device, dtype)
    if rs.dtype != "float32":
        comps.text_encoder.to(dtype)
    student = CausalWan(comps.transformer).eval()
    return LoadedModel(student, comps.codec, comps.text_encoder, comps.tokenizer, comps.source, sha, ckpt_cfg)


def check_output_path(path: Path, *, suffix: str | None = None) -> Path:
    """Fail early, with the fix named, if an output path cannot be written."""
    path = Path(path).expanduser()
    if suffix and path.suffix.lower() != suffix:
        raise SfppError(f"--out must end in {suffix}, got {path.name}")
    if path.exists() and path.is_dir():
        raise SfppError(f"--out {path} is a folder; give a file name ending in {suffix or 'a suffix'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SfppError(f"cannot create output folder {parent} ({e.strerror}); choose another --out") from None
    probe = parent / f".sfpp-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SfppError(f"output folder {parent} is not writable ({e.strerror}); choose another --out") from None
    return path
