"""`sfpp rollout --prompts FILE --seconds S --out DIR`: long rollouts with latents and per-chunk statistics."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sfpp.cli._common import console, print_table, user_errors
from sfpp.cli._options import (
    ChunkOpt, CheckpointOpt, CompileOpt, ContextNoiseOpt, DeviceOpt, DtypeOpt, Fp8Opt, FpsOpt, FramesOpt, FusedQkvOpt,
    HeightOpt, LoraOpt, ModelOpt, OverlapOpt, RopeOpt, SecondsOpt, SeedOpt, ShiftOpt, SinkOpt, StepsOpt, ThreadsOpt,
    TimestepsOpt, WeightsOpt, WidthOpt, WindowOpt, rollout_overrides,
)
from sfpp.cli._progress import frame_progress


def rollout_cmd(
    prompts: Annotated[str, typer.Option("--prompts", "-p", help="Text file, one prompt per line.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (one sub-folder per prompt).", show_default=False)],
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
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    threads: ThreadsOpt = None,
    compile: CompileOpt = False,
    fused_qkv: FusedQkvOpt = None,
    fp8: Fp8Opt = False,
    overlap: OverlapOpt = None,
) -> None:
    """Long rollouts for a batch of prompts: raw latents, preview MP4s, per-chunk statistics. Re-running resumes."""
    from sfpp.batch import read_prompts, rollout_batch, summarize_stats
    from sfpp.spec import VideoSpec, resolve_spec

    with user_errors():
        spec = VideoSpec(model=model, seconds=seconds, frames=frames, seed=seed, fps=fps, height=height, width=width,
                         device=device, dtype=dtype, threads=threads, weights=weights, checkpoint=checkpoint,
                         lora=lora, compile=compile, fused_qkv=fused_qkv, fp8=fp8, overlap=overlap,
                         **rollout_overrides(steps=steps, timesteps=timesteps, shift=shift, chunk_frames=chunk_frames,
                                             window=window, sink=sink, rope=rope, context_noise=context_noise))
        plist = read_prompts(prompts)
        resolve_spec(spec)  # validate before any work
        with frame_progress() as bar:
            tasks: dict[int, int] = {}

            def on_progress(i: int, done: int, total: int) -> None:
                if i not in tasks:
                    tasks[i] = bar.add_task(f"prompt {i + 1}/{len(plist)}", total=total)
                bar.update(tasks[i], completed=done, total=total)

            res = rollout_batch(plist, out, spec=spec, progress=on_progress, details=True)
        folders = res.folders
        table = Table(title="rollouts: latent statistics, first chunk -> last chunk")
        for col in ("folder", "chunks", "mean", "std"):
            table.add_column(col)
        for f in folders:
            s = summarize_stats(f)
            if s:
                table.add_row(f.name, str(s["chunks"]), f"{s['mean_first']:+.3f} -> {s['mean_last']:+.3f}",
                              f"{s['std_first']:.3f} -> {s['std_last']:.3f}")
        print_table(table, stderr=True)
        console.print(f"{out}: {res.summary()}", soft_wrap=True)
