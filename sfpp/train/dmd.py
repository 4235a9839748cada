"""Distribution matching distillation (DMD) and the critic's flow-matching loss: pure functions.

Conventions as in `sfpp.schedule`: x_t = (1 - s) x0 + s eps with s = t / 1000; denoisers are
compared through their x0 predictions.

DMD (Yin et al.; Self-Forcing's implementation):
    grad = (fake_x0 - real_x0) / mean|x - real_x0|        (mean per sample over all other dims)
    loss = 0.5 * mse(x, stopgrad(x - grad))               -> d loss / d x = grad / numel(x)
`fake_x0 - real_x0` is (s^2 / (1 - s)) times the score difference s_fake - s_real at x_t, so
descending this loss moves generated samples along the score of the real distribution and
against that of the generator's own (the critic's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sfpp.schedule import shift_sigma


def sample_dmd_timesteps(batch: int, gen: torch.Generator, *, min_step: float = 0.02, max_step: float = 0.98,
                         shift: float = 5.0) -> torch.Tensor:
    """One timestep per sample (shared by all frames): uniform integer, shifted, clamped. Shape (B,)."""
    t = torch.randint(0, 1000, (batch,), generator=gen).double() / 1000.0
    t = shift_sigma(t, shift).clamp(min_step, max_step)
    return (t * 1000.0).float()


def dmd_direction(x: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised DMD gradient w.r.t. x and its per-sample normaliser (B,)."""
    dims = tuple(range(1, x.ndim))
    normaliser = (x - real_x0).abs().mean(dim=dims, keepdim=True)
    grad = (fake_x0 - real_x0) / normaliser
    return torch.nan_to_num(grad), normaliser.flatten()


def dmd_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 * MSE(x, stopgrad(x - grad)) in float64; its gradient w.r.t. x is grad / numel(x)."""
    return 0.5 * F.mse_loss(x.double(), (x.double() - grad.double()).detach(), reduction="mean")


def critic_flow_loss(flow_pred: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Flow-matching loss of the fake-score network: MSE(v_pred, eps - x0)."""
    return F.mse_loss(flow_pred.float(), (noise - x0).float())


def cfg_flow(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance in Wan's convention: uncond + g (cond - uncond)."""
    return uncond + guidance_scale * (cond - uncond)
