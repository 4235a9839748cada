"""`sfpp bench`: generation speed with stated definitions, runnable without weights.

What is timed (all on the same random-initialised full-size model, so no weights are needed;
random weights cost exactly what trained ones cost):

* **build**: constructing the model on the device (and the optional fast-path transforms).
  Not part of any speed figure.
* **warm-up**: a rollout of enough chunks to see every (context, chunk) shape (the window fills
  once, then one more chunk), plus their VAE decode; includes `torch.compile`. Reported
  separately, excluded from everything below.
* **DiT run**: the rollout alone (`sfpp.rollout.rollout`, the function `generate` uses), the
  device synchronised after every chunk. Per-chunk time, DiT frames/s.
* **end-to-end run**: a fresh rollout with every chunk decoded by the streaming VAE and written
  to an MP4 (H.264 via ffmpeg) exactly as `sfpp generate` does (`DecodeWriter`, overlapped
  with denoising on GPUs). Time to first frame, end-to-end frames/s.
* The text encoder is **not** timed and not even built: a random prompt embedding of the
  right shape ``(1, text_len, text_dim)`` stands in for UMT5 (it runs once per prompt).

Definitions: a chunk is *steady* when its context fills the window (context + chunk = window
latent frames); steady-state frames/s counts pixel frames of steady chunks over their time.
Frames are pixel frames at the preset's fps (latent frame 0 gives 1 frame, the others 4).
Per-chunk drift compares the mean steady chunk time in the first and last segment of the video
(segment = 60 s of video, or a third of it for videos shorter than 3 minutes).
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from sfpp.causal import CausalWan, TextContext, block_forward, context_shapes
from sfpp.errors import SfppError
from sfpp.kv_cache import CacheConfig, context_lengths
from sfpp.noise import SeededNoise
from sfpp.presets import build_random_components, full_size_transformer_config, get_preset
from sfpp.rollout import chunk_sizes, rollout
from sfpp.schedule import add_noise, few_step_timesteps, nominal_steps, x0_from_flow
from sfpp.spec import DTYPES, VAE_SPATIAL, ResolvedSpec
from sfpp.vae_stream import StreamingDecoder, latents_for_pixel_frames, pixel_frames_for_latents

LogFn = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """One benchmark run. ``None`` means the preset's default."""

    model: str = "debug"
    seconds: float = 60.0
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    window: int | None = None
    device: str | None = None
    dtype: str | None = None
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    fused_qkv: bool = True
    overlap: bool | None = None  # decode on a worker thread (default: on CUDA)
    fp8: bool = False
    seed: int = 0


# ---------------------------------------------------------------------- set-up
def resolve_bench(cfg: BenchConfig) -> ResolvedSpec:
    """Every number of the benchmarked generation, like `resolve_spec` but needing no weights folder."""
    preset = get_preset(cfg.model)
    fps = preset.fps
    if not (cfg.seconds > 0) or math.isinf(cfg.seconds):
        raise SfppError(f"--seconds must be a positive number, got {cfg.seconds}")
    num_frames = max(1, round(cfg.seconds * fps))
    height = cfg.height if cfg.height is not None else preset.height
    width = cfg.width if cfg.width is not None else preset.width
    mult = VAE_SPATIAL * 2
    for name, v in (("--height", height), ("--width", width)):
        if v <= 0 or v % mult:
            raise SfppError(f"{name} must be a positive multiple of {mult} (VAE x8, patch x2), got {v}")
    steps = cfg.steps if cfg.steps is not None else len(preset.timesteps)
    if steps <= 0:
        raise SfppError(f"--steps must be positive, got {steps}")
    nominal = tuple(preset.timesteps) if steps == len(preset.timesteps) else tuple(nominal_steps(steps))
    timesteps = tuple(float(t) for t in few_step_timesteps(nominal, preset.shift).tolist())
    cache = CacheConfig(window=cfg.window if cfg.window is not None else preset.window)
    chunk = preset.chunk_frames
    if chunk > cache.window:
        raise SfppError(f"--window {cache.window} leaves no room for a chunk of {chunk} frames")
    latent_frames = math.ceil(latents_for_pixel_frames(num_frames) / chunk) * chunk
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SfppError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    dtype = cfg.dtype or ("bfloat16" if device.startswith("cuda") and preset.source != "build" else "float32")
    if dtype not in DTYPES:
        raise SfppError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    rope_max = int(full_size_transformer_config(preset.name).get("rope_max_seq_len", 1024))
    if latent_frames > rope_max:
        raise SfppError(f"{cfg.seconds:g} s needs {latent_frames} latent frames but RoPE has {rope_max} positions; "
                        "shorten --seconds")
    if cfg.fp8:
        check_fp8(torch.device(device))
    return ResolvedSpec(model=preset.name, seed=cfg.seed, fps=fps, num_frames=num_frames, latent_frames=latent_frames,
                        height=height, width=width, latent_height=height // VAE_SPATIAL,
                        latent_width=width // VAE_SPATIAL, chunk_frames=chunk, timesteps=timesteps,
                        nominal_timesteps=tuple(float(t) for t in nominal), shift=preset.shift, cache=cache,
                        device=device, dtype=dtype, text_len=preset.text_len, weights=None, checkpoint=None)


@dataclass
class BenchModel:
    """A built benchmark model: the student, the VAE and a random prompt context."""

    rs: ResolvedSpec
    student: CausalWan
    vae: Any
    text: TextContext
    build_s: float
    source: str


def check_fp8(device: torch.device) -> None:
    """Fail early, naming the fix, unless FP8 linears can run: torchao importable and an SM 8.9+ GPU."""
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        raise SfppError("--fp8 needs torchao: pip install torchao (a release built for your torch version)") from None
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise SfppError("--fp8 needs an NVIDIA GPU with compute capability 8.9 or newer (Ada, Hopper); drop --fp8")


def apply_fp8(student: CausalWan) -> int:
    """Swap the blocks' linear layers for torchao FP8 (dynamic activation and weight scales).

    Only `nn.Linear` layers inside the transformer blocks are converted (the fp32 islands,
    embeddings and the output head stay as they are). Returns how many were converted.
    """
    check_fp8(next(student.parameters()).device)
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

    picked: list[str] = []

    def is_fp8_linear(module: torch.nn.Module, fqn: str) -> bool:
        ok = (isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0
              and module.out_features % 16 == 0)
        if ok:
            picked.append(fqn)
        return ok

    quantize_(student.transformer.blocks, Float8DynamicActivationFloat8WeightConfig(), filter_fn=is_fp8_linear)
    return len(picked)


def build(cfg: BenchConfig, rs: ResolvedSpec | None = None) -> BenchModel:
    """Build the random full-size model on the device and apply the fast-path options."""
    rs = rs or resolve_bench(cfg)
    device = torch.device(rs.device)
    t0 = time.perf_counter()
    comps = build_random_components(rs.model, device=device, dtype=DTYPES[rs.dtype], seed=cfg.seed)
    student = CausalWan(comps.transformer).eval()
    if cfg.fused_qkv:
        student.fuse_qkv()
    if cfg.fp8:
        apply_fp8(student)
    if cfg.compile:
        student.compile_blocks(backend=cfg.compile_backend, mode=cfg.compile_mode)
    tcfg = comps.transformer.config
    g = torch.Generator().manual_seed(cfg.seed + 1)
    emb = torch.randn(1, rs.text_len, tcfg.text_dim, generator=g).to(device, DTYPES[rs.dtype])
    with torch.inference_mode():
        text = student.encode_text(emb)
    _sync(device)
    return BenchModel(rs, student, comps.vae, text, time.perf_counter() - t0, comps.source)


# ---------------------------------------------------------------------- measuring helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float | None:
    """Current resident memory of this process (Linux), MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if platform.system() == "Darwin" else r / 1024


def _device_mb(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb()


def _graphs() -> int:
    """Graphs compiled by torch.compile in this process so far."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return 0
    return int(counters["stats"]["unique_graphs"])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """What the figures were measured on."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version(),
                    flash_sdp=torch.backends.cuda.flash_sdp_enabled())
    return info


def pixel_frames_per_chunk(sizes: Sequence[int], num_frames: int) -> list[int]:
    """Pixel frames each latent chunk contributes to a video of `num_frames` frames."""
    cum = [min(num_frames, pixel_frames_for_latents(c)) for c in itertools.accumulate(sizes)]
    return [b - a for a, b in zip([0] + cum[:-1], cum)]


def steady_chunks(config: CacheConfig, sizes: Sequence[int]) -> list[int]:
    """Indices of the chunks whose context fills the window (context + chunk = window)."""
    return [i for i, (c, n) in enumerate(zip(context_lengths(config, list(sizes)), sizes)) if c + n >= config.window]


def drift(times: Sequence[float], steady: Sequence[int], frames: Sequence[int], fps: int) -> dict[str, Any]:
    """Mean steady chunk time in the first vs the last segment of the video, and their ratio."""
    starts = [s / fps for s in itertools.accumulate([0] + list(frames[:-1]))]  # video time each chunk starts at
    total = sum(frames) / fps
    if len(steady) < 2:
        return {"segment_s": None, "first_mean_s": None, "last_mean_s": None, "ratio": None}
    seg = min(60.0, total / 3)
    t_first = starts[steady[0]]
    first = [times[i] for i in steady if starts[i] < t_first + seg]
    last = [times[i] for i in steady if starts[i] >= total - seg] or [times[steady[-1]]]
    a, b = sum(first) / len(first), sum(last) / len(last)
    return {"segment_s": seg, "first_mean_s": a, "last_mean_s": b, "ratio": b / a if a > 0 else None}


class _NullWriter:
    """Counts frames instead of encoding them (warm-up)."""

    def __init__(self):
        self.frames = 0

    def write(self, frames) -> None:
        self.frames += len(frames)


# ---------------------------------------------------------------------- the benchmark
def run_bench(cfg: BenchConfig, *, out: str | os.PathLike | None = None, log: LogFn | None = None,
              model: BenchModel | None = None) -> dict[str, Any]:
    """Build (or reuse) the model, warm up, then time a DiT-only and an end-to-end run.

    Returns a JSON-serialisable report (see the module docstring for the definitions).
    """
    from sfpp.generation import DecodeWriter, default_overlap
    from sfpp.video import Mp4Writer

    log = log or (lambda msg: None)
    rs = model.rs if model is not None else resolve_bench(cfg)
    device = torch.device(rs.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # random weights can drift into denormals, which are slow on x86
    if model is None:
        log(f"building {rs.model} (random init) on {device}")
    bm = model or build(cfg, rs)
    student, sizes = bm.student, chunk_sizes(rs.latent_frames, rs.chunk_frames)
    frames = pixel_frames_per_chunk(sizes, rs.num_frames)
    steady = steady_chunks(rs.cache, sizes)
    shapes = context_shapes(rs.cache, sizes)
    overlap = default_overlap(device) if cfg.overlap is None else cfg.overlap

    def noise() -> SeededNoise:
        return SeededNoise(rs.seed, channels=student.in_channels, height=rs.latent_height, width=rs.latent_width,
                           device=device)

    def new_cache():
        return student.new_cache(rs.cache, batch_size=1, latent_hw=(rs.latent_height, rs.latent_width))

    # Warm-up: every distinct context shape once (window filled + one chunk), plus the VAE.
    ctx = context_lengths(rs.cache, sizes)
    n_warm = min(len(sizes), ctx.index(max(ctx)) + 2)
    log(f"warm-up: {n_warm} chunks{' (compiling)' if student.compiled else ''}")
    graphs0 = _graphs()
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        sink = DecodeWriter(StreamingDecoder(bm.vae), _NullWriter(), num_frames=rs.num_frames)
        rollout(student, bm.text, noise(), new_cache(), num_frames=sum(sizes[:n_warm]), chunk_frames=rs.chunk_frames,
                timesteps=rs.timesteps, on_chunk=lambda c: sink.submit(c.x0), keep=False)
        sink.close()
    _sync(device)
    warm_s = time.perf_counter() - t0
    graphs_warm = _graphs() - graphs0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # DiT only.
    log(f"DiT run: {len(sizes)} chunks, {rs.latent_frames} latent frames")
    stamps: list[float] = []
    mem: list[float | None] = []

    def on_dit_chunk(c) -> None:
        _sync(device)
        stamps.append(time.perf_counter())
        mem.append(_device_mb(device))

    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        rollout(student, bm.text, noise(), new_cache(), num_frames=rs.latent_frames, chunk_frames=rs.chunk_frames,
                timesteps=rs.timesteps, on_chunk=on_dit_chunk, keep=False)
    dit_s = stamps[-1] - t0
    chunk_s = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]

    # End to end: rollout + streaming VAE decode + MP4 write.
    log(f"end-to-end run: {rs.num_frames} frames to MP4 (decode {'overlapped' if overlap else 'serial'})")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out) if out is not None else Path(tmp) / "bench.mp4"
        writer = Mp4Writer(path, fps=rs.fps, width=rs.width, height=rs.height)
        sink = DecodeWriter(StreamingDecoder(bm.vae), writer, num_frames=rs.num_frames, overlap=overlap)
        try:
            _sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                rollout(student, bm.text, noise(), new_cache(), num_frames=rs.latent_frames,
                        chunk_frames=rs.chunk_frames, timesteps=rs.timesteps, on_chunk=lambda c: sink.submit(c.x0),
                        keep=False)
            sink.close()
            writer.close()
        except BaseException:
            sink.close(raise_errors=False)
            writer.abort()
            raise
        _sync(device)
        e2e_s = time.perf_counter() - t0
    graphs_timed = _graphs() - graphs0 - graphs_warm

    def fps_of(idx: Sequence[int], secs: float) -> float | None:
        n = sum(frames[i] for i in idx)
        return n / secs if idx and secs > 0 else None

    done = sink.done_at
    e2e_steady = None
    if len(steady) >= 2:
        e2e_steady = fps_of(steady[1:], done[steady[-1]] - done[steady[0]])
    steady_mem = [mem[i] for i in steady if mem[i] is not None]
    report: dict[str, Any] = {
        "machine": machine_info(device),
        "setup": {
            "model": rs.model, "weights": bm.source, "height": rs.height, "width": rs.width, "fps": rs.fps,
            "seconds": rs.seconds, "frames": rs.num_frames, "latent_frames": rs.latent_frames,
            "chunk_frames": rs.chunk_frames, "chunks": len(sizes), "steps": len(rs.timesteps),
            "window": rs.cache.window, "dtype": rs.dtype, "compile": student.compiled,
            "compile_backend": cfg.compile_backend if cfg.compile else None, "fused_qkv": cfg.fused_qkv,
            "fp8": cfg.fp8, "decode_overlap": overlap, "cpu_flush_denormal": device.type == "cpu", "vae_dtype": str(next(bm.vae.parameters()).dtype),
            "text_encoder": "not timed: random prompt embeddings (1, %d, %d) stand in for UMT5"
                            % (rs.text_len, bm.student.transformer.config.text_dim),
            "steady_chunks": len(steady), "context_shapes": [list(s) for s in shapes],
        },
        "build_s": bm.build_s,
        "warmup": {"seconds": warm_s, "chunks": n_warm, "graphs_compiled": graphs_warm},
        "graphs_compiled_in_timed_runs": graphs_timed,
        "dit": {
            "seconds": dit_s,
            "fps_overall": rs.num_frames / dit_s,
            "fps_steady": fps_of(steady, sum(chunk_s[i] for i in steady)),
            "chunk_s": chunk_s,
            "drift": drift(chunk_s, steady, frames, rs.fps),
        },
        "end_to_end": {
            "seconds": e2e_s,
            "time_to_first_frame_s": None if sink.first_frame_at is None else sink.first_frame_at - t0,
            "fps_overall": rs.num_frames / e2e_s,
            "fps_steady": e2e_steady,
            "chunk_done_s": [d - t0 for d in done],
            "decode_write_s": sink.decode_write_s,
        },
        "memory": {
            "peak_device_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "peak_host_rss_mb": _peak_rss_mb(),
            "kv_cache_mb": new_cache().nbytes() / 2**20,
            "steady_first_mb": steady_mem[0] if steady_mem else None,
            "steady_last_mb": steady_mem[-1] if steady_mem else None,
            "measure": "torch.cuda.memory_allocated" if device.type == "cuda" else "process RSS",
        },
    }
    return report


# ---------------------------------------------------------------------- recompute baseline
def receptive_first_chunk(sizes: Sequence[int], index: int, window: int | None, num_layers: int) -> int:
    """First chunk whose frames can still influence chunk `index` (no sink).

    With a banded mask a chunk sees ``window`` frames back; through ``num_layers`` blocks that
    reach compounds: the output of block L depends on block L's K/V of the visible frames,
    whose hidden states depend on their own visible frames at block L-1, and so on. Frames
    before the returned chunk cannot change the result, so a recompute may start there.
    """
    if window is None:
        return 0
    ends = list(itertools.accumulate(sizes))
    x = index
    for _ in range(num_layers):
        lo = max(0, ends[x] - window)
        x = next(i for i, e in enumerate(ends) if e > lo)
    return x


@torch.no_grad()
def recompute_rollout(model: CausalWan, text: TextContext, noise: SeededNoise, *, chunks: Sequence[int],
                      timesteps: Sequence[float], window: int | None = None, context: str = "receptive",
                      on_chunk: Callable[[int], None] | None = None) -> torch.Tensor:
    """The rollout without a KV cache: every forward recomputes the visible context from scratch.

    Every denoising step of every chunk runs `CausalWan.forward_full` over the finished
    (clean, t = 0) chunks plus the noisy current chunk with the same banded block-causal mask
    the cache implements. ``context="all"`` feeds every frame generated so far;
    ``"receptive"`` (default) only the frames that can influence the chunk
    (`receptive_first_chunk`): the same latents for less work, i.e. the stronger baseline.
    Returns ``(B, C, F, H, W)`` latents equal (to float tolerance) to the cached rollout's.
    """
    if context not in ("receptive", "all"):
        raise ValueError(f"context must be 'receptive' or 'all', got {context!r}")
    ts = [float(t) for t in timesteps]
    sizes = list(chunks)
    dtype = next(model.parameters()).dtype
    clean: list[torch.Tensor] = []  # x0 of finished chunks, (B, C, n, H, W) each
    starts = [0] + list(itertools.accumulate(sizes))[:-1]
    for ci, n in enumerate(sizes):
        f0 = starts[ci]
        c0 = receptive_first_chunk(sizes, ci, window, model.num_layers) if context == "receptive" else 0
        x = noise.sample(f0, n, step=0)  # (B, C, n, H, W)
        B = x.shape[0]
        n_ctx = f0 - starts[c0]
        x0 = x
        for k, t in enumerate(ts):
            seq = torch.cat(clean[c0:] + [x], dim=2)  # (B, C, n_ctx + n, H, W)
            tt = torch.cat([torch.zeros(B, n_ctx, device=x.device), torch.full((B, n), t, device=x.device)], dim=1)
            flow = model.forward_full(seq.to(dtype), tt, text, chunk_sizes=sizes[c0 : ci + 1], window=window).float()
            x0 = x0_from_flow(x, flow[:, :, n_ctx:], t)
            if k + 1 < len(ts):
                x = add_noise(x0, noise.sample(f0, n, step=k + 1), ts[k + 1])
        clean.append(x0)
        if on_chunk is not None:
            on_chunk(ci)
    return torch.cat(clean, dim=2)


def compare_recompute(bm: BenchModel, *, multiple: int = 8, contexts: Sequence[str] = ("all", "receptive"),
                      repeats: int = 3, log: LogFn | None = None) -> dict[str, Any]:
    """Time the KV-cached rollout against recompute baselines side by side (DiT only, one process).

    The video is ``multiple`` windows of latent frames. Baselines (`recompute_rollout`):
    ``all`` recomputes every frame generated so far for every forward (the "full context"
    recompute); ``receptive`` only the frames that can still change the chunk. Every run uses
    the eager blocks (a compiled block would recompile for every full-context length) and
    produces the same latents; the largest difference to the cached run is reported. Each run
    is repeated ``repeats`` times and the fastest is kept (the first run of a shape pays one-off
    kernel set-up costs, and the recompute baseline meets a new shape at every chunk).
    """
    log = log or (lambda msg: None)
    rs, student = bm.rs, bm.student
    device = torch.device(rs.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    latent = math.ceil(multiple * rs.cache.window / rs.chunk_frames) * rs.chunk_frames
    sizes = chunk_sizes(latent, rs.chunk_frames)
    noise = SeededNoise(rs.seed, channels=student.in_channels, height=rs.latent_height, width=rs.latent_width,
                        device=device)

    def new_cache():
        return student.new_cache(rs.cache, batch_size=1, latent_hw=(rs.latent_height, rs.latent_width))

    saved = student._block_impl
    student._block_impl = block_forward
    runs: dict[str, Any] = {}
    try:
        with torch.inference_mode():
            def timed(fn) -> tuple[float, torch.Tensor]:
                _sync(device)
                t0 = time.perf_counter()
                out = fn()
                _sync(device)
                return time.perf_counter() - t0, out

            def cached_run():
                return rollout(student, bm.text, noise, new_cache(), num_frames=latent, chunk_frames=rs.chunk_frames,
                               timesteps=rs.timesteps)

            def recompute_run(ctx):
                return recompute_rollout(student, bm.text, noise, chunks=sizes, timesteps=rs.timesteps,
                                         window=rs.cache.window, context=ctx)

            # Round robin (cached, each baseline, again ...), fastest of each kept: a load spike on a
            # shared machine then hits one repeat, not one method.
            times: dict[str, list[float]] = {"cached": [], **{c: [] for c in contexts}}
            outs: dict[str, torch.Tensor] = {}
            for r in range(max(1, repeats)):
                log(f"recompute comparison {r + 1}/{max(1, repeats)}: cached rollout, {latent} latent frames")
                secs, outs["cached"] = timed(cached_run)
                times["cached"].append(secs)
                for ctx in contexts:
                    log(f"recompute comparison {r + 1}/{max(1, repeats)}: recompute ({ctx}), {latent} latent frames")
                    secs, outs[ctx] = timed(lambda: recompute_run(ctx))
                    times[ctx].append(secs)
            cached_s = min(times["cached"])
            for ctx in contexts:
                if ctx == "all":
                    frames_max = latent
                else:
                    frames_max = max(sum(sizes[receptive_first_chunk(sizes, i, rs.cache.window, student.num_layers):
                                               i + 1]) for i in range(len(sizes)))
                runs[ctx] = {"seconds": min(times[ctx]), "speedup": min(times[ctx]) / cached_s,
                             "all_seconds": times[ctx],
                             "max_abs_diff": (outs["cached"].float() - outs[ctx].float()).abs().max().item(),
                             "forwards_per_chunk": len(rs.timesteps), "frames_per_forward_max": frames_max}
    finally:
        student._block_impl = saved
    return {
        "latent_frames": latent,
        "window_multiple": multiple,
        "frames": pixel_frames_for_latents(latent),
        "height": rs.height,
        "width": rs.width,
        "repeats": max(1, repeats),
        "cached": {"seconds": cached_s, "all_seconds": times["cached"], "forwards_per_chunk": len(rs.timesteps) + 1,
                   "frames_per_forward_max": rs.cache.window},
        "recompute": runs,
    }


def config_dict(cfg: BenchConfig) -> dict[str, Any]:
    return asdict(cfg)
