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

from sfpp.schedule import add_noise, shift_sigma, x0_from_flow


def sample_dmd_timesteps(batch: int, gen: torch.Generator, *, min_step: float, max_step: float,
                         shift: float) -> torch.Tensor:
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


# ---------------------------------------------------------------------- one DMD / critic step, either sigma convention
SIGMA_GRIDS = ("exact", "self-forcing")


def _plan(t: torch.Tensor, sigma_grid: str, bf16: bool):
    """(network timestep, noising timestep, score timestep, critic flow scale) for timesteps t (B,).

    Timesteps here are "the t whose sigma = t / 1000 is used" (what `add_noise` / `x0_from_flow` take).
    """
    if sigma_grid == "exact":
        return t, t, t, None
    from sfpp.train.sigma_grid import sigma_plan

    p = sigma_plan(t, sigma_grid, bf16=bf16)
    f32 = lambda s: (s * 1000.0).to(t.device, torch.float32)  # noqa: E731 - sigma -> its timestep
    return p.net_t.to(t.device), f32(p.noise), f32(p.score), p.flow_scale.to(t.device, torch.float32)


def dmd_step(x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, *, fake_flow, real_flow_cond, real_flow_uncond,
             guidance_scale: float, sigma_grid: str = "exact", bf16: bool = False):
    """The DMD direction of samples x (B, C, F, H, W) at DMD timesteps t (B,), under no_grad.

    ``*_flow(x_t, t_net) -> flow`` are the critic and the teacher (cond / uncond). ``sigma_grid``:
    ``exact`` (sigma = t / 1000 everywhere, sfpp's choice) or ``self-forcing`` (the released
    Self-Forcing code's shift-5 noising and shift-8 score sigmas, and bf16 network timesteps when
    ``bf16``; `sfpp.train.sigma_grid`). Returns (direction, per-sample normaliser).
    """
    net_t, noise_t, score_t, _ = _plan(t, sigma_grid, bf16)
    x_t = add_noise(x, eps, noise_t)
    fake_x0 = x0_from_flow(x_t, fake_flow(x_t, net_t), score_t)
    real = cfg_flow(real_flow_cond(x_t, net_t), real_flow_uncond(x_t, net_t), guidance_scale)
    real_x0 = x0_from_flow(x_t, real, score_t)
    return dmd_direction(x.float(), real_x0, fake_x0)


def critic_step_loss(x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, *, critic_flow, sigma_grid: str = "exact",
                     bf16: bool = False) -> torch.Tensor:
    """The critic's flow-matching loss on samples x at timesteps t (gradient flows into `critic_flow`).

    ``self-forcing``: the reference regresses (sigma8 / sigma5) v, its critic's x0 turned back into a
    flow with the generator's scheduler, on eps - x0.
    """
    net_t, noise_t, _, scale = _plan(t, sigma_grid, bf16)
    x_t = add_noise(x, eps, noise_t)
    v = critic_flow(x_t, net_t)
    if scale is not None:
        v = v * scale.view(-1, *([1] * (v.ndim - 1)))
    return critic_flow_loss(v, eps, x)
