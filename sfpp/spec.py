"""Shared set-up for `generate` and `rollout`: resolve a request into numbers, load the model.

`VideoSpec` is the user-facing request (what the CLI flags map to); `resolve_spec` turns it into
a `ResolvedSpec` with every number decided (frame counts, latent grid, schedule, cache policy)
without loading anything, so bad input fails before any work. `load_model` then builds the
student, VAE and text encoder once.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sfpp.errors import SfppError, warn
from sfpp.fastpath import FastPaths, resolve_fast_paths
from sfpp.presets import ModelPreset, get_preset, load_components, resolve_weights_dir, size_multiples, transformer_config
from sfpp.rollout_config import CacheConfig, RolloutConfig, resolve_rollout, student_rollout

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


@dataclass(frozen=True, kw_only=True)
class VideoSpec:
    """A generation request. ``None`` means "decided by the checkpoint, else the preset"."""

    model: str | None = None  # None: the checkpoint's own model, else $SFPP_MODEL, else the bundled `toy` model
    seconds: float | None = None
    frames: int | None = None
    seed: int = 0
    fps: int | None = None
    height: int | None = None
    width: int | None = None
    # Rollout settings (`sfpp.rollout_config.RolloutConfig`); None = the student's own, else the preset's.
    steps: int | None = None  # evenly spaced nominal list of this many steps (unless the list already has them)
    timesteps: tuple[float, ...] | None = None  # nominal few-step list, e.g. (1000, 750, 500, 250)
    shift: float | None = None
    chunk_frames: int | None = None
    window: int | None = None
    sink: int | None = None
    rope: str | None = None  # auto | absolute | relative
    context_noise: float | None = None
    blend_chunks: int = 0  # prompt switches: blend text embeddings over this many chunks
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None  # torch CPU threads (None: the preset's choice, else torch's default)
    weights: str | None = None
    checkpoint: str | None = None  # FILE or FILE#ENTRY (foreign .pt files are converted on load)
    lora: str | None = None  # LoRA adapter merged into the student after the checkpoint
    # Fast paths (`sfpp.fastpath`); None = the device's default.
    compile: bool = False
    compile_backend: str = "inductor"
    fused_qkv: bool | None = None
    fp8: bool = False
    overlap: bool | None = None


@dataclass(frozen=True)
class ResolvedSpec:
    """Every number of a generation decided. Saved in sidecars.

    ``rollout`` is the resolved `RolloutConfig` and ``sources`` says where each of its values came
    from (``flag``, ``checkpoint`` or ``preset``); ``rope`` is the concrete position policy (``auto``
    resolved for this length), ``timesteps`` the shifted few-step list and ``cache`` the KV cache policy.
    """

    model: str
    seed: int
    fps: int
    num_frames: int  # pixel frames written
    latent_frames: int  # latent frames generated (a whole number of chunks)
    height: int
    width: int
    latent_height: int
    latent_width: int
    rollout: RolloutConfig
    rope: str
    timesteps: tuple[float, ...]  # shifted few-step list
    cache: CacheConfig
    device: str
    dtype: str
    text_len: int
    weights: str | None
    checkpoint: str | None
    lora: str | None = None
    blend_chunks: int = 0  # prompt switches: embedding blend over this many chunks
    threads: int | None = None
    fast: FastPaths = field(default_factory=FastPaths)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def chunk_frames(self) -> int:
        return self.rollout.chunk_frames

    @property
    def nominal_timesteps(self) -> tuple[float, ...]:
        return self.rollout.timesteps

    @property
    def shift(self) -> float:
        return self.rollout.shift

    @property
    def context_noise(self) -> float:
        return self.rollout.context_noise

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rollout"] = self.rollout.to_dict()
        d["rollout_sources"] = d.pop("sources")
        d["cache"] = asdict(self.cache)
        d["timesteps"] = list(self.timesteps)
        d["fast_paths"] = d.pop("fast")
        d["warnings"] = list(self.warnings)
        d["seconds"] = self.seconds
        return d


DEFAULT_MODEL = "toy-v4"  # the bundled ToyWorld Self-Forcing++ student
MAX_SECONDS = 24 * 3600  # a day of video: more is a typo (1e308) rather than a plan
MAX_FPS = 240
MAX_SIDE = 8192  # pixels per side


def check_device(device: str) -> str:
    """A device string torch understands and this machine has, or one clear error."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", device.strip()):
        raise SfppError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")
    device = device.strip()
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SfppError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise SfppError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif kind == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise SfppError("--device mps was asked for but MPS is not available here; use --device cpu")
    return device


def default_model(name: str | None) -> str:
    """The model to use: the one asked for, else ``$SFPP_MODEL``, else `DEFAULT_MODEL` (bundled)."""
    return name or os.environ.get("SFPP_MODEL") or DEFAULT_MODEL


def model_for(name: str | None, checkpoint: str | None) -> str:
    """The model a request runs: ``--model``, else the model an sfpp checkpoint says it was trained for,
    else ``$SFPP_MODEL``, else `DEFAULT_MODEL`. A ``--model`` that contradicts the checkpoint is one clear error
    (the weights would not fit), not a list of shape mismatches. Reads only the safetensors header."""
    from sfpp.presets import PRESETS

    declared = None
    if checkpoint is not None:
        from sfpp.checkpoints import checkpoint_file, read_checkpoint_config

        file = checkpoint_file(checkpoint)
        if file.is_file():
            m = read_checkpoint_config(checkpoint).get("model")
            declared = m if isinstance(m, str) and m in PRESETS else None
        if name is not None and declared is not None and name != declared:
            raise SfppError(f"checkpoint {file.name} was trained for --model {declared}, not {name}; "
                            f"drop --model or pass --model {declared}")
    return name or declared or default_model(None)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def student_config(checkpoint: str | None, preset: ModelPreset) -> tuple[dict[str, Any], str | None]:
    """The embedded config of the student that will run, and how to name it in messages.

    ``--checkpoint`` if given (sfpp students carry their config; foreign files carry none), else a
    preset's bundled student. Reads only the safetensors header, never the weights.
    """
    if checkpoint is not None:
        from sfpp.checkpoints import checkpoint_file, read_checkpoint_config

        file = checkpoint_file(checkpoint)
        if not file.is_file():
            raise SfppError(f"checkpoint {checkpoint} does not exist")
        return read_checkpoint_config(checkpoint), f"checkpoint {file.name}"
    if preset.bundled_student is not None and preset.bundled_student.is_file():
        from sfpp.checkpoints import read_checkpoint_config

        return read_checkpoint_config(preset.bundled_student), f"the bundled {preset.name} student"
    return {}, None


def _rollout_flags(spec: VideoSpec) -> dict[str, Any]:
    return {"chunk_frames": spec.chunk_frames, "timesteps": None if spec.timesteps is None else tuple(spec.timesteps),
            "shift": spec.shift, "window": spec.window, "sink": spec.sink, "rope": spec.rope,
            "context_noise": spec.context_noise}


def resolve_spec(spec: VideoSpec, *, need_weights: bool = True) -> ResolvedSpec:
    """Validate a request and decide every number; loads no weights.

    ``need_weights=False`` (benchmarks of random-initialised models): a diffusers preset's
    transformer config is the released checkpoint's, and no weights folder is required.
    """
    preset = get_preset(model_for(spec.model, spec.checkpoint))
    if spec.seconds is not None and spec.frames is not None:
        raise SfppError("give either --seconds or --frames, not both")
    fps = spec.fps if spec.fps is not None else preset.fps
    if isinstance(fps, bool) or not isinstance(fps, int) or not 0 < fps <= MAX_FPS:
        raise SfppError(f"--fps must be a whole number between 1 and {MAX_FPS}, got {fps}")
    if spec.frames is not None:
        num_frames = spec.frames
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames <= 0:
            raise SfppError(f"--frames must be a positive number, got {spec.frames}")
    else:
        seconds = spec.seconds if spec.seconds is not None else 5.0
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (seconds > 0) \
                or not math.isfinite(seconds):
            raise SfppError(f"--seconds must be a positive number, got {spec.seconds}")
        if seconds > MAX_SECONDS:
            raise SfppError(f"--seconds {seconds:g} is more than {MAX_SECONDS // 3600} hours of video; ask for less "
                            "(or generate it in parts)")
        num_frames = max(1, round(seconds * fps))
    if num_frames > MAX_SECONDS * fps:
        raise SfppError(f"--frames {num_frames} at {fps} fps is more than {MAX_SECONDS // 3600} hours of video; "
                        "ask for less (or generate it in parts)")
    codec = preset.codec
    if need_weights and preset.needs_checkpoint and spec.checkpoint is None:
        raise SfppError(f"--model {preset.name} ships no trained weights; pass --checkpoint with a {preset.name} "
                        "student (sfpp distill --config examples/toyworld_v2/...) or use the bundled --model toy-v4")
    if need_weights:
        tcfg = transformer_config(preset, spec.weights, need_weights=preset.source != "build")
    else:
        tcfg = transformer_config(preset)
    height = spec.height if spec.height is not None else preset.height
    width = spec.width if spec.width is not None else preset.width
    for name, v, mult in zip(("--height", "--width"), (height, width), size_multiples(preset, tcfg)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % mult or v > MAX_SIDE:
            raise SfppError(f"{name} must be a positive multiple of {mult} for --model {preset.name} "
                            f"(codec x{codec.spatial_factor}, patch x{mult // codec.spatial_factor}), at most "
                            f"{MAX_SIDE}, got {v}")
    if spec.blend_chunks < 0:
        raise SfppError(f"--blend-chunks must be >= 0, got {spec.blend_chunks}")
    meta, student_name = student_config(spec.checkpoint, preset)
    rr = resolve_rollout(preset.rollout, student_rollout(meta), _rollout_flags(spec), steps=spec.steps,
                         student_name=student_name or "the student")
    ro = rr.config
    warnings = list(rr.warnings)
    chunk = ro.chunk_frames
    latent_frames = math.ceil(codec.latent_frames(num_frames) / chunk) * chunk
    rope_max = int(tcfg.get("rope_max_seq_len", 1024))
    if ro.window > rope_max:  # even relative positions (0 .. window - 1) must lie in the RoPE table
        raise SfppError(f"--window {ro.window} is longer than the model's RoPE table ({rope_max} latent frames); "
                        f"use a window of at most {rope_max}")
    rope = ro.resolve_rope(latent_frames, rope_max)
    if rope == "absolute" and latent_frames > rope_max:
        max_latent = (rope_max // chunk) * chunk
        max_seconds = codec.pixel_frames(max_latent) / fps
        raise SfppError(
            f"{num_frames / fps:.1f} s needs {latent_frames} latent frames but absolute RoPE has {rope_max} positions "
            f"(at most {max_seconds:.1f} s at {fps} fps); shorten the video or use --rope auto or relative"
        )
    if ro.rope == "auto" and rope == "relative" and ro.sink > 0:
        warnings.append(f"the video is longer than the RoPE table ({rope_max} latent frames), so --rope auto uses "
                        f"relative positions: the {ro.sink} sink frames sit right before the recent frames")
    cache = ro.cache(rope)
    device = check_device(spec.device or _default_device())
    dtype = spec.dtype or ("bfloat16" if device.startswith("cuda") and preset.source != "build" else "float32")
    if dtype not in DTYPE_NAMES:
        raise SfppError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    threads = spec.threads if spec.threads is not None else (preset.threads if device == "cpu" else None)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise SfppError(f"--threads must be a whole number from 1 to 1024, got {threads!r}")
    fast = resolve_fast_paths(FastPaths(compile=bool(spec.compile), compile_backend=spec.compile_backend,
                                        fused_qkv=spec.fused_qkv, fp8=bool(spec.fp8), overlap=spec.overlap), device)
    if spec.lora is not None:
        from sfpp.checkpoints import checkpoint_file

        if not checkpoint_file(spec.lora).is_file():
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
        rollout=ro,
        rope=rope,
        timesteps=ro.shifted_timesteps,
        cache=cache,
        blend_chunks=int(spec.blend_chunks),
        device=device,
        dtype=dtype,
        threads=threads,
        fast=fast,
        text_len=preset.text_len,
        weights=str(resolve_weights_dir(spec.weights)) if (preset.source != "build" and need_weights) else None,
        checkpoint=str(spec.checkpoint) if spec.checkpoint else None,
        lora=str(spec.lora) if spec.lora else None,
        sources=dict(rr.sources),
        warnings=tuple(warnings),
    )


def emit_warnings(rs: ResolvedSpec) -> None:
    """Show the resolution's warnings (one line each; the CLI prints them as ``warning: ...``)."""
    for w in rs.warnings:
        warn(w)


@dataclass
class LoadedModel:
    """The modules a rollout needs, on their device."""

    student: Any  # sfpp.causal.CausalWan
    codec: Any  # pixels <-> latents (`sfpp.codec`)
    text_encoder: Any
    tokenizer: Any
    source: str
    checkpoint_sha256: str | None = None
    checkpoint_config: dict[str, Any] = field(default_factory=dict)
    weights_sha256: dict[str, str] = field(default_factory=dict)  # role -> SHA-256 of every weight file read
    fast_paths: dict[str, Any] = field(default_factory=dict)  # what `apply_fast_paths` applied


def prompt_warnings(lm: LoadedModel, texts) -> list[str]:
    """Warnings for prompts the loaded model cannot read: a ToyWorld model (its tokenizer holds exactly
    ToyWorld's words) warns, once per distinct prompt, when a prompt names nothing the world can draw."""
    vocab = getattr(lm.tokenizer, "get_vocab", None)
    if vocab is None:
        return []
    from sfpp.toyworld.world import prompt_warning, toy_vocabulary

    words = set(vocab()) - {"<pad>", "</s>", "<unk>"}
    if words != set(toy_vocabulary()):
        return []
    return [w for t in dict.fromkeys(texts) if (w := prompt_warning(t))]


def emit_prompt_warnings(lm: LoadedModel, texts) -> None:
    """Show `prompt_warnings` (one line each)."""
    for w in prompt_warnings(lm, texts):
        warn(w)


def weight_files(rs: ResolvedSpec) -> dict[str, Path]:
    """Role -> every weight file a generation of `rs` reads (what `load_model` hashes), without loading.

    Presets built in code: their bundled files (none for ``debug``); diffusers presets: the weight
    files of the transformer, VAE and text encoder; then the student checkpoint and the LoRA file.
    """
    from sfpp.checkpoints import checkpoint_file
    from sfpp.presets import bundled_files, diffusers_weight_files

    preset = get_preset(rs.model)
    files = bundled_files(preset) if preset.source == "build" else diffusers_weight_files(Path(rs.weights))
    if rs.checkpoint:
        files["student"] = checkpoint_file(rs.checkpoint)
    if rs.lora:
        files["lora"] = checkpoint_file(rs.lora)
    return files


def weights_sha256(rs: ResolvedSpec) -> dict[str, str]:
    """SHA-256 of every file in `weight_files` (cached by path, size and mtime in ``$SFPP_HOME``)."""
    from sfpp.home import cached_sha256

    return {role: cached_sha256(p) for role, p in weight_files(rs).items()}


def load_model(rs: ResolvedSpec) -> LoadedModel:
    """Build/load the preset's modules, apply a student checkpoint and the fast paths, move to the device."""
    from sfpp.causal import CausalWan
    from sfpp.checkpoints import load_into, read_checkpoint
    from sfpp.fastpath import apply_fast_paths

    preset = get_preset(rs.model)
    dtype = torch_dtype(rs.dtype)
    comps = load_components(preset, weights=rs.weights, dtype=dtype)
    ckpt_cfg: dict[str, Any] = {}
    if rs.checkpoint:
        state, ckpt_cfg = read_checkpoint(rs.checkpoint)
        load_into(comps.transformer, state, source=rs.checkpoint)
    if rs.lora:
        from sfpp.convert import read_lora
        from sfpp.lora import merge_lora

        merged = merge_lora(comps.transformer.state_dict(), read_lora(rs.lora))
        load_into(comps.transformer, merged, source=rs.lora)
    comps.to(rs.device, dtype)
    if rs.dtype != "float32":
        comps.text_encoder.to(dtype)
    student = CausalWan(comps.transformer).eval()
    applied = apply_fast_paths(student, rs.fast)
    hashes = weights_sha256(rs)
    return LoadedModel(student, comps.codec, comps.text_encoder, comps.tokenizer, comps.source,
                       hashes.get("student"), ckpt_cfg, hashes, applied)


def check_output_path(path: Path, *, suffix: str | None = None) -> Path:
    """Fail early, with the fix named, if an output path cannot be written. Creates nothing.

    The folder is created when the output is written; here only its nearest existing ancestor is
    checked (a folder, writable).
    """
    if not str(path).strip() or str(path) == ".":
        raise SfppError(f"--out is empty; give a file name ending in {suffix or 'a suffix'}")
    path = Path(path).expanduser()
    if suffix and path.suffix.lower() != suffix:
        raise SfppError(f"--out must end in {suffix}, got {path.name}")
    if path.exists() and path.is_dir():
        raise SfppError(f"--out {path} is a folder; give a file name ending in {suffix or 'a suffix'}")
    anchor = path.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise SfppError(f"cannot create output folder {path.parent}: {anchor} is a file; choose another --out")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise SfppError(f"output folder {anchor} is not writable; choose another --out")
    if anchor == path.parent:  # an existing folder: a real write probe (os.access can be optimistic)
        probe = anchor / f".sfpp-write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise SfppError(f"output folder {anchor} is not writable ({e.strerror}); choose another --out") from None
    return path
