"""ODE initialisation: teacher ODE trajectories (stored sharded, resumable), then causal regression.

Trajectories: the bidirectional teacher integrates the probability-flow ODE with Euler steps on
a shifted sigma grid, with classifier-free guidance, from noise (sigma 1) to a clean sample. For
each of the student's few-step timesteps the state on the grid closest to it is stored (with its
exact timestep), plus the final sample. Shards are safetensors files written atomically; a
``manifest.json`` lists them. Generation resumes shard by shard.

Regression: for each chunk a random stored state is picked; the causal student denoises the
whole K-frame sequence in one block-causal pass (`CausalWan.forward_full`) and regresses x0 on
the final ODE state. With ``[ode] clean_context = p`` each earlier chunk is, with probability p,
given as the clean final state at timestep 0 (what the KV cache holds at inference) and left out
of the loss.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from sfpp.noise import SeededNoise, mix_seed
from sfpp.schedule import shift_sigma, x0_from_flow
from sfpp.train.dmd import cfg_flow
from sfpp.train.networks import bidirectional_flow
from sfpp.train.sampling import P_ODE, slots, stage_generator
from sfpp.train.update import apply_update

P_TRAJ = 31


def euler_grid(steps: int, shift: float) -> torch.Tensor:
    """Sigmas sigma_0 = 1 > ... > sigma_{steps-1} > sigma_steps = 0 on Wan's shifted grid."""
    s = torch.tensor([1.0 - i / steps for i in range(steps)], dtype=torch.float64)
    return torch.cat([shift_sigma(s, shift), torch.zeros(1, dtype=torch.float64)])


def store_indices(grid: torch.Tensor, student_timesteps: list[float]) -> list[int]:
    """Grid index closest to each student timestep."""
    t = grid[:-1] * 1000.0
    return [int((t - ts).abs().argmin()) for ts in student_timesteps]


@torch.no_grad()
def teacher_trajectories(teacher, noise: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, *,
                         steps: int, shift: float, guidance: float, student_timesteps: list[float]):
    """Integrate the teacher ODE from `noise` (B, C, F, H, W).

    Returns states (B, S+1, C, F, H, W) at the student's steps plus the final sample, and the
    timesteps (B, S) of the stored states.
    """
    grid = euler_grid(steps, shift)
    keep = store_indices(grid, student_timesteps)
    x = noise.float()
    B = x.shape[0]
    stored = {}
    for i in range(steps):
        if i in keep:
            stored[i] = x.clone()
        t = torch.full((B,), float(grid[i] * 1000.0), device=x.device)
        v = cfg_flow(bidirectional_flow(teacher, x, t, cond), bidirectional_flow(teacher, x, t, uncond), guidance)
        x = x + float(grid[i + 1] - grid[i]) * v
    states = torch.stack([stored[i] for i in keep] + [x], dim=1)
    ts = torch.tensor([float(grid[i] * 1000.0) for i in keep]).expand(B, -1).contiguous()
    return states, ts


class ODEStage:
    """The ODE-initialisation stage: trajectory generation and the regression update.

    Holds what it needs explicitly (config, student, teacher, prompt embeddings, distributed
    context, trajectory folder, rollout sizes); the trainer owns the optimiser, schedule and EMA
    and passes them to `update`.
    """

    def __init__(self, cfg, *, student, teacher, data, dist, root: Path, k: int, chunk: int,
                 timesteps: list[float], latent_hw: tuple[int, int], on_log=None):
        self.cfg, self.student, self.teacher, self.data, self.dist = cfg, student, teacher, data, dist
        self.root, self.k, self.chunk, self.timesteps, self.latent_hw = Path(root), k, chunk, timesteps, latent_hw
        self.on_log = on_log
        self.store: TrajectoryStore | None = None
        self.accum = cfg.run.grad_accum  # micro-batches per update here (see `DMDStage.accum`)

    def ensure_trajectories(self, step: int = 0) -> "TrajectoryStore":
        """Generate missing trajectory shards (each rank its share), then write the manifest."""
        from safetensors.torch import save_file

        cfg, dist = self.cfg, self.dist
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        total, size = cfg.ode.num_trajectories, cfg.ode.shard_size
        n_shards = math.ceil(total / size)
        n_prompts = len(self.data)
        C, (H, W) = self.student.in_channels, self.latent_hw

        def batches(shard: int) -> int:
            """Teacher batches still to run for `shard` (0 when it is done or does not exist)."""
            if shard >= n_shards or (root / f"shard_{shard:05d}.safetensors").is_file():
                return 0
            return math.ceil((min(total, (shard + 1) * size) - shard * size) / cfg.run.batch_size)

        for first in range(0, n_shards, dist.world):  # one round: shards first .. first + world - 1, one per rank
            shard = first + dist.rank
            mine = batches(shard)
            # FSDP: the teacher's every forward is a collective, so all ranks run as many batches as the
            # busiest rank of the round (ranks with less to do run throw-away batches).
            rounds = max(batches(first + r) for r in range(dist.world)) if dist.fsdp else mine
            states, times, prompts = [], [], []
            ids = list(range(shard * size, min(total, (shard + 1) * size))) if mine else []
            for b in range(rounds):
                j = b * cfg.run.batch_size
                batch = ids[j : j + cfg.run.batch_size] or [0]  # [0]: a throw-away batch
                pidx = [i % n_prompts for i in batch]
                noise = SeededNoise([mix_seed(cfg.run.seed, P_TRAJ, i) for i in batch], channels=C, height=H, width=W,
                                    device=dist.device).sample(0, self.k)
                cond = self.data.cond[pidx].to(dist.device)
                uncond = self.data.uncond.expand(len(batch), -1, -1).to(dist.device)
                s, t = teacher_trajectories(self.teacher, noise, cond, uncond, steps=cfg.ode.teacher_steps,
                                            shift=cfg.ode.shift, guidance=cfg.ode.guidance_scale,
                                            student_timesteps=self.timesteps)
                if b < mine:
                    states.append(s.cpu())
                    times.append(t.cpu())
                    prompts.extend(pidx)
            if not mine:
                continue
            path = root / f"shard_{shard:05d}.safetensors"
            tmp = path.with_name(path.name + ".tmp")
            save_file({"states": torch.cat(states).contiguous(), "timesteps": torch.cat(times).contiguous(),
                       "prompt_index": torch.tensor(prompts, dtype=torch.int64)}, str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            if self.on_log is not None and dist.is_main:
                self.on_log({"step": step, "ode_shards": shard + 1, "ode_shards_total": n_shards})
        dist.barrier()
        if dist.is_main:
            manifest = {"num_trajectories": total, "shard_size": size,
                        "shards": [f"shard_{s:05d}.safetensors" for s in range(n_shards)],
                        "student_timesteps": self.timesteps, "teacher_steps": cfg.ode.teacher_steps,
                        "shift": cfg.ode.shift, "guidance_scale": cfg.ode.guidance_scale,
                        "latent_shape": [C, self.k, H, W], "layout": "states: (n, steps+1, C, F, H, W)"}
            tmp = root / "manifest.json.tmp"
            tmp.write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(tmp, root / "manifest.json")
        dist.barrier()
        self.store = TrajectoryStore(root)
        return self.store

    def update(self, opt, sched, ema, *, step: int, position: int) -> dict[str, float]:
        """One regression update of the causal student on stored trajectories."""
        cfg, dist = self.cfg, self.dist
        s = self.student
        store = self.store
        B, n_chunks, K, chunk = cfg.run.batch_size, self.k // self.chunk, self.k, self.chunk
        device = dist.device
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(self.accum):
            slot_ids = slots(micro, dist.rank, dist.world, B)
            idx = [int(i) for i in _indices(len(store), position + slot_ids[0], B, cfg.run.seed)]
            items = [store.get(i) for i in idx]
            states = torch.stack([it[0] for it in items]).to(device)  # (B, S+1, C, K, H, W)
            times = torch.stack([it[1] for it in items]).to(device)  # (B, S)
            cond = self.data.cond[[it[2] for it in items]].to(device)
            S = times.shape[1]
            picks, cleans = [], []
            for j in slot_ids:  # each sample's draws from its own slot's generator
                g = stage_generator(cfg.run.seed, "ode", step, P_ODE, 0, j)
                picks.append(torch.randint(S, (1, n_chunks), generator=g))  # a stored state per chunk
                cleans.append(torch.rand(1, n_chunks, generator=g))
            pick = torch.cat(picks)  # (B, n_chunks)
            # clean context: earlier chunks (never the last) replaced by the final state (index S, t = 0)
            clean = torch.cat(cleans) < cfg.ode.clean_context  # (B, n_chunks)
            clean[:, -1] = False
            pick = torch.where(clean, torch.full_like(pick, S), pick).to(device)
            frame_pick = pick.repeat_interleave(chunk, dim=1)  # (B, K)
            b_idx = torch.arange(B, device=device)[:, None]
            f_idx = torch.arange(K, device=device)[None, :]
            x_in = states.permute(0, 1, 3, 2, 4, 5)[b_idx, frame_pick, f_idx]  # (B, K, C, H, W)
            x_in = x_in.permute(0, 2, 1, 3, 4).contiguous()  # (B, C, K, H, W)
            times = torch.cat([times, torch.zeros_like(times[:, :1])], dim=1)  # (B, S+1): the clean state at t = 0
            t = times[b_idx, frame_pick]  # (B, K)
            target = states[:, -1]  # (B, C, K, H, W)
            weight = (frame_pick < S).to(target.dtype)[:, None, :, None, None]  # (B, 1, K, 1, 1): noisy frames only
            with dist.autocast():
                text = s.encode_text(cond.to(next(s.parameters()).dtype))
                flow = s.forward_full(x_in.to(next(s.parameters()).dtype), t, text,
                                      chunk_sizes=[chunk] * n_chunks).float()
                x0 = x0_from_flow(x_in, flow, t)
                err = (x0 - target).pow(2) * weight
                per_frame = target.shape[1] * target.shape[3] * target.shape[4]  # C * H * W values per frame
                loss = err.sum() / (weight.sum() * per_frame)  # = MSE when no chunk is clean
            (loss / self.accum).backward()
            loss_sum += loss.item()
        gnorm = apply_update(s, opt, sched, dist=dist, grad_clip=cfg.optim.grad_clip, ema=ema,
                             ema_module=s.transformer, step=step)
        return {"ode_loss": dist.mean(loss_sum / self.accum), "gen_grad_norm": gnorm}

class TrajectoryStore:
    """Lazy reader of trajectory shards: one trajectory at a time, never the whole set in memory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest = json.loads((self.root / "manifest.json").read_text())
        self.size = self.manifest["shard_size"]

    def __len__(self) -> int:
        return self.manifest["num_trajectories"]

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        from safetensors import safe_open

        shard, j = divmod(i, self.size)
        with safe_open(str(self.root / self.manifest["shards"][shard]), framework="pt") as f:
            return (f.get_slice("states")[j], f.get_slice("timesteps")[j], int(f.get_slice("prompt_index")[j]))


def _indices(n: int, position: int, count: int, seed: int) -> list[int]:
    from sfpp.prompts import epoch_indices

    return epoch_indices(n, position, count, seed, salt=91)
