"""`sfpp rollout --prompts FILE --seconds S --out DIR`: long rollouts with latents and per-chunk statistics."""

from __future__ import annotations

from typing import Annotated, Optional

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
    seeds: Annotated[
        int,
        typer.Option("--seeds", min=1, help="Videos per prompt. The k-th of prompt i has seed SEED + i + 1000000*k "
                     "and folder NNNN-<slug>-s<k> (k = 0: NNNN-<slug>, as with one seed)."),
    ] = 1,
    index: Annotated[
        Optional[bool],
        typer.Option("--index/--no-index", help="Write OUT/index.json (every video: folder, prompt, seed, status, "
                     "frames, key digest). Default: under 'accelerate launch', or when OUT already has one.",
                     show_default=False),
    ] = None,
) -> None:
    """Long rollouts for a batch of prompts: raw latents, preview MP4s, per-chunk statistics. Re-running resumes.

    Under 'accelerate launch' (any number of processes and machines) the prompts x seeds are split
    across the processes, each on its own device (cuda:LOCAL_RANK, or the CPU); every video is the
    one a single process makes, an interrupted run resumes where it stopped, and rank 0 writes
    OUT/index.json and prints the summary.
    """
    import contextlib

    from sfpp.batch import read_prompts, rollout_batch, summarize_stats
    from sfpp.distributed_jobs import workers
    from sfpp.spec import VideoSpec, resolve_spec

    with user_errors():
        spec = VideoSpec(model=model, seconds=seconds, frames=frames, seed=seed, fps=fps, height=height, width=width,
                         device=device, dtype=dtype, threads=threads, weights=weights, checkpoint=checkpoint,
                         lora=lora, compile=compile, fused_qkv=fused_qkv, fp8=fp8, overlap=overlap,
                         **rollout_overrides(steps=steps, timesteps=timesteps, shift=shift, chunk_frames=chunk_frames,
                                             window=window, sink=sink, rope=rope, context_noise=context_noise))
        plist = read_prompts(prompts)
        resolve_spec(spec)  # validate before any work
        w = workers()
        with (frame_progress() if w.is_main else contextlib.nullcontext()) as bar:
            tasks: dict[int, int] = {}

            def on_progress(j: int, done: int, total: int) -> None:
                if bar is None:  # other ranks: rank 0 shows its own progress and the summary of all
                    return
                if j not in tasks:
                    label = f"prompt {j // seeds + 1}/{len(plist)}" + (f" seed {j % seeds}" if seeds > 1 else "")
                    tasks[j] = bar.add_task(label + (" (rank 0)" if w.distributed else ""), total=total)
                bar.update(tasks[j], completed=done, total=total)

            res = rollout_batch(plist, out, spec=spec, progress=on_progress, details=True, seeds=seeds, index=index)
        if not w.is_main:
            return
        folders = res.folders
        table = Table(title="rollouts: latent statistics, first chunk -> last chunk")
        for col in ("folder", "chunks", "mean", "std"):
            table.add_column(col)
        for f in folders:
            s = summarize_stats(f) if (f / "stats.jsonl").is_file() else {}
            if s:
                table.add_row(f.name, str(s["chunks"]), f"{s['mean_first']:+.3f} -> {s['mean_last']:+.3f}",
                              f"{s['std_first']:.3f} -> {s['std_last']:.3f}")
        print_table(table, stderr=True)
        console.print(f"{out}: {res.summary()}", soft_wrap=True)
        if res.index is not None:
            console.print(f"index of every video: {res.index}", soft_wrap=True)
