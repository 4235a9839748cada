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
import torch.nn.functional as F

from sfpp.noise import SeededNoise, mix_seed
from sfpp.schedule import shift_sigma, x0_from_flow
from sfpp.train.dmd import cfg_flow

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
    from sfpp.train.trainer import bidirectional_flow

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


def ensure_trajectories(tr) -> Path:
    """Generate missing trajectory shards (each rank its share), then write the manifest."""
    from safetensors.torch import save_file

    cfg = tr.cfg
    root = tr.dir / "trajectories"
    root.mkdir(parents=True, exist_ok=True)
    total, size = cfg.ode.num_trajectories, cfg.ode.shard_size
    n_shards = math.ceil(total / size)
    n_prompts = len(tr.data)
    C, (H, W) = tr.nets.student.in_channels, tr.latent_hw
    def batches(shard: int) -> int:
        """Teacher batches still to run for `shard` (0 when it is done or does not exist)."""
        if shard >= n_shards or (root / f"shard_{shard:05d}.safetensors").is_file():
            return 0
        return math.ceil((min(total, (shard + 1) * size) - shard * size) / cfg.run.batch_size)

    for first in range(0, n_shards, tr.world):  # one round: shards first .. first + world - 1, one per rank
        shard = first + tr.rank
        mine = batches(shard)
        # FSDP: the teacher's every forward is a collective, so all ranks run as many batches as the
        # busiest rank of the round (ranks with less to do run throw-away batches).
        rounds = max(batches(first + r) for r in range(tr.world)) if tr.fsdp else mine
        states, times, prompts = [], [], []
        ids = list(range(shard * size, min(total, (shard + 1) * size))) if mine else []
        for b in range(rounds):
            j = b * cfg.run.batch_size
            batch = ids[j : j + cfg.run.batch_size] or [0]  # [0]: a throw-away batch
            pidx = [i % n_prompts for i in batch]
            noise = SeededNoise([mix_seed(cfg.run.seed, P_TRAJ, i) for i in batch], channels=C, height=H, width=W,
                                device=tr.device).sample(0, tr.K)
            cond = tr.data.cond[pidx].to(tr.device)
            uncond = tr.data.uncond.expand(len(batch), -1, -1).to(tr.device)
            s, t = teacher_trajectories(tr.nets.teacher, noise, cond, uncond, steps=cfg.ode.teacher_steps,
                                        shift=cfg.ode.shift, guidance=cfg.ode.guidance_scale,
                                        student_timesteps=tr.timesteps)
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
        if tr.on_log is not None and tr.acc.is_main_process:
            tr.on_log({"step": tr.step, "ode_shards": shard + 1, "ode_shards_total": n_shards})
    tr.acc.wait_for_everyone()
    if tr.acc.is_main_process:
        manifest = {"num_trajectories": total, "shard_size": size,
                    "shards": [f"shard_{s:05d}.safetensors" for s in range(n_shards)],
                    "student_timesteps": tr.timesteps, "teacher_steps": cfg.ode.teacher_steps,
                    "shift": cfg.ode.shift, "guidance_scale": cfg.ode.guidance_scale,
                    "latent_shape": [C, tr.K, H, W], "layout": "states: (n, steps+1, C, F, H, W)"}
        tmp = root / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, root / "manifest.json")
    tr.acc.wait_for_everyone()
    tr.trajectories = TrajectoryStore(root)
    return root


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


def ode_regression_update(tr) -> dict[str, float]:
    """One regression update of the causal student on stored trajectories."""
    from sfpp.train.trainer import P_ODE

    cfg = tr.cfg
    s = tr.nets.student
    store: TrajectoryStore = tr.trajectories
    B, n_chunks = cfg.run.batch_size, tr.K // tr.chunk
    tr.opt_g.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for micro in range(cfg.run.grad_accum):
        start = tr.position + (micro * tr.world + tr.rank) * B
        idx = [int(i) for i in _indices(len(store), start, B, cfg.run.seed)]
        items = [store.get(i) for i in idx]
        states = torch.stack([it[0] for it in items]).to(tr.device)  # (B, S+1, C, K, H, W)
        times = torch.stack([it[1] for it in items]).to(tr.device)  # (B, S)
        cond = tr.data.cond[[it[2] for it in items]].to(tr.device)
        S = times.shape[1]
        g = tr._gen(P_ODE, tr.rank, micro)
        pick = torch.randint(S, (B, n_chunks), generator=g)  # a stored state per chunk
        # clean context: earlier chunks (never the last) replaced by the final state (index S, t = 0)
        clean = torch.rand(B, n_chunks, generator=g) < cfg.ode.clean_context  # (B, n_chunks)
        clean[:, -1] = False
        pick = torch.where(clean, torch.full_like(pick, S), pick).to(tr.device)
        frame_pick = pick.repeat_interleave(tr.chunk, dim=1)  # (B, K)
        b_idx = torch.arange(B, device=tr.device)[:, None]
        f_idx = torch.arange(tr.K, device=tr.device)[None, :]
        x_in = states.permute(0, 1, 3, 2, 4, 5)[b_idx, frame_pick, f_idx]  # (B, K, C, H, W)
        x_in = x_in.permute(0, 2, 1, 3, 4).contiguous()  # (B, C, K, H, W)
        times = torch.cat([times, torch.zeros_like(times[:, :1])], dim=1)  # (B, S+1): the clean state at t = 0
        t = times[b_idx, frame_pick]  # (B, K)
        target = states[:, -1]  # (B, C, K, H, W)
        weight = (frame_pick < S).to(target.dtype)[:, None, :, None, None]  # (B, 1, K, 1, 1): noisy frames only
        with tr.acc.autocast():
            text = s.encode_text(cond.to(next(s.parameters()).dtype))
            flow = s.forward_full(x_in.to(next(s.parameters()).dtype), t, text,
                                  chunk_sizes=[tr.chunk] * n_chunks).float()
            x0 = x0_from_flow(x_in, flow, t)
            err = (x0 - target).pow(2) * weight
            per_frame = target.shape[1] * target.shape[3] * target.shape[4]  # C * H * W values per frame
            loss = err.sum() / (weight.sum() * per_frame)  # = MSE when no chunk is clean
        (loss / cfg.run.grad_accum).backward()
        loss_sum += loss.item()
    params = [p for p in s.parameters() if p.requires_grad]
    tr._sync_grads(params)
    gnorm = tr._clip(params)
    tr.opt_g.step()
    tr.sched_g.step()
    tr._update_ema()
    return {"ode_loss": loss_sum / cfg.run.grad_accum, "gen_grad_norm": gnorm}


def _indices(n: int, position: int, count: int, seed: int) -> list[int]:
    from sfpp.prompts import epoch_indices

    return epoch_indices(n, position, count, seed, salt=91)
