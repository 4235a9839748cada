"""Few-step flow-matching schedules and the re-noising step: pure functions of tensors.

Conventions (Wan / Self-Forcing): timesteps t on a 0..1000 scale, sigma = t / 1000,
x_t = (1 - sigma) * x0 + sigma * eps, and the network predicts the flow v = eps - x0,
so x0 = x_t - sigma * v.
"""

from __future__ import annotations

from typing import Sequence

import torch

NUM_TRAIN_TIMESTEPS = 1000.0


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Wan's timestep shift: shift * s / (1 + (shift - 1) * s)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def few_step_timesteps(nominal: Sequence[float], shift: float) -> torch.Tensor:
    """Warp a nominal few-step list with the shift: [1000, 750, 500, 250], 5 -> [1000, 937.5, 833.3, 625].

    The defaults of both live on `sfpp.rollout_config.RolloutConfig` (`shifted_timesteps`)."""
    s = torch.tensor([float(t) for t in nominal], dtype=torch.float64) / NUM_TRAIN_TIMESTEPS
    return (shift_sigma(s, shift) * NUM_TRAIN_TIMESTEPS).to(torch.float32)


def sigma_of(t: torch.Tensor | float) -> torch.Tensor | float:
    return t / NUM_TRAIN_TIMESTEPS


def x0_from_flow(x_t: torch.Tensor, flow: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x0 = x_t - sigma * v; t is a scalar, per sample (B,) or per frame (B, F) for (B, C, F, H, W) latents."""
    return x_t - _bcast(sigma_of(t), x_t) * flow


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - sigma) * x0 + sigma * eps."""
    s = _bcast(sigma_of(t), x0)
    return (1 - s) * x0 + s * noise


def _bcast(s, like: torch.Tensor):
    if isinstance(s, torch.Tensor) and s.ndim == 2:  # (B, F) -> (B, 1, F, 1, 1)
        return s[:, None, :, None, None].to(like.dtype)
    if isinstance(s, torch.Tensor) and s.ndim == 1 and like.ndim > 1:  # (B,) -> (B, 1, 1, 1, 1)
        return s.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)
    if isinstance(s, torch.Tensor):
        return s.to(like.dtype)
    return s
