"""`sfpp generate PROMPT`: one video, streamed to an MP4 with a JSON sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sfpp.cli._common import console, user_errors
from sfpp.cli._options import (
    ChunkOpt, CheckpointOpt, CompileOpt, ContextNoiseOpt, DeviceOpt, DtypeOpt, Fp8Opt, FpsOpt, FramesOpt, FusedQkvOpt,
    HeightOpt, LoraOpt, ModelOpt, OverlapOpt, RopeOpt, SecondsOpt, SeedOpt, ShiftOpt, SinkOpt, StepsOpt, ThreadsOpt,
    TimestepsOpt, WeightsOpt, WidthOpt, WindowOpt, rollout_overrides,
)
from sfpp.cli._progress import frame_progress


def generate_cmd(
    prompt: Annotated[Optional[str], typer.Argument(
        help="Text prompt, or a schedule 'A\\[0s] | B\\[20s]' that switches prompts mid-video.", show_default=False)] = None,
    prompt_file: Annotated[Optional[str], typer.Option(
        "--prompt-file", help="Prompt schedule file: TOML with \\[\\[prompt]] tables (at = \"20s\", text = \"...\"), "
        "or JSON.", show_default=False)] = None,
    blend_chunks: Annotated[int, typer.Option(
        "--blend-chunks", help="At a prompt switch, blend the text embeddings over this many chunks.")] = 0,
    seconds: SecondsOpt = None,
    frames: FramesOpt = None,
    seed: SeedOpt = 0,
    fps: FpsOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    checkpoint: CheckpointOpt = None,
    lora: LoraOpt = None,
    steps: StepsOpt = None,
    timesteps: TimestepsOpt = None,
    shift: ShiftOpt = None,
    chunk_frames: ChunkOpt = None,
    window: WindowOpt = None,
    sink: SinkOpt = None,
    rope: RopeOpt = None,
    context_noise: ContextNoiseOpt = None,
    out: Annotated[Optional[str], typer.Option(
        "--out", "-o", help="Output .mp4; a .json sidecar goes next to it (default: a file in outputs/ named "
        "after the prompt and the seed).",
        show_default=False)] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    threads: ThreadsOpt = None,
    compile: CompileOpt = False,
    fused_qkv: FusedQkvOpt = None,
    fp8: Fp8Opt = False,
    overlap: OverlapOpt = None,
) -> None:
    """Generate a video from a prompt, written while it is generated.

    Rollout settings (chunk frames, timesteps, shift, window, sink, rope, context noise) come from
    the flags given, else from the student checkpoint (what it was trained with), else from the model.

    The video and its sidecar replace OUT only once both are complete. Ctrl-C or SIGTERM keeps the
    frames done so far as NAME.partial.mp4 (+ NAME.partial.json, "partial": true) and exits 130/143;
    a full disk exits 1 and leaves OUT as it was.
    """
    from sfpp.errors import SfppError
    from sfpp.generation import default_out_path, generate
    from sfpp.spec import VideoSpec, check_output_path, emit_warnings, load_model, resolve_spec

    with user_errors():
        spec = VideoSpec(model=model, seconds=seconds, frames=frames, seed=seed, fps=fps, height=height, width=width,
                         device=device, dtype=dtype, threads=threads, weights=weights, checkpoint=checkpoint,
                         lora=lora, blend_chunks=blend_chunks, compile=compile, fused_qkv=fused_qkv, fp8=fp8,
                         overlap=overlap,
                         **rollout_overrides(steps=steps, timesteps=timesteps, shift=shift, chunk_frames=chunk_frames,
                                             window=window, sink=sink, rope=rope, context_noise=context_noise))
        # Validate everything before any work or output.
        from sfpp.prompts import load_schedule_file, parse_schedule

        if prompt_file is not None and prompt is not None:
            raise SfppError("give either a PROMPT or --prompt-file, not both")
        entries = load_schedule_file(prompt_file) if prompt_file is not None else parse_schedule(prompt or "")
        prompt = entries if len(entries) > 1 else entries[0].text
        rs = resolve_spec(spec)
        from sfpp.generation import check_schedule

        check_schedule(entries, rs)
        emit_warnings(rs)
        check_output_path(default_out_path(entries[0].text, rs.seed) if out is None else Path(out), suffix=".mp4")
        from sfpp.generation import torch_threads

        with torch_threads(rs.threads):
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
