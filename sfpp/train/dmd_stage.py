"""The DMD stages (``self-forcing`` and ``extended``): one generator update and the critic updates.

Generator: a student sample (`sfpp.train.sampling.generator_sample`) is noised to a DMD
timestep; the critic (fake score) and the CFG-guided teacher (real score) give their x0
predictions, and the DMD loss moves the sample along their difference (`sfpp.train.dmd`).
Critic: the flow-matching loss on samples drawn the same way, without gradient to the student.
Each update goes through `sfpp.train.update.apply_update` (sync -> clip -> step -> schedule -> EMA).
"""

from __future__ import annotations

from typing import Any

import torch

from sfpp.train.dmd import critic_step_loss, dmd_loss, dmd_step, sample_dmd_timesteps
from sfpp.train.networks import bidirectional_flow
from sfpp.train.sampling import (P_CRITIC, P_DMD, P_GEN, P_SHARED, draw_rollout, generator_sample, slots,
                                 stage_generator, stage_noise)
from sfpp.train.update import apply_update


class DMDStage:
    """Holds what the DMD updates need explicitly; the trainer owns optimisers, schedules and the EMA."""

    def __init__(self, cfg, *, stage: str, nets, data, dist, rollout, cache_cfg, latent_hw: tuple[int, int]):
        self.cfg, self.stage, self.nets, self.data, self.dist = cfg, stage, nets, data, dist
        self.rollout, self.cache_cfg, self.latent_hw = rollout, cache_cfg, latent_hw
        self.k, self.chunk = rollout.window, rollout.chunk_frames
        self.timesteps = list(rollout.shifted_timesteps)
        self.bf16 = cfg.run.mixed_precision == "bf16"  # the reference's networks see bf16 timesteps then
        # micro-batches per update on this process; the trainer raises it when a run resumes on fewer
        # processes than it was saved with, so the global batch (and every draw) stays the same
        self.accum = cfg.run.grad_accum

    # ------------------------------------------------------------------ draws and samples
    def draws(self, step: int, purpose: int) -> dict[str, int]:
        """Exit step, N, window start and backward-noise level: identical on every rank."""
        g = stage_generator(self.cfg.run.seed, self.stage, step, P_SHARED, purpose)
        return draw_rollout(g, stage=self.stage, step=step, n_steps=len(self.timesteps), k=self.k, chunk=self.chunk,
                            exit_mode=self.cfg.rollout.exit_step, extended=self.cfg.extended)

    def slots(self, micro: int) -> list[int]:
        return slots(micro, self.dist.rank, self.dist.world, self.cfg.run.batch_size)

    def batch(self, position: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Prompt embeddings of one micro-batch: (cond, uncond, prompt indices)."""
        B, dist = self.cfg.run.batch_size, self.dist
        start = position + self.slots(micro)[0]
        idx = self.data.indices(start, B, self.cfg.run.seed)
        cond = self.data.cond[idx].to(dist.device)
        uncond = self.data.uncond.expand(B, -1, -1).to(dist.device)
        return cond, uncond, idx

    def noise(self, step: int, purpose: int, micro: int):
        return stage_noise(self.cfg.run.seed, self.stage, step, purpose, self.slots(micro),
                           channels=self.nets.student.in_channels, latent_hw=self.latent_hw, device=self.dist.device)

    def sample(self, text, noise, draws: dict[str, Any], *, with_grad: bool) -> torch.Tensor:
        """The K-frame student sample that DMD scores: ``(B, C, K, H, W)``."""
        s = self.nets.student
        cache = s.new_cache(self.cache_cfg, batch_size=noise.batch_size, latent_hw=self.latent_hw)
        return generator_sample(s, text, noise, cache=cache, draws=draws, k=self.k, chunk=self.chunk,
                                timesteps=self.timesteps, context_noise=self.rollout.context_noise,
                                extended=self.stage == "extended", with_grad=with_grad)

    def dmd_draws(self, step: int, purpose: int, micro: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's DMD timestep (B,) and noise (B, ...) from its own slot's generator."""
        d = self.cfg.dmd
        ts, eps = [], []
        for j in self.slots(micro):
            g = stage_generator(self.cfg.run.seed, self.stage, step, P_DMD, purpose, 0, j)  # its own generator
            ts.append(sample_dmd_timesteps(1, g, min_step=d.min_step, max_step=d.max_step, shift=d.timestep_shift))
            eps.append(torch.randn((1, *shape[1:]), generator=g))
        return torch.cat(ts).to(self.dist.device), torch.cat(eps).to(self.dist.device)

    # ------------------------------------------------------------------ updates
    def generator_update(self, opt, sched, ema, *, step: int, position: int) -> dict[str, float]:
        cfg, nets = self.cfg, self.nets
        draws = self.draws(step, P_GEN)
        opt.zero_grad(set_to_none=True)
        loss_sum, norm_sum = 0.0, 0.0
        for micro in range(self.accum):
            cond, uncond, _ = self.batch(position, micro)
            with self.dist.autocast():
                text = nets.student.encode_text(cond.to(next(nets.student.parameters()).dtype))
                x = self.sample(text, self.noise(step, P_GEN, micro), draws, with_grad=True)
                t, eps = self.dmd_draws(step, P_GEN, micro, x.shape)
                with torch.no_grad():
                    direction, normaliser = dmd_step(
                        x.detach(), eps, t, guidance_scale=cfg.dmd.guidance_scale, sigma_grid=cfg.dmd.sigma_grid,
                        bf16=self.bf16,
                        fake_flow=lambda x_t, tn: bidirectional_flow(nets.critic, x_t, tn, cond),
                        real_flow_cond=lambda x_t, tn: bidirectional_flow(nets.teacher, x_t, tn, cond),
                        real_flow_uncond=lambda x_t, tn: bidirectional_flow(nets.teacher, x_t, tn, uncond))
                loss = dmd_loss(x, direction)
            (loss / self.accum).backward()
            loss_sum += loss.item()
            norm_sum += normaliser.mean().item()
        gnorm = apply_update(nets.student, opt, sched, dist=self.dist, grad_clip=cfg.optim.grad_clip, ema=ema,
                             ema_module=nets.student.transformer, step=step)
        n = self.accum
        d = self.dist  # losses are means over the global batch (every process's samples)
        return {"gen_loss": d.mean(loss_sum / n), "gen_grad_norm": gnorm, "dmd_normaliser": d.mean(norm_sum / n),
                **draws}

    def critic_update(self, k: int, opt, sched, *, step: int, position: int) -> dict[str, float]:
        cfg, nets = self.cfg, self.nets
        purpose = P_CRITIC * 100 + k
        draws = self.draws(step, purpose)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(self.accum):
            cond, _, _ = self.batch(position, micro + self.accum * (k + 1))
            with self.dist.autocast():
                with torch.no_grad():
                    text = nets.student.encode_text(cond.to(next(nets.student.parameters()).dtype))
                    x = self.sample(text, self.noise(step, purpose, micro), draws, with_grad=False).float()
                t, eps = self.dmd_draws(step, purpose, micro, x.shape)
                loss = critic_step_loss(x, eps, t, sigma_grid=cfg.dmd.sigma_grid, bf16=self.bf16,
                                        critic_flow=lambda x_t, tn: bidirectional_flow(nets.critic, x_t, tn, cond))
            (loss / self.accum).backward()
            loss_sum += loss.item()
        gnorm = apply_update(nets.critic, opt, sched, dist=self.dist, grad_clip=cfg.optim.grad_clip)
        return {"critic_loss": self.dist.mean(loss_sum / self.accum), "critic_grad_norm": gnorm}
