"""Options shared by several commands, defined once so help texts agree.

Defaults shown here are read from the presets and `RolloutConfig` (never restated), and help texts
go through rich markup, so literal square brackets are escaped.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sfpp.presets import PRESETS, size_multiples
from sfpp.rollout_config import ROPE_CHOICES
from sfpp.spec import DEFAULT_MODEL

_MODELS = ", ".join(PRESETS)
_MULTIPLES = ", ".join(f"{n} {size_multiples(p)[0]}" for n, p in PRESETS.items())  # what sfpp.spec checks
_SIZES = ", ".join(f"{n} {p.width}x{p.height}" for n, p in PRESETS.items())
_WINDOWS = ", ".join(f"{n} {p.rollout.window}" for n, p in PRESETS.items() if n in (DEFAULT_MODEL, "debug")) + \
    f", Wan {PRESETS['wan2.1-t2v-1.3b'].rollout.window}"
_FROM = "default: the student's own setting, else the model's"

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help=f"Model preset: {_MODELS} (default: the one the --checkpoint was trained for, else $SFPP_MODEL, else {DEFAULT_MODEL}, the bundled toy model).",
                 show_default=False),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Local diffusers-layout weights folder (or set SFPP_WEIGHTS).", show_default=False),
]
CheckpointOpt = Annotated[
    Optional[str],
    typer.Option("--checkpoint", help="Student to load: sfpp .safetensors (its rollout settings are used unless a flag "
                 "overrides them), or a Self-Forcing/CausVid/LongLive .pt (converted on load; FILE.pt#generator_ema "
                 "picks an entry).", show_default=False),
]
LoraOpt = Annotated[
    Optional[str],
    typer.Option("--lora", help="LoRA adapter merged into the student (sfpp *_lora.safetensors, or LongLive "
                 "lora.pt).", show_default=False),
]
SecondsOpt = Annotated[Optional[float], typer.Option("--seconds", "-s", help="Video length in seconds (default: 5).",
                                                     show_default=False)]
FramesOpt = Annotated[Optional[int], typer.Option("--frames", help="Video length in frames (instead of --seconds).", show_default=False)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same video.")]
FpsOpt = Annotated[Optional[int], typer.Option("--fps", help="Frames per second (default: the model's, 16).", show_default=False)]
HeightOpt = Annotated[Optional[int], typer.Option(
    "--height", help=f"Height in pixels; a multiple of {_MULTIPLES} (default: {_SIZES}).", show_default=False)]
WidthOpt = Annotated[Optional[int], typer.Option(
    "--width", help=f"Width in pixels; a multiple of {_MULTIPLES}.", show_default=False)]
StepsOpt = Annotated[Optional[int], typer.Option(
    "--steps", help=f"Denoising steps per chunk, evenly spaced ({_FROM}: 4).", show_default=False)]
TimestepsOpt = Annotated[Optional[str], typer.Option(
    "--timesteps", help=f"Nominal few-step list, e.g. 1000,750,500,250, warped by --shift ({_FROM}).", show_default=False)]
ShiftOpt = Annotated[Optional[float], typer.Option("--shift", help=f"Timestep shift ({_FROM}: 5).", show_default=False)]
ChunkOpt = Annotated[Optional[int], typer.Option(
    "--chunk-frames", help=f"Latent frames per autoregressive chunk ({_FROM}: 3).", show_default=False)]
WindowOpt = Annotated[Optional[int], typer.Option(
    "--window", help=f"Rolling KV window in latent frames ({_FROM}: {_WINDOWS}).", show_default=False)]
SinkOpt = Annotated[Optional[int], typer.Option(
    "--sink", help=f"Latent frames kept for the whole video as attention sink ({_FROM}: 0).", show_default=False)]
RopeOpt = Annotated[Optional[str], typer.Option(
    "--rope", help=f"Position policy: {' | '.join(ROPE_CHOICES)}. auto = absolute while the video fits the RoPE table "
    f"(Wan: 1024 latent frames, about 255 s), relative past it; absolute refuses longer videos ({_FROM}: auto).",
    show_default=False)]
ContextNoiseOpt = Annotated[Optional[float], typer.Option(
    "--context-noise", help=f"Timestep of the cache refresh pass, 0 = clean context ({_FROM}: 0).", show_default=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present).", show_default=False)]
DtypeOpt = Annotated[
    Optional[str], typer.Option("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU).", show_default=False)
]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", help="torch CPU threads (default: 1 for the toy and debug models, which run fastest on one thread; "
    "torch's default for Wan). Recorded in the sidecar.", show_default=False)]
CompileOpt = Annotated[bool, typer.Option(
    "--compile/--no-compile", help="torch.compile the transformer block; the compile warm-up runs first and is "
    "reported on its own.")]
FusedQkvOpt = Annotated[Optional[bool], typer.Option(
    "--fused-qkv/--no-fused-qkv", help="Fuse the Q/K/V projections into one linear (default: on on CPU, where it is "
    "bit-exact; off on GPU).", show_default=False)]
Fp8Opt = Annotated[bool, typer.Option("--fp8", help="FP8 linear layers via torchao (GPU with compute capability 8.9+).")]
OverlapOpt = Annotated[Optional[bool], typer.Option(
    "--overlap/--no-overlap", help="Decode and write on a worker thread while the next chunk is denoised "
    "(default: on GPU).", show_default=False)]


def rollout_overrides(*, steps, timesteps, shift, chunk_frames, window, sink, rope, context_noise) -> dict:
    """VideoSpec keyword arguments of the rollout flags (None = not given)."""
    from sfpp.rollout_config import parse_timesteps

    return dict(steps=steps, timesteps=None if timesteps is None else parse_timesteps(timesteps), shift=shift,
                chunk_frames=chunk_frames, window=window, sink=sink, rope=rope, context_noise=context_noise)
