"""The generation fast paths, applied in one place for `generate`, `rollout` and `bench`.

* fused QKV: Q/K/V (and the cross-attention K/V) projections as one linear each
  (`CausalWan.fuse_qkv`). On by default where it is exact: on the CPU the fused matmul gives
  bit-identical latents (tests/test_fastpath.py); on a GPU it is opt-in (``--fused-qkv``) until its
  error is measured there.
* ``compile``: `torch.compile` of the transformer block (`CausalWan.compile_blocks`); one graph per
  (context, chunk) shape. `warm_up` runs those shapes once before the timed work, so compile time
  is reported separately and never lands inside a video's timings.
* ``fp8``: FP8 linears in the blocks via torchao (SM 8.9+ GPUs).
* ``overlap``: decode and write chunk k on a worker thread (and a second CUDA stream) while chunk
  k+1 is denoised (`sfpp.generation.DecodeWriter`); on by default on GPUs, where it is free, off on
  CPUs, where both compete for the same cores.

`FastPaths` holds the request (``None`` = the device's default); `resolve_fast_paths` decides it
for a device; `apply_fast_paths` transforms a loaded student.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from sfpp.errors import SfppError


@dataclass(frozen=True, kw_only=True)
class FastPaths:
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    fused_qkv: bool | None = None  # None: on where exact (CPU)
    fp8: bool = False
    overlap: bool | None = None  # None: on for CUDA devices

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _device_type(device) -> str:
    return str(device).split(":", 1)[0]


def resolve_fast_paths(fp: FastPaths, device) -> FastPaths:
    """Fill the device defaults in; check what cannot run here before any work."""
    kind = _device_type(device)
    if fp.compile_backend not in ("inductor", "aot_eager", "eager"):
        raise SfppError(f"--compile-backend must be inductor, aot_eager or eager, got {fp.compile_backend!r}")
    if fp.fp8:
        check_fp8(device)
    return replace(fp, fused_qkv=(kind == "cpu") if fp.fused_qkv is None else bool(fp.fused_qkv),
                   overlap=(kind == "cuda") if fp.overlap is None else bool(fp.overlap))


def check_fp8(device) -> None:
    """Fail early, naming the fix, unless FP8 linears can run: torchao importable and an SM 8.9+ GPU."""
    import torch

    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        raise SfppError("--fp8 needs torchao: pip install torchao (a release built for your torch version)") from None
    dev = torch.device(device)
    if dev.type != "cuda" or torch.cuda.get_device_capability(dev) < (8, 9):
        raise SfppError("--fp8 needs an NVIDIA GPU with compute capability 8.9 or newer (Ada, Hopper); drop --fp8")


def apply_fp8(student) -> int:
    """Swap the blocks' linear layers for torchao FP8 (dynamic activation and weight scales).

    Only `nn.Linear` layers inside the transformer blocks are converted (the fp32 islands,
    embeddings and the output head stay as they are). Returns how many were converted.
    """
    import torch

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


def apply_fast_paths(student, fp: FastPaths) -> dict[str, Any]:
    """Apply resolved fast paths to a loaded `CausalWan` (in place); returns what was applied.

    Order: fuse (changes the module layout), FP8 (swaps the linears), then compile (traces the result).
    """
    applied: dict[str, Any] = {"fused_qkv": False, "fp8_linears": 0, "compile": False}
    if fp.fused_qkv:
        student.fuse_qkv()
        applied["fused_qkv"] = True
    if fp.fp8:
        applied["fp8_linears"] = apply_fp8(student)
    if fp.compile:
        student.compile_blocks(backend=fp.compile_backend, mode=fp.compile_mode)
        applied["compile"] = True
    return applied


def compiled_graphs() -> int:
    """Graphs compiled by torch.compile in this process so far."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return 0
    return int(counters["stats"]["unique_graphs"])


def warm_up(student, text, rollout_cfg, cache_cfg, *, latent_hw: tuple[int, int], total_frames: int,
            decoder=None, device=None) -> dict[str, Any]:
    """Run every (context, chunk) shape of a rollout once, on throw-away noise and cache.

    Enough chunks to fill the window plus one more (after that no shape is new), each decoded when
    a `decoder` is given (so the decoder's first-call paths are warm too). Returns the seconds spent
    and the graphs compiled.
    """
    import torch

    from sfpp.kv_cache import context_lengths
    from sfpp.noise import SeededNoise
    from sfpp.rollout import chunk_sizes, rollout

    sizes = chunk_sizes(total_frames, rollout_cfg.chunk_frames)
    ctx = context_lengths(cache_cfg, sizes)
    n_warm = min(len(sizes), ctx.index(max(ctx)) + 2)
    g0 = compiled_graphs()
    _sync(device)
    t0 = time.perf_counter()
    noise = SeededNoise(0, channels=student.in_channels, height=latent_hw[0], width=latent_hw[1],
                        device=device or "cpu")

    def on_chunk(c) -> None:
        if decoder is not None:
            z = c.x0
            for part in ([z[:, :, :1], z[:, :, 1:]] if c.index == 0 else [z]):
                if part.shape[2]:
                    decoder.decode(part)

    with torch.inference_mode():  # the cache is made in inference mode, as `generate` and `bench` make theirs
        cache = student.new_cache(cache_cfg, batch_size=1, latent_hw=latent_hw)
        rollout(student, text, noise, cache, num_frames=sum(sizes[:n_warm]), chunk_frames=rollout_cfg.chunk_frames,
                timesteps=rollout_cfg.shifted_timesteps, context_noise=rollout_cfg.context_noise,
                on_chunk=on_chunk, keep=False)
    if decoder is not None and hasattr(decoder, "reset"):
        decoder.reset()
    _sync(device)
    return {"seconds": time.perf_counter() - t0, "chunks": n_warm, "graphs_compiled": compiled_graphs() - g0}


def _sync(device) -> None:
    if device is not None and _device_type(device) == "cuda":
        import torch

        torch.cuda.synchronize(device)
