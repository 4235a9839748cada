"""The one autoregressive rollout used by `generate`, `rollout` and training.

Chunk by chunk (``chunk_frames`` latent frames each), the causal student denoises pure noise
with a few-step flow-matching schedule, attending to a rolling KV cache of earlier chunks:

    for each chunk:
        x = noise                                   # at timesteps[0]
        for k, t in enumerate(timesteps[: exit + 1]):
            v  = student(x, t, cache)               # overwrites the chunk's cache slots
            x0 = x - sigma(t) * v
            if k < exit: x = (1 - sigma(t_{k+1})) x0 + sigma(t_{k+1}) eps_k
        student(x0 [+ context noise], t = context_noise, cache)   # refresh pass: K/V of the clean chunk
        on_chunk(x0)

Which forwards carry gradient is the `GradPolicy` argument; there is no second copy of this
loop for training. Tensors are ``(B, C, F, H, W)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch

from sfpp.causal import CausalWan, TextContext
from sfpp.kv_cache import RollingKVCache
from sfpp.noise import CONTEXT_STEP, SeededNoise
from sfpp.schedule import add_noise, x0_from_flow


@dataclass(frozen=True, kw_only=True)
class GradPolicy:
    """Which forwards of a rollout keep the autograd graph.

    mode: ``"none"`` (inference: everything under no_grad) or ``"exit_step"`` (Self-Forcing
        training: only the exit-step forward of the selected chunks keeps gradient; the steps
        before it, all other chunks and every cache refresh pass run without gradient).
    exit_step: index into the timestep list of the step whose x0 ends each chunk
        (-1 = the last step). Applies in both modes.
    chunks: indices of the chunks whose exit-step forward keeps gradient (None = all).
    """

    mode: Literal["none", "exit_step"] = "none"
    exit_step: int = -1
    chunks: tuple[int, ...] | None = None

    def grad_for(self, chunk_index: int) -> bool:
        return self.mode == "exit_step" and (self.chunks is None or chunk_index in self.chunks)


@dataclass
class ChunkResult:
    """One finished chunk, passed to the `on_chunk` callback."""

    index: int
    frame_start: int
    x0: torch.Tensor  # (B, C, f, H, W) denoised latents (carries grad if the policy says so)
    seconds: float  # wall time of this chunk's forwards


def chunk_sizes(num_frames: int, chunk_frames: int) -> list[int]:
    """Split `num_frames` latent frames into chunks of `chunk_frames` (the last may be shorter)."""
    if num_frames <= 0 or chunk_frames <= 0:
        raise ValueError("num_frames and chunk_frames must be positive")
    sizes = [chunk_frames] * (num_frames // chunk_frames)
    if num_frames % chunk_frames:
        sizes.append(num_frames % chunk_frames)
    return sizes


TextSchedule = Callable[[int, int], TextContext]  # (chunk index, frame start) -> prompt context


def recache(model: CausalWan, cache: RollingKVCache, text: TextContext, history: list[tuple[int, torch.Tensor]], *,
            context_noise: float = 0.0) -> None:
    """Recompute the K/V of every frame in the cache under a new prompt (a prompt switch).

    `history` holds ``(frame_start, clean latents (B, C, f, H, W))`` pieces covering the cached
    frames. The cache is emptied and the refresh pass is re-run over those frames, in order,
    with the new prompt (the frames evicted before them are no longer available as context).
    """
    held = set(cache.frames)
    pieces = []
    for f0, z in history:
        keep = [j for j in range(z.shape[2]) if f0 + j in held]
        if keep:
            pieces.append((f0 + keep[0], z[:, :, keep[0] : keep[-1] + 1]))
    cache.reset()
    B = pieces[0][1].shape[0] if pieces else 0
    with torch.no_grad():
        for f0, z in pieces:
            if f0 != cache.next_frame:
                cache.seek(f0)
            tc = torch.full((B, z.shape[2]), float(context_noise), device=z.device, dtype=torch.float32)
            model(z.to(model.dtype), tc, text, cache=cache, frame_start=f0)


def rollout(
    model: CausalWan,
    text: TextContext | TextSchedule,
    noise: SeededNoise,
    cache: RollingKVCache,
    *,
    num_frames: int,
    chunk_frames: int,
    timesteps: Sequence[float] | torch.Tensor,
    context_noise: float = 0.0,
    grad: GradPolicy = GradPolicy(),
    frame_start: int = 0,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    keep: bool = True,
    chunks: Sequence[int] | None = None,
    start_step: int = 0,
    init: Callable[[int, int], torch.Tensor] | None = None,
) -> torch.Tensor | None:
    """Generate `num_frames` latent frames starting at `frame_start`.

    Args:
        model: the causal student.
        text: prompt context (`CausalWan.encode_text`), batch B; or a schedule
            ``text(chunk_index, frame_start) -> TextContext``. When the schedule returns a new
            context object, the cached window is re-encoded under it first (`recache`).
        noise: seeded noise source (initial noise and re-noising draws).
        cache: rolling KV cache; continues from whatever it holds (``frame_start`` must be its
            next frame).
        timesteps: the (already shifted) few-step list, e.g. [1000, 937.5, 833.3, 625].
        context_noise: timestep of the cache refresh pass (0 = clean context).
        grad: gradient policy (see `GradPolicy`).
        on_chunk: called with each finished chunk (decode, write, statistics, training hooks).
        keep: return the concatenated latents; pass False to keep memory flat for long videos.
        chunks: explicit chunk sizes (default: `chunk_sizes(num_frames, chunk_frames)`).
        start_step: index of the first denoising step; chunks start at ``timesteps[start_step]``.
        init: ``init(frame_start, n) -> (B, C, n, H, W)`` latents at ``timesteps[start_step]``
            (default: pure noise, which requires ``start_step == 0``). Training uses this for
            backward noise initialisation: a clean rollout re-noised to a level of the list.

    Returns:
        ``(B, C, num_frames, H, W)`` latents if `keep`, else None.
    """
    ts = [float(t) for t in (timesteps.tolist() if isinstance(timesteps, torch.Tensor) else timesteps)]
    if not ts:
        raise ValueError("timesteps must not be empty")
    exit_step = grad.exit_step % len(ts)
    if not 0 <= start_step <= exit_step:
        raise ValueError(f"start_step {start_step} must be between 0 and the exit step {exit_step}")
    if start_step > 0 and init is None:
        raise ValueError("start_step > 0 needs `init` latents at that noise level")
    sizes = list(chunks) if chunks is not None else chunk_sizes(num_frames, chunk_frames)
    if sum(sizes) != num_frames:
        raise ValueError(f"chunk sizes {sizes} do not add up to {num_frames} frames")
    B = noise.batch_size
    dtype = next(model.parameters()).dtype
    outputs: list[torch.Tensor] = []
    f0 = frame_start
    schedule = text if callable(text) and not isinstance(text, TextContext) else None
    history: list[tuple[int, torch.Tensor]] = []  # clean chunks still (partly) in the cache, for re-caching
    current: TextContext | None = None if schedule else text
    for ci, n in enumerate(sizes):
        t_start = time.perf_counter()
        if schedule is not None:
            new = schedule(ci, f0)
            if current is not None and new is not current and cache.frames:
                recache(model, cache, new, history, context_noise=context_noise)
            current = new
        text = current
        x = noise.sample(f0, n, step=0) if init is None else init(f0, n).float()  # (B, C, n, H, W)
        x0 = x
        for k in range(start_step, exit_step + 1):
            t = ts[k]
            tt = torch.full((B, n), t, device=x.device, dtype=torch.float32)
            with torch.set_grad_enabled(grad.grad_for(ci) and k == exit_step):
                flow = model(x.to(dtype), tt, text, cache=cache, frame_start=f0).float()
                x0 = x0_from_flow(x, flow, t)
            if k < exit_step:
                x = add_noise(x0.detach(), noise.sample(f0, n, step=k + 1), ts[k + 1])
        with torch.no_grad():  # refresh pass: the cache keeps K/V of the (nearly) clean chunk
            ctx = x0.detach()
            if context_noise > 0:
                ctx = add_noise(ctx, noise.sample(f0, n, step=CONTEXT_STEP), context_noise)
            tc = torch.full((B, n), float(context_noise), device=x.device, dtype=torch.float32)
            model(ctx.to(dtype), tc, text, cache=cache, frame_start=f0)
        if schedule is not None:
            history.append((f0, x0.detach()))
            held = set(cache.frames)
            history = [(a, z) for a, z in history if any(a + j in held for j in range(z.shape[2]))]
        result = ChunkResult(ci, f0, x0, time.perf_counter() - t_start)
        if on_chunk is not None:
            on_chunk(result)
        if keep:
            outputs.append(x0)
        f0 += n
    return torch.cat(outputs, dim=2) if keep else None
