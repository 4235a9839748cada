"""Seeded, chunking-independent Gaussian noise for rollouts.

Every draw is a function of ``(seed, sample, frame, step)`` only, so the same seed gives the
same video whatever the chunk size, batch position of other samples, or whether generation
was interrupted and resumed. ``step`` 0 is the initial noise of a frame; step ``k >= 1`` is
the noise used to re-noise it before denoising step ``k``; the context-noise draw for the
cache refresh pass uses ``step = CONTEXT_STEP``.
"""

from __future__ import annotations

import torch

CONTEXT_STEP = 1_000
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit generator seed (stable across processes and platforms)."""
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h & ((1 << 63) - 1)


class SeededNoise:
    """Noise source for latents of shape ``(B, C, F, H, W)``.

    seeds: one seed per batch sample (``int`` for all-equal, or a list).
    """

    def __init__(self, seeds: int | list[int], *, channels: int, height: int, width: int,
                 batch_size: int | None = None, device="cpu", dtype=torch.float32):
        if isinstance(seeds, int):
            seeds = [seeds] * (batch_size or 1)
        self.seeds = list(seeds)
        self.channels, self.height, self.width = channels, height, width
        self.device, self.dtype = torch.device(device), dtype

    @property
    def batch_size(self) -> int:
        return len(self.seeds)

    def sample(self, frame_start: int, num_frames: int, step: int = 0) -> torch.Tensor:
        """Noise for frames ``[frame_start, frame_start + num_frames)`` at `step`: ``(B, C, f, H, W)``."""
        out = torch.empty(self.batch_size, self.channels, num_frames, self.height, self.width,
                          device=self.device, dtype=torch.float32)
        gen = torch.Generator(device=self.device)
        for b, seed in enumerate(self.seeds):
            for j in range(num_frames):
                gen.manual_seed(mix_seed(seed, frame_start + j, step))
                out[b, :, j] = torch.randn(self.channels, self.height, self.width, generator=gen,
                                           device=self.device, dtype=torch.float32)
        return out.to(self.dtype)
