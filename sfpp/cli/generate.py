"""`sfpp generate PROMPT`: one video, streamed to an MP4 with a JSON sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sfpp.cli._common import console, user_errors
from sfpp.cli._options import (
    CheckpointOpt, DeviceOpt, DtypeOpt, FpsOpt, FramesOpt, HeightOpt, LoraOpt, ModelOpt, RopeOpt, SecondsOpt, SeedOpt,
    SinkOpt, StepsOpt, WeightsOpt, WidthOpt, WindowOpt,
)
from sfpp.cli._progress import frame_progress


def generate_cmd(
    prompt: Annotated[Optional[str], typer.Argument(
        help="Text prompt, or a schedule 'A[0s] | B[20s]' that switches prompts mid-video.", show_default=False)] = None,
    prompt_file: Annotated[Optional[str], typer.Option(
        "--prompt-file", help="Prompt schedule file (TOML [[prompt]] at/text entries, or JSON).", show_default=False)] = None,
    blend_chunks: Annotated[int, typer.Option(
        "--blend-chunks", help="At a prompt switch, blend the text embeddings over this many chunks.")] = 0,
    seconds: SecondsOpt = None,
    frames: FramesOpt = None,
    seed: SeedOpt = 0,
    fps: FpsOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    steps: StepsOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    checkpoint: CheckpointOpt = None,
    lora: LoraOpt = None,
    window: WindowOpt = None,
    sink: SinkOpt = 0,
    rope: RopeOpt = "absolute",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output .mp4 (a .json sidecar goes next to it).", show_default=False)] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
) -> None:
    """Generate a video from a prompt, written while it is generated."""
    from sfpp.errors import SfppError
    from sfpp.generation import default_out_path, generate
    from sfpp.spec import VideoSpec, check_output_path, load_model, resolve_spec

    with user_errors():
        spec = VideoSpec(model=model, seconds=seconds, frames=frames, seed=seed, fps=fps, height=height, width=width,
                         steps=steps, window=window, sink=sink, rope=rope, device=device, dtype=dtype,
                         weights=weights, checkpoint=checkpoint, lora=lora, blend_chunks=blend_chunks)
        # Validate everything before any work or output.
        from sfpp.prompts import load_schedule_file, parse_schedule

        if prompt_file is not None and prompt is not None:
            raise SfppError("give either a PROMPT or --prompt-file, not both")
        entries = load_schedule_file(prompt_file) if prompt_file is not None else parse_schedule(prompt or "")
        prompt = entries if len(entries) > 1 else entries[0].text
        rs = resolve_spec(spec)
        check_output_path(default_out_path(entries[0].text, rs.seed) if out is None else Path(out), suffix=".mp4")
        with console.status("loading model"):
            lm = load_model(rs)
        with frame_progress() as bar:
            task = bar.add_task("generating", total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            res = generate(prompt, out=out, spec=spec, progress=on_progress, loaded=lm)
        console.print(
            f"[green]wrote[/] {res.path} ({res.num_frames} frames, {res.num_frames / res.fps:.1f} s at {res.fps} fps) "
            f"in {res.seconds_total:.1f} s; sidecar {res.sidecar}"
        )
