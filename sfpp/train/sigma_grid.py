"""Which sigma the DMD and critic losses use: sfpp's exact sigma = t / 1000, or the reference's grids.

sfpp (`sfpp.train.dmd`, `sfpp.schedule`) ties every step of the DMD and critic losses to one number,
sigma = t / 1000, where t is the timestep the networks are conditioned on: noising
x_t = (1 - sigma) x0 + sigma eps, conversion x0 = x_t - sigma v, and the critic target eps - x0
compared with the raw network flow v. The functions here reproduce, as pure functions of t, the
sigmas that the public Self-Forcing training code (guandeh17/Self-Forcing, checked at commit
33593df3e81fa3ec10239271dd2c100facac6de1) ends up using instead, so that the two can be compared or
the reference reproduced ("self-forcing" mode).

How the reference arrives at its sigmas
---------------------------------------
* Grids. Its flow-matching scheduler (guandeh17/Self-Forcing utils/scheduler.py, FlowMatchScheduler)
  is built by every score/generator wrapper (utils/wan_wrapper.py, WanDiffusionWrapper.__init__) with
  sigma_min = 0, extra_one_step = True and then set to 1000 training steps. That yields 1000 float32
  points u_i = 1 - i/1000 (i = 0..999, so u runs 1.0 .. 0.001 and never reaches 0), shifted with
  Wan's shift, sigma_i = shift u_i / (1 + (shift - 1) u_i), and timesteps_i = 1000 sigma_i. Every
  look-up rounds the requested timestep to the nearest grid timestep (argmin of |grid - t|, first
  index on ties, i.e. the larger timestep) and uses that point's sigma. `flowmatch_grid` and `snap`.
* Two different shifts. The generator wrapper gets `timestep_shift: 5.0` from the config's
  model_kwargs (configs/self_forcing_dmd.yaml), and the DMD model's scheduler *is* the generator's
  (model/base.py, `self.scheduler = self.generator.get_scheduler()`). The real- and fake-score
  wrappers are built without model_kwargs (model/base.py `_initialize_models`), so they keep the
  wrapper's default shift 8.0 (utils/wan_wrapper.py). Noising (model/dmd.py `add_noise` calls in
  `compute_distribution_matching_loss` and `critic_loss`) therefore uses the shift-5 grid, while the
  scores' flow -> x0 conversion (WanDiffusionWrapper._convert_flow_pred_to_x0) uses the shift-8 grid.
* The timesteps themselves are sampled as in sfpp (integer k in [0, 1000), shifted by 5, clamped to
  [20, 980], float32; model/dmd.py). Shifted integers k/1000 are exactly shift-5 grid points, so the
  noising sigma is t / 1000 up to float32 rounding except at the clamps (t = 20 snaps to 19.685,
  t = 980 to 979.905). The shift-8 grid is much coarser at small t (about 7.7 timesteps apart near
  t = 20, against about 4.8 for shift 5), so the score-side sigma can be off by up to ~20%.
* bf16 timesteps. With `mixed_precision: true` (the released DMD config) the score wrappers are FSDP
  roots whose MixedPrecision keeps torch's default cast_root_forward_inputs=True, so every float
  input, the timestep included, is cast to bfloat16 on entry (utils/distributed.py `fsdp_wrap`).
  The networks thus see bf16(t) (e.g. 871.2 -> 872, 681.8 -> 680) and the shift-8 snap starts from
  bf16(t). Noising and the critic's flow re-derivation happen outside the wrappers, on float32 t.
* The critic loss with `denoising_loss_type: flow` (model/dmd.py `critic_loss`, utils/loss.py
  FlowPredLoss) does not compare the raw network flow: it takes the fake score's x0 (shift-8 sigma)
  and turns it back into a flow with the generator's shift-5 scheduler
  (WanDiffusionWrapper._convert_x0_to_flow_pred), then regresses that on eps - x0. The quantity
  regressed is (sigma8 / sigma5) * v, see `critic_flow_scale`.

Why exact sigma is the self-consistent choice
---------------------------------------------
The teacher was trained on x_t = (1 - t/1000) x0 + (t/1000) eps while conditioned on t, so its flow
output means "eps - x0 at sigma = t / 1000". Converting it to x0 with any other sigma biases the
teacher's x0, and in the reference that bias does not cancel: the critic, having learnt
v / (sigma8/sigma5), gives back a consistent x0 when multiplied by sigma8 again in the DMD step, but the
teacher's x0 = x_t - sigma8 v_real does not, so the DMD direction keeps a term (sigma8 - sigma5) v_real
that is nonzero even when the generator matches the data. With sigma = t / 1000 everywhere the noising,
both x0 conversions and the critic target describe the same forward process, the critic's minimiser is
the generator distribution's true flow, and the DMD direction vanishes at the fixed point.

Conventions: t is on 0..1000 (any shape); returned sigmas are float64 tensors of t's shape (in
"self-forcing" mode they hold the reference's float32 grid values exactly), so `1000 * sigma` is the
timestep to hand to `sfpp.schedule.add_noise` / `x0_from_flow` to reproduce a given mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sfpp.schedule import NUM_TRAIN_TIMESTEPS, shift_sigma

Mode = Literal["exact", "self-forcing"]
MODES: tuple[str, ...] = ("exact", "self-forcing")

GRID_STEPS = 1000
NOISE_SHIFT = 5.0  # the reference's generator scheduler (config model_kwargs.timestep_shift)
SCORE_SHIFT = 8.0  # the reference's real/fake score wrappers (WanDiffusionWrapper default)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown sigma mode {mode!r}; expected one of {MODES}")


def _as_t(t: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float32) if not isinstance(t, torch.Tensor) else t


def flowmatch_grid(shift: float, steps: int = GRID_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference scheduler's training grid: (timesteps, sigmas), float32, descending, `steps` points.

    u = linspace(1, 0, steps + 1) without its last point (0), sigma = shift u / (1 + (shift - 1) u),
    timesteps = 1000 sigma. Point 0 is (1000, 1); the last is 1000 shift(1 / steps), about 4.98 for
    shift 5, so the grid never reaches t = 0.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)[:-1]
    sigmas = shift_sigma(u, shift)
    return sigmas * NUM_TRAIN_TIMESTEPS, sigmas


def snap(t: torch.Tensor | float, shift: float, steps: int = GRID_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest grid point to timestep(s) t on the shift-`shift` grid: (t_grid, sigma_grid), float64, t's shape.

    Distances are taken in float64 (ties go to the first, i.e. larger, grid timestep), as the
    reference's wrappers do; its `add_noise` takes them in float32, which can only differ at exact
    midpoints between two grid points.
    """
    t = _as_t(t)
    timesteps, sigmas = flowmatch_grid(shift, steps)
    flat = t.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    idx = torch.argmin((timesteps.double().unsqueeze(0) - flat.unsqueeze(1)).abs(), dim=1)
    shape = t.shape
    return (timesteps.double()[idx].reshape(shape).to(t.device),
            sigmas.double()[idx].reshape(shape).to(t.device))


def bf16_timestep(t: torch.Tensor | float) -> torch.Tensor:
    """A float32 timestep after FSDP's root input cast to bfloat16 (returned as float32)."""
    return _as_t(t).float().to(torch.bfloat16).float()


def network_timestep(t: torch.Tensor | float, mode: Mode = "exact", *, bf16: bool = True) -> torch.Tensor:
    """The timestep the score networks are conditioned on: t ("exact"); bf16(t) in "self-forcing" mode
    under mixed precision (`bf16=False`: the reference run in float32, t unchanged). Never snapped."""
    _check_mode(mode)
    t = _as_t(t).float()
    return bf16_timestep(t) if (mode == "self-forcing" and bf16) else t


def noise_sigma(t: torch.Tensor | float, mode: Mode = "exact", *, shift: float = NOISE_SHIFT) -> torch.Tensor:
    """Sigma of the forward process x_t = (1 - sigma) x + sigma eps, in the DMD and the critic step alike.

    "exact": t / 1000. "self-forcing": the shift-5 grid sigma nearest to float32 t (the generator's
    scheduler, model/dmd.py add_noise).
    """
    _check_mode(mode)
    t = _as_t(t)
    if mode == "exact":
        return t.double() / NUM_TRAIN_TIMESTEPS
    return snap(t.float(), shift)[1]


def score_sigma(t: torch.Tensor | float, mode: Mode = "exact", *, shift: float = SCORE_SHIFT,
                bf16: bool = True) -> torch.Tensor:
    """Sigma with which a score network's flow v becomes x0 = x_t - sigma v (teacher, CFG'd teacher, critic).

    "exact": t / 1000. "self-forcing": the shift-8 grid sigma nearest to the timestep the wrapper
    receives, bf16(t) under mixed precision (`bf16=False` for a float32 run).
    """
    _check_mode(mode)
    t = _as_t(t)
    if mode == "exact":
        return t.double() / NUM_TRAIN_TIMESTEPS
    return snap(network_timestep(t, mode, bf16=bf16), shift)[1]


def critic_flow_sigma(t: torch.Tensor | float, mode: Mode = "exact", *, shift: float = NOISE_SHIFT) -> torch.Tensor:
    """Sigma with which the critic loss turns the critic's x0 back into a flow, (x_t - x0) / sigma.

    "exact": t / 1000 (sfpp compares the raw flow, which is the same thing). "self-forcing": the
    shift-5 grid sigma of float32 t (the generator's scheduler passed to _convert_x0_to_flow_pred).
    """
    return noise_sigma(t, mode, shift=shift)


def critic_flow_scale(t: torch.Tensor | float, mode: Mode = "exact", *, noise_shift: float = NOISE_SHIFT,
                      score_shift: float = SCORE_SHIFT, bf16: bool = True) -> torch.Tensor:
    """Factor r with which the critic loss sees the network's flow: loss = mean((r v - (eps - x0))^2).

    1 in "exact" mode; sigma8 / sigma5 = score_sigma / critic_flow_sigma in "self-forcing" mode.
    """
    return (score_sigma(t, mode, shift=score_shift, bf16=bf16)
            / critic_flow_sigma(t, mode, shift=noise_shift))


@dataclass(frozen=True, eq=False)
class SigmaPlan:
    """Everything one DMD / critic step needs for timesteps t (each tensor has t's shape).

    net_t: timestep the networks are called with; noise: forward-process sigma; score: sigma of the
    flow -> x0 conversion of every score network; critic_flow: sigma of the critic's x0 -> flow.
    """

    mode: str
    net_t: torch.Tensor
    noise: torch.Tensor
    score: torch.Tensor
    critic_flow: torch.Tensor

    @property
    def flow_scale(self) -> torch.Tensor:
        """The critic loss's effective flow factor score / critic_flow (1 in "exact" mode)."""
        return self.score / self.critic_flow


def sigma_plan(t: torch.Tensor | float, mode: Mode = "exact", *, noise_shift: float = NOISE_SHIFT,
               score_shift: float = SCORE_SHIFT, bf16: bool = True) -> SigmaPlan:
    """The `SigmaPlan` of timesteps t in `mode` ("exact" or "self-forcing")."""
    return SigmaPlan(
        mode=mode,
        net_t=network_timestep(t, mode, bf16=bf16),
        noise=noise_sigma(t, mode, shift=noise_shift),
        score=score_sigma(t, mode, shift=score_shift, bf16=bf16),
        critic_flow=critic_flow_sigma(t, mode, shift=noise_shift),
    )
