"""`sfpp bench`: speed of generation with stated definitions, on a random-initialised full-size model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sfpp.cli._common import console, print_table, user_errors
from sfpp.cli._options import (
    CompileOpt, DeviceOpt, DtypeOpt, Fp8Opt, FusedQkvOpt, HeightOpt, ModelOpt, OverlapOpt, StepsOpt, ThreadsOpt,
    WidthOpt, WindowOpt,
)


def bench_cmd(
    model: ModelOpt = "debug",
    seconds: Annotated[float, typer.Option("--seconds", "-s", help="Video length to generate, in seconds.")] = 60.0,
    height: HeightOpt = None,
    width: WidthOpt = None,
    steps: StepsOpt = None,
    window: WindowOpt = None,
    compile: CompileOpt = False,
    compile_backend: Annotated[str, typer.Option("--compile-backend", help="torch.compile backend (inductor, aot_eager, eager).")] = "inductor",
    fused_qkv: FusedQkvOpt = None,
    overlap: OverlapOpt = None,
    fp8: Fp8Opt = False,
    threads: ThreadsOpt = None,
    compare_recompute: Annotated[bool, typer.Option("--compare-recompute", help="Also time the KV-cached rollout against recomputing the context, on a video of 8x the window.")] = False,
    compare_multiple: Annotated[int, typer.Option("--compare-multiple", help="Video length of --compare-recompute, in windows.")] = 8,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and noise.")] = 0,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Keep the end-to-end MP4 here (default: a temporary file).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON on stdout.")] = False,
) -> None:
    """Measure generation speed without weights (random init of the preset's full-size config).

    Warm-up (including compilation) is excluded and reported separately. The text encoder is
    not timed: random prompt embeddings of the right shape stand in for it.
    """
    from sfpp.bench import BenchConfig, build, compare_recompute as compare, resolve_bench, run_bench
    from sfpp.errors import SfppError
    from sfpp.spec import check_output_path

    with user_errors():
        cfg = BenchConfig(model=model, seconds=seconds, height=height, width=width, steps=steps, window=window,
                          device=device, dtype=dtype, compile=compile, compile_backend=compile_backend,
                          fused_qkv=fused_qkv, overlap=overlap, fp8=fp8, seed=seed, threads=threads)
        rs = resolve_bench(cfg)  # validates before any work
        if not 1 <= compare_multiple <= 1000:
            raise SfppError(f"--compare-multiple must be a whole number from 1 to 1000, got {compare_multiple}")
        if out is not None:
            check_output_path(Path(out), suffix=".mp4")
        with console.status("building model") as status:
            bm = build(cfg, rs)

            def log(msg: str) -> None:
                status.update(msg)

            report = run_bench(cfg, out=out, log=log, model=bm)
            if compare_recompute:
                report["compare_recompute"] = compare(bm, multiple=compare_multiple, log=log)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        render(report)


def _f(v, fmt: str = ".2f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{fmt}}{unit}"


def render(r: dict) -> None:
    """Human-readable summary of a `run_bench` report."""
    from rich.table import Table

    m, s = r["machine"], r["setup"]
    where = m.get("gpu") or m["cpu"]
    console.print(f"[bold]sfpp bench[/] {s['model']} ({s['weights']}; {s['params']:,} parameters) on {where} "
                  f"({m['device']}, {s['torch_threads']} torch threads), "
                  f"torch {m['torch']}, CUDA {m['cuda'] or '-'}, {m['date']}")
    console.print(f"{s['width']}x{s['height']}, {s['frames']} frames ({s['seconds']:.1f} s at {s['fps']} fps), "
                  f"{s['steps']} steps, chunks of {s['chunk_frames']} latent frames, window {s['window']}, {s['dtype']}, "
                  f"compile {'on' if s['compile'] else 'off'}, fused QKV {'on' if s['fused_qkv'] else 'off'}, "
                  f"fp8 {'on' if s['fp8'] else 'off'}, decode {'overlapped' if s['decode_overlap'] else 'serial'}")
    console.print(f"text encoder: {s['text_encoder']}")
    d, e, mem, w = r["dit"], r["end_to_end"], r["memory"], r["warmup"]
    t = Table(show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("build (not timed below)", _f(r["build_s"], ".1f", " s"))
    t.add_row(f"warm-up ({w['chunks']} chunks, {w['graphs_compiled']} graphs compiled)", _f(w["seconds"], ".1f", " s"))
    t.add_row("graphs compiled during timed runs", str(r["graphs_compiled_in_timed_runs"]))
    t.add_row("time to first frame (end to end)", _f(e["time_to_first_frame_s"], ".3f", " s"))
    t.add_row(f"DiT frames/s, steady ({s['steady_chunks']} chunks)", _f(d["fps_steady"], ".1f"))
    t.add_row("DiT frames/s, whole video", _f(d["fps_overall"], ".1f"))
    t.add_row("end-to-end frames/s, steady", _f(e["fps_steady"], ".1f"))
    t.add_row("end-to-end frames/s, whole video", _f(e["fps_overall"], ".1f"))
    dr = d["drift"]
    if dr["ratio"] is not None:
        t.add_row(f"chunk time, first {dr['segment_s']:.0f} s of video (mean)", _f(dr["first_mean_s"], ".4f", " s"))
        t.add_row(f"chunk time, last {dr['segment_s']:.0f} s of video (mean)", _f(dr["last_mean_s"], ".4f", " s"))
        t.add_row("last / first", _f(dr["ratio"], ".3f"))
    if mem["peak_device_mb"] is not None:
        t.add_row("peak device memory (max_memory_allocated)", _f(mem["peak_device_mb"], ".0f", " MB"))
    t.add_row("peak host RSS (process)", _f(mem["peak_host_rss_mb"], ".0f", " MB"))
    t.add_row(f"{mem['measure']}: first / last steady chunk",
              f"{_f(mem['steady_first_mb'], '.0f')} / {_f(mem['steady_last_mb'], '.0f')} MB")
    t.add_row("KV cache", _f(mem["kv_cache_mb"], ".1f", " MB"))
    print_table(t, stderr=True)
    c = r.get("compare_recompute")
    if c:
        console.print(f"[bold]KV cache vs recompute[/] (DiT only, {c['latent_frames']} latent frames = "
                      f"{c['window_multiple']}x the window, {c['width']}x{c['height']}, best of {c['repeats']}):")
        console.print(f"  cached rollout: {c['cached']['seconds']:.2f} s")
        for name, v in c["recompute"].items():
            console.print(f"  recompute ({name}, up to {v['frames_per_forward_max']} frames per forward): "
                          f"{v['seconds']:.2f} s, cached is {v['speedup']:.1f}x faster, "
                          f"max |latent diff| {v['max_abs_diff']:.1e}")
