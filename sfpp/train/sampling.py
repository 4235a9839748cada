"""What a generator sample is: the random draws of a training step and the rollout they define.

Pure functions of their arguments (no trainer state): the seeded draws (exit step; for the
extended stage also the rollout length N, the window start and the backward-noise level), and
`generator_sample`, which runs the one rollout (`sfpp.rollout.rollout`) to produce the K-frame
sample that DMD scores:

* ``self-forcing``: roll out K latent frames (the teacher horizon) from noise; the exit step
  (last, or random and shared by all chunks) of every chunk keeps gradient.
* ``extended`` (Self-Forcing++): draw N and a window start i on the chunk grid (`sample_window_start`
  says how this relates to the paper's frame-level draw); roll out frames [0, i) in whole chunks
  without gradient (the rolling KV cache, window K, holds their context, exactly as at inference);
  roll out the window [i, i+K) without gradient to get the student's clean frames; re-noise them
  to a level of the few-step list (backward noise initialisation, SF++ eq. 1) and re-denoise the
  window chunk by chunk from the same cache state, keeping gradient only at the exit step. At the
  first level (sigma = 1) the re-noised window is pure noise, so the clean pass is skipped. Frames
  after the window cannot influence it (the student is causal), so they are not generated.

Randomness: every draw is a function of (run seed, stage, step, purpose[, sample slot]). The shared
draws (exit step, N, window) are identical on every rank without communication; per-sample draws
(noise, DMD timestep) depend on the sample's slot in the step's global batch, slot = (micro-batch *
world + rank) * batch + b, never on the rank or micro-batch alone. So a resumed run draws exactly what
an uninterrupted one would, on the same or on another number of processes (the global batch is kept).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sfpp.errors import SfppError
from sfpp.noise import SeededNoise, mix_seed
from sfpp.rollout import GradPolicy, rollout
from sfpp.schedule import add_noise, sigma_of

STAGE_IDS = {"ode": 1, "self-forcing": 2, "extended": 3}
P_GEN, P_CRITIC, P_SHARED, P_DMD, P_ODE = 11, 12, 13, 14, 15
RENOISE_STEP = 2000  # `SeededNoise` step index of the backward-noise draws (level added)


def stage_generator(seed: int, stage: str, step: int, *parts: int) -> torch.Generator:
    """A CPU generator seeded by (run seed, stage, step, *parts)."""
    return torch.Generator().manual_seed(mix_seed(seed, STAGE_IDS[stage], step, *parts))


def slots(micro: int, rank: int, world: int, batch: int) -> list[int]:
    """The global-batch slots of one rank's micro-batch: (micro * world + rank) * batch + b."""
    first = (micro * world + rank) * batch
    return list(range(first, first + batch))


def stage_noise(seed: int, stage: str, step: int, purpose: int, slot_ids: list[int], *, channels: int,
                latent_hw: tuple[int, int], device) -> SeededNoise:
    """Noise of a micro-batch: one seed per sample, from (run seed, stage, step, purpose, its slot)."""
    seeds = [mix_seed(seed, STAGE_IDS[stage], step, purpose, 0, 0, j) for j in slot_ids]
    return SeededNoise(seeds, channels=channels, height=latent_hw[0], width=latent_hw[1], device=device)


def n_max_at(step: int, *, k: int, n_max: int, n_max_start: int | None, ramp_steps: int, chunk: int) -> int:
    """N_max of the curriculum at `step`: linear ramp from n_max_start (default K) to n_max, in whole chunks."""
    start = k if n_max_start is None else n_max_start
    if ramp_steps > 0:
        v = start + (n_max - start) * min(1.0, step / ramp_steps)
    else:
        v = n_max
    return max(k, int(v) // chunk * chunk)


def sample_rollout_length(gen: torch.Generator, *, k: int, n_max: int, chunk: int) -> int:
    """N uniform over {K, K + chunk, ..., n_max}."""
    choices = (n_max - k) // chunk + 1
    return k + chunk * int(torch.randint(choices, (1,), generator=gen))


def sample_window_start(gen: torch.Generator, n: int, k: int, mode: str = "uniform", *, chunk: int = 1) -> int:
    """Window start i on the chunk grid: i in {0, c, 2c, ..., N-K} for chunk size c.

    The paper draws a frame-level start, i ~ Unif{1..N-K+1} (1-based; 0..N-K here). sfpp draws it
    on the chunk grid instead (uniform over the (N-K)/c + 1 chunk-aligned starts, or Beta(1, 2)-
    skewed towards early windows): at inference the student only ever denoises chunk-aligned
    chunks, and its rolling cache only ever holds chunk-aligned context, so a window that starts
    mid-chunk would train on chunk boundaries inference never produces. With c = 1 this is the
    paper's draw. N and K must be whole numbers of chunks (the trainer guarantees it).
    """
    if n < k:
        raise ValueError(f"rollout length {n} is shorter than the window {k}")
    if chunk < 1 or (n - k) % chunk:
        raise ValueError(f"N - K = {n - k} is not a whole number of chunks of {chunk}")
    m = (n - k) // chunk + 1  # chunk-aligned window starts
    if mode == "uniform":
        return chunk * int(torch.randint(m, (1,), generator=gen))
    if mode != "beta12":
        raise SfppError(f"window_sampling must be 'uniform' or 'beta12', got {mode!r}")
    u = float(torch.rand((1,), generator=gen))
    x = 1.0 - math.sqrt(1.0 - u)  # inverse CDF of Beta(1, 2): early windows more likely
    return chunk * min(m - 1, int(x * m))


def backward_noise(x0: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
    """Backward noise initialisation (SF++ eq. 1): re-noise the student's clean frames, x_t = (1-s) x0 + s eps."""
    return add_noise(x0, noise, t)


def draw_rollout(gen: torch.Generator, *, stage: str, step: int, n_steps: int, k: int, chunk: int, exit_mode: str,
                 extended=None) -> dict[str, int]:
    """The shared draws of one generator or critic sample.

    Returns ``N`` (rollout length), ``window_start``, ``exit_step`` (index of the step whose
    forward keeps gradient) and ``renoise_step`` (index of the backward-noise level; -1 when the
    stage has none). ``extended`` is the `[extended]` config section (extended stage only).
    """
    if stage != "extended":
        exit_step = n_steps - 1 if exit_mode == "last" else int(torch.randint(n_steps, (1,), generator=gen))
        return {"N": k, "window_start": 0, "exit_step": exit_step, "renoise_step": -1}
    ex = extended
    nmax = n_max_at(step, k=k, n_max=max(ex.n_max, k), n_max_start=ex.n_max_start, ramp_steps=ex.ramp_steps,
                    chunk=chunk)
    n = sample_rollout_length(gen, k=k, n_max=nmax, chunk=chunk)
    i = sample_window_start(gen, n, k, ex.window_sampling, chunk=chunk)
    s = int(ex.renoise_steps[int(torch.randint(len(ex.renoise_steps), (1,), generator=gen))])
    if not 0 <= s < n_steps:
        raise SfppError(f"[extended].renoise_steps must index the {n_steps}-step list, got {s}")
    exit_step = n_steps - 1 if exit_mode == "last" else int(torch.randint(s, n_steps, (1,), generator=gen))
    return {"N": n, "window_start": i, "exit_step": exit_step, "renoise_step": s}


def generator_sample(student, text, noise: SeededNoise, *, cache, draws: dict[str, Any], k: int, chunk: int,
                     timesteps: list[float], context_noise: float, extended: bool, with_grad: bool) -> torch.Tensor:
    """The K-frame student sample that DMD scores: ``(B, C, K, H, W)``.

    ``cache``: a fresh `RollingKVCache` for this sample (the caller sizes it).
    """
    ts = timesteps
    grad = GradPolicy(mode="exit_step" if with_grad else "none", exit_step=draws["exit_step"])
    if not extended:
        return rollout(student, text, noise, cache, num_frames=k, chunk_frames=chunk, timesteps=ts, grad=grad,
                       context_noise=context_noise)
    i = draws["window_start"]
    if i % chunk:
        raise ValueError(f"window start {i} is not on the chunk grid (chunks of {chunk})")
    level = draws["renoise_step"]
    with torch.no_grad():
        if i > 0:  # the preceding rollout, in whole chunks as at inference: context only, never gradient
            rollout(student, text, noise, cache, num_frames=i, chunk_frames=chunk, timesteps=ts, keep=False,
                    context_noise=context_noise)
        eps = noise.sample(i, k, step=RENOISE_STEP + level)
        if sigma_of(ts[level]) >= 1.0:
            # sigma = 1: backward noise is the noise itself, whatever the clean window; skip computing it
            x_t = eps
        else:
            snapshot = cache.state_dict()
            clean = rollout(student, text, noise, cache, num_frames=k, chunk_frames=chunk, timesteps=ts,
                            frame_start=i, context_noise=context_noise)
            cache.load_state_dict(snapshot)
            x_t = backward_noise(clean, eps, ts[level])  # (B, C, K, H, W)
    return rollout(student, text, noise, cache, num_frames=k, chunk_frames=chunk, timesteps=ts, frame_start=i,
                   start_step=level, init=lambda f0, n: x_t[:, :, f0 - i : f0 - i + n], grad=grad,
                   context_noise=context_noise)
