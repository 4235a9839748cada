"""Options shared by several commands, defined once so help texts agree."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sfpp.presets import PRESETS

_MODELS = ", ".join(PRESETS)

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help=f"Model preset: {_MODELS} (default: $SFPP_MODEL, else the bundled toy model).",
                 show_default=False),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Local diffusers-layout weights folder (or set SFPP_WEIGHTS).", show_default=False),
]
CheckpointOpt = Annotated[
    Optional[str],
    typer.Option("--checkpoint", help="Student to load: sfpp .safetensors, or a Self-Forcing/CausVid/LongLive .pt "
                 "(converted on load; FILE.pt#generator_ema picks an entry).", show_default=False),
]
LoraOpt = Annotated[
    Optional[str],
    typer.Option("--lora", help="LoRA adapter merged into the student (sfpp *_lora.safetensors, or LongLive "
                 "lora.pt).", show_default=False),
]
SecondsOpt = Annotated[Optional[float], typer.Option("--seconds", "-s", help="Video length in seconds.", show_default=False)]
FramesOpt = Annotated[Optional[int], typer.Option("--frames", help="Video length in frames (instead of --seconds).", show_default=False)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same video.")]
FpsOpt = Annotated[Optional[int], typer.Option("--fps", help="Frames per second (default: the model's).", show_default=False)]
HeightOpt = Annotated[Optional[int], typer.Option("--height", help="Height in pixels, multiple of 16.", show_default=False)]
WidthOpt = Annotated[Optional[int], typer.Option("--width", help="Width in pixels, multiple of 16.", show_default=False)]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Denoising steps per chunk (default 4).", show_default=False)]
WindowOpt = Annotated[
    Optional[int], typer.Option("--window", help="Rolling KV window in latent frames (default: the model's).", show_default=False)
]
SinkOpt = Annotated[int, typer.Option("--sink", help="Latent frames kept permanently as attention sink.")]
RopeOpt = Annotated[str, typer.Option("--rope", help="Position policy: absolute (paper) or relative (unbounded).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present).", show_default=False)]
DtypeOpt = Annotated[
    Optional[str], typer.Option("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU).", show_default=False)
]
