"""The distillation loop: ODE regression, Self-Forcing DMD and Self-Forcing++ extended DMD.

Every generator sample goes through `sfpp.rollout.rollout` (the same function as inference);
the stages differ only in what they roll out and which forwards keep gradient:

* ``self-forcing``: roll out K latent frames (the teacher horizon) from noise; the exit step
  (last, or random and shared by all chunks) of every chunk keeps gradient.
* ``extended``: draw N in [K, N_max] (whole chunks) and a window start i in 0..N-K; roll out
  frames [0, i) without gradient (the rolling KV cache holds their context, window L = K);
  roll out the window [i, i+K) without gradient to get the student's clean frames; re-noise them
  to a level of the few-step list (backward noise initialisation) and re-denoise the window
  chunk by chunk from the same cache state, keeping gradient only at the exit step. Frames after
  the window cannot influence it (the student is causal), so they are not generated.
* DMD on the K-frame sample against the CFG-guided bidirectional teacher; the critic is trained
  with the flow-matching loss on samples drawn the same way (no gradient).

Randomness: every draw is a function of (run seed, stage, step, purpose[, rank, micro-batch]),
so the exit step, N and the window start are identical on every rank without communication,
and a resumed run draws exactly what an uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sfpp.causal import CausalWan, TextContext
from sfpp.checkpoints import load_into, read_checkpoint
from sfpp.config_io import to_dict
from sfpp.errors import SfppError
from sfpp.noise import SeededNoise, mix_seed
from sfpp.presets import get_preset, load_components, load_diffusers_components, transformer_config
from sfpp.rollout import GradPolicy, rollout
from sfpp.rollout_config import resolve_rollout
from sfpp.schedule import add_noise, x0_from_flow
from sfpp.text import encode_prompts
from sfpp.train.config import DistillConfig, LoraSection
from sfpp.train.data import PromptEmbeddings, read_prompt_file
from sfpp.train.dmd import cfg_flow, critic_flow_loss, dmd_direction, dmd_loss, sample_dmd_timesteps
from sfpp.train.state import CheckpointManager

STAGE_IDS = {"ode": 1, "self-forcing": 2, "extended": 3}
P_GEN, P_CRITIC, P_SHARED, P_DMD, P_ODE = 11, 12, 13, 14, 15


# ---------------------------------------------------------------------- sampling helpers (pure)
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


def sample_window_start(gen: torch.Generator, n: int, k: int, mode: str = "uniform") -> int:
    """Window start i in 0..N-K: uniform (the paper's i ~ Unif{1..N-K+1}) or Beta(1, 2)-skewed."""
    if n < k:
        raise ValueError(f"rollout length {n} is shorter than the window {k}")
    if mode == "uniform":
        return int(torch.randint(n - k + 1, (1,), generator=gen))
    if mode != "beta12":
        raise SfppError(f"window_sampling must be 'uniform' or 'beta12', got {mode!r}")
    u = float(torch.rand((1,), generator=gen))
    x = 1.0 - math.sqrt(1.0 - u)  # inverse CDF of Beta(1, 2): early windows more likely
    return min(n - k, int(x * (n - k + 1)))


def backward_noise(x0: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
    """Backward noise initialisation (SF++ eq. 1): re-noise the student's clean frames, x_t = (1-s) x0 + s eps."""
    return add_noise(x0, noise, t)


def lead_chunks(i: int, chunk: int) -> list[int]:
    """Chunk sizes for frames [0, i) such that the window starting at i is chunk-aligned."""
    r = i % chunk
    return ([r] if r else []) + [chunk] * (i // chunk)


# ---------------------------------------------------------------------- networks
@dataclass
class Networks:
    student: CausalWan
    teacher: Any  # frozen bidirectional WanTransformer3DModel
    critic: Any | None  # trainable bidirectional copy (None for the ODE stage)
    codec: Any  # pixels <-> latents (for sample videos)
    text_len: int


def bidirectional_flow(model, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """Flow prediction of a bidirectional Wan transformer: x_t (B, C, F, H, W), t (B,), emb (B, L, D)."""
    dtype = next(model.parameters()).dtype
    return model(x_t.to(dtype), t, emb.to(dtype), return_dict=False)[0].float()


def build_networks(cfg: DistillConfig, *, stage: str, config_dir: Path, student_init: Path | None,
                   device: torch.device) -> tuple[Networks, Callable[[list[str]], torch.Tensor], str]:
    """Load base components; teacher (frozen), critic (trainable copy), student (causal)."""
    preset = get_preset(cfg.model.preset)

    def resolve(p: str | None) -> str | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (config_dir / q))

    comps = load_components(preset, weights=resolve(cfg.model.weights))
    base = comps.transformer
    if cfg.model.teacher_weights:
        teacher = load_diffusers_components(Path(resolve(cfg.model.teacher_weights))).transformer
    else:
        teacher = copy.deepcopy(base)
    if cfg.model.teacher_checkpoint:
        state, _ = read_checkpoint(resolve(cfg.model.teacher_checkpoint))
        load_into(teacher, state, source=cfg.model.teacher_checkpoint)
    student_tr = copy.deepcopy(base)
    init = resolve(cfg.model.student_checkpoint) if cfg.model.student_checkpoint else student_init
    if init is not None:
        state, _ = read_checkpoint(init)
        load_into(student_tr, state, source=str(init))
    critic = None
    if stage != "ode":
        critic = copy.deepcopy(teacher if cfg.model.critic_init == "teacher" else student_tr)
        if cfg.model.critic_init == "teacher" and cfg.model.teacher_weights and teacher.config != base.config:
            critic = copy.deepcopy(base)  # e.g. 14B teacher, 1.3B critic (Self-Forcing's recipe)
        critic.requires_grad_(True).train()
        if cfg.run.gradient_checkpointing:
            critic.enable_gradient_checkpointing()
    teacher.requires_grad_(False).eval()
    student = CausalWan(student_tr)
    student.requires_grad_(True).train()
    if cfg.lora.enabled:  # adapters from outside the model; freezes every base weight
        from sfpp.lora import add_lora

        lo = cfg.lora
        add_lora(student_tr, rank=lo.rank, alpha=lo.alpha, target_modules=lo.target_modules, dropout=lo.dropout,
                 seed=cfg.run.seed)
    student.gradient_checkpointing = cfg.run.gradient_checkpointing
    # FSDP: the networks stay on the CPU here; sharding moves each block's shard to the device one
    # block at a time, so a model larger than one device never has to fit on it whole.
    model_device = torch.device("cpu") if cfg.run.fsdp else device
    for m in (teacher, critic, student):
        if m is not None:
            m.to(model_device)
    comps.codec.to(device)
    text_encoder, tokenizer = comps.text_encoder.to(device), comps.tokenizer

    def encode(prompts: list[str]) -> torch.Tensor:
        return encode_prompts(tokenizer, text_encoder, prompts, max_length=preset.text_len, device=device)

    encoder_id = f"{preset.name}:{comps.source}"
    return Networks(student, teacher, critic, comps.codec, preset.text_len), encode, encoder_id


# ---------------------------------------------------------------------- the trainer
class Distiller:
    """One stage of distillation. `run(total_steps)` trains, checkpoints and exports."""

    def __init__(self, cfg: DistillConfig, *, stage: str, out: Path, total_steps: int, accelerator,
                 config_dir: Path, resume: bool, student_init: Path | None = None,
                 on_log: Callable[[dict], None] | None = None):
        self.cfg, self.stage, self.acc = cfg, stage, accelerator
        self.dir = Path(out) / stage
        self.total_steps = total_steps
        self.on_log = on_log
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.device = accelerator.device
        preset = get_preset(cfg.model.preset)
        self.rollout = resolve_rollout(preset.rollout, None, cfg.rollout.overrides()).config
        self.chunk = self.rollout.chunk_frames
        self.K = self.rollout.window
        if self.K % self.chunk:
            raise SfppError(f"the window K={self.K} must be a multiple of the chunk size {self.chunk}")
        h = cfg.model.height or preset.height
        w = cfg.model.width or preset.width
        sf = preset.codec.spatial_factor
        if h % (2 * sf) or w % (2 * sf):
            raise SfppError(f"[model] height/width must be multiples of {2 * sf}, got {h}x{w}")
        self.latent_hw = (h // sf, w // sf)
        self.timesteps = list(self.rollout.shifted_timesteps)
        # training rollouts reach at most max(K, n_max) frames: `auto` decides the policy for that length
        self.rope_max = int(transformer_config(preset).get("rope_max_seq_len", 1024))
        longest = max(self.K, cfg.extended.n_max if stage == "extended" else self.K)
        if self.rollout.rope == "absolute" and longest > self.rope_max:
            raise SfppError(f"[extended] n_max = {longest} latent frames is past the RoPE table ({self.rope_max}); "
                            "lower n_max or set [rollout] rope = \"auto\" or \"relative\"")
        self.cache_cfg = self.rollout.cache(self.rollout.resolve_rope(longest, self.rope_max))
        self.ckpt = CheckpointManager(self.dir / "checkpoints", keep=cfg.run.keep_checkpoints)
        self.done = resume and (self.dir / "done.json").is_file()
        if self.done:
            return  # finished earlier: nothing to load
        if not resume and (self.ckpt.latest() is not None or (self.dir / "done.json").is_file()):
            raise SfppError(f"{self.dir} already holds a run; pass --resume to continue it or choose another --out")
        prompts_path = Path(cfg.data.prompts).expanduser()
        if not prompts_path.is_absolute():
            prompts_path = config_dir / prompts_path
        prompts = read_prompt_file(prompts_path)

        self.nets, encode, encoder_id = build_networks(cfg, stage=stage, config_dir=config_dir,
                                                       student_init=student_init, device=self.device)
        with torch.no_grad():
            self.data = PromptEmbeddings.build(prompts, cfg.data.negative_prompt, cache_dir=Path(out) / "cache",
                                               encoder_id=encoder_id, text_len=self.nets.text_len,
                                               encode_fn=encode)
            self.sample_emb = PromptEmbeddings.build([cfg.run.sample_prompt], "", cache_dir=Path(out) / "cache",
                                                     encoder_id=encoder_id, text_len=self.nets.text_len,
                                                     encode_fn=encode).cond
        del encode  # the text encoder is no longer referenced: training never needs it again
        self.fsdp = cfg.run.fsdp
        if self.fsdp:
            self._shard()  # every rank built the same weights (same files, same seeds): shard them
        else:
            self._broadcast_initial_weights()

        s = self.nets.student
        lr = cfg.ode.lr if stage == "ode" else cfg.optim.gen_lr
        o = cfg.optim
        trainable = [p for p in s.parameters() if p.requires_grad]  # all weights, or only the LoRA adapters
        self.opt_g = torch.optim.AdamW(trainable, lr=lr, betas=o.betas, weight_decay=o.weight_decay)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self._warmup)
        self.opt_c = self.sched_c = None
        if self.nets.critic is not None:
            self.opt_c = torch.optim.AdamW(self.nets.critic.parameters(), lr=o.critic_lr, betas=o.betas,
                                           weight_decay=o.weight_decay)
            self.sched_c = torch.optim.lr_scheduler.LambdaLR(self.opt_c, self._warmup)
        self.ema: dict[str, torch.Tensor] | None = None
        self.step = 0
        self.position = 0  # global samples consumed
        if resume:
            self._load(self.ckpt.load())
        self.tb = None

    # ------------------------------------------------------------------ basics
    def _warmup(self, s: int) -> float:
        w = self.cfg.optim.warmup_steps
        return 1.0 if w <= 0 else min(1.0, (s + 1) / w)

    def _broadcast_initial_weights(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            for m in (self.nets.student, self.nets.critic):
                if m is not None:
                    for p in m.parameters():
                        dist.broadcast(p.data, src=0)

    def _shard(self) -> None:
        """FSDP: every network sharded across the processes (`sfpp.parallel`)."""
        from sfpp import parallel

        if self.cfg.lora.enabled:
            raise SfppError("[run] fsdp and [lora] cannot be combined yet; LoRA adapters are small enough to "
                            "train with plain data parallelism (fsdp = false)")
        import torch.distributed as dist

        if not dist.is_initialized():
            raise SfppError("[run] fsdp shards across processes: start the run with `accelerate launch "
                            "--multi_gpu --num_processes N ...` (N >= 2), or set fsdp = false")
        mesh = parallel.device_mesh(self.device)
        parallel.shard_causal(self.nets.student, mesh)
        parallel.shard_bidirectional(self.nets.teacher, mesh)
        if self.nets.critic is not None:
            parallel.shard_bidirectional(self.nets.critic, mesh)

    def _shard_report(self) -> dict[str, Any]:
        """Parameters held by each rank vs in the whole student (collective)."""
        import torch.distributed as dist

        from sfpp.parallel import is_sharded

        ps = list(self.nets.student.parameters())
        local = torch.tensor([sum((p.to_local() if is_sharded(p) else p).numel() for p in ps)], dtype=torch.int64,
                             device=self.device)
        per_rank = [torch.zeros_like(local) for _ in range(self.world)]
        dist.all_gather(per_rank, local)
        return {"world": self.world, "student_params": sum(p.numel() for p in ps),
                "student_params_per_rank": [int(t) for t in per_rank]}

    def _clip(self, params: list[torch.nn.Parameter]) -> float:
        """Clip gradients to `[optim].grad_clip` (global norm over all shards); returns the norm."""
        from sfpp.parallel import full_tensor

        return float(full_tensor(torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)))

    def _gen(self, *parts: int) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(self.cfg.run.seed, STAGE_IDS[self.stage], self.step, *parts))

    def _batch(self, micro: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        B = self.cfg.run.batch_size
        start = self.position + (micro * self.world + self.rank) * B
        idx = self.data.indices(start, B, self.cfg.run.seed)
        cond = self.data.cond[idx].to(self.device)
        uncond = self.data.uncond.expand(B, -1, -1).to(self.device)
        return cond, uncond, idx

    def _noise(self, purpose: int, micro: int) -> SeededNoise:
        B = self.cfg.run.batch_size
        seeds = [mix_seed(self.cfg.run.seed, STAGE_IDS[self.stage], self.step, purpose, self.rank, micro, b)
                 for b in range(B)]
        return SeededNoise(seeds, channels=self.nets.student.in_channels, height=self.latent_hw[0],
                           width=self.latent_hw[1], device=self.device)

    def _sync_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average gradients over processes (DDP semantics, done explicitly so that a rollout may
        run the student many times before one backward)."""
        if self.world <= 1 or self.fsdp:  # FSDP reduce-scatters (averages) gradients during backward
            return
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[off : off + n].view_as(p).clone()
            off += n

    # ------------------------------------------------------------------ generator samples
    def shared_draws(self, purpose: int) -> dict[str, int]:
        """Exit step, N, window start and backward-noise level: identical on every rank."""
        g = self._gen(P_SHARED, purpose)
        n_steps = len(self.timesteps)
        ro, ex = self.cfg.rollout, self.cfg.extended
        if self.stage != "extended":
            exit_step = n_steps - 1 if ro.exit_step == "last" else int(torch.randint(n_steps, (1,), generator=g))
            return {"N": self.K, "window_start": 0, "exit_step": exit_step, "renoise_step": -1}
        nmax = n_max_at(self.step, k=self.K, n_max=max(ex.n_max, self.K), n_max_start=ex.n_max_start,
                        ramp_steps=ex.ramp_steps, chunk=self.chunk)
        n = sample_rollout_length(g, k=self.K, n_max=nmax, chunk=self.chunk)
        i = sample_window_start(g, n, self.K, ex.window_sampling)
        s = int(ex.renoise_steps[int(torch.randint(len(ex.renoise_steps), (1,), generator=g))])
        if not 0 <= s < n_steps:
            raise SfppError(f"[extended].renoise_steps must index the {n_steps}-step list, got {s}")
        exit_step = n_steps - 1 if ro.exit_step == "last" else int(torch.randint(s, n_steps, (1,), generator=g))
        return {"N": n, "window_start": i, "exit_step": exit_step, "renoise_step": s}

    def generator_sample(self, text: TextContext, noise: SeededNoise, draws: dict[str, int], *,
                         with_grad: bool) -> torch.Tensor:
        """The K-frame student sample that DMD scores: ``(B, C, K, H, W)``."""
        s = self.nets.student
        B = noise.batch_size
        cache = s.new_cache(self.cache_cfg, batch_size=B, latent_hw=self.latent_hw)
        ts, K, chunk = self.timesteps, self.K, self.chunk
        grad = GradPolicy(mode="exit_step" if with_grad else "none", exit_step=draws["exit_step"])
        cn = self.rollout.context_noise
        if self.stage != "extended":
            return rollout(s, text, noise, cache, num_frames=K, chunk_frames=chunk, timesteps=ts, grad=grad,
                           context_noise=cn)
        i = draws["window_start"]
        with torch.no_grad():
            if i > 0:  # the preceding rollout: context only, never gradient
                rollout(s, text, noise, cache, num_frames=i, chunk_frames=chunk, chunks=lead_chunks(i, chunk),
                        timesteps=ts, keep=False, context_noise=cn)
            snapshot = cache.state_dict()
            clean = rollout(s, text, noise, cache, num_frames=K, chunk_frames=chunk, timesteps=ts, frame_start=i,
                            context_noise=cn)
            cache.load_state_dict(snapshot)
            level = draws["renoise_step"]
            eps = noise.sample(i, K, step=2000 + level)
            x_t = backward_noise(clean, eps, ts[level])  # (B, C, K, H, W)
        return rollout(s, text, noise, cache, num_frames=K, chunk_frames=chunk, timesteps=ts, frame_start=i,
                       start_step=level, init=lambda f0, n: x_t[:, :, f0 - i : f0 - i + n], grad=grad,
                       context_noise=cn)

    # ------------------------------------------------------------------ updates
    def _dmd_t(self, purpose: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.cfg.dmd
        g = self._gen(P_DMD, purpose, self.rank, micro)
        B = self.cfg.run.batch_size
        t = sample_dmd_timesteps(B, g, min_step=d.min_step, max_step=d.max_step, shift=d.timestep_shift)
        return t.to(self.device), g

    def generator_update(self) -> dict[str, float]:
        cfg, nets = self.cfg, self.nets
        draws = self.shared_draws(P_GEN)
        self.opt_g.zero_grad(set_to_none=True)
        loss_sum, norm_sum = 0.0, 0.0
        for micro in range(cfg.run.grad_accum):
            cond, uncond, _ = self._batch(micro)
            with self.acc.autocast():
                text = nets.student.encode_text(cond.to(next(nets.student.parameters()).dtype))
                x = self.generator_sample(text, self._noise(P_GEN, micro), draws, with_grad=True)
                t, g = self._dmd_t(P_GEN, micro)
                eps = torch.randn(x.shape, generator=g).to(x.device)
                with torch.no_grad():
                    x_t = add_noise(x.detach(), eps, t)
                    fake_x0 = x0_from_flow(x_t, bidirectional_flow(nets.critic, x_t, t, cond), t)
                    v_c = bidirectional_flow(nets.teacher, x_t, t, cond)
                    v_u = bidirectional_flow(nets.teacher, x_t, t, uncond)
                    real_x0 = x0_from_flow(x_t, cfg_flow(v_c, v_u, cfg.dmd.guidance_scale), t)
                    direction, normaliser = dmd_direction(x.detach().float(), real_x0, fake_x0)
                loss = dmd_loss(x, direction)
            (loss / cfg.run.grad_accum).backward()
            loss_sum += loss.item()
            norm_sum += normaliser.mean().item()
        params = [p for p in nets.student.parameters() if p.requires_grad]
        self._sync_grads(params)
        gnorm = self._clip(params)
        self.opt_g.step()
        self.sched_g.step()
        self._update_ema()
        n = cfg.run.grad_accum
        return {"gen_loss": loss_sum / n, "gen_grad_norm": gnorm, "dmd_normaliser": norm_sum / n, **draws}

    def critic_update(self, k: int) -> dict[str, float]:
        cfg, nets = self.cfg, self.nets
        purpose = P_CRITIC * 100 + k
        draws = self.shared_draws(purpose)
        self.opt_c.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(cfg.run.grad_accum):
            cond, _, _ = self._batch(micro + cfg.run.grad_accum * (k + 1))
            with self.acc.autocast():
                with torch.no_grad():
                    text = nets.student.encode_text(cond.to(next(nets.student.parameters()).dtype))
                    x = self.generator_sample(text, self._noise(purpose, micro), draws, with_grad=False).float()
                t, g = self._dmd_t(purpose, micro)
                eps = torch.randn(x.shape, generator=g).to(x.device)
                x_t = add_noise(x, eps, t)
                loss = critic_flow_loss(bidirectional_flow(nets.critic, x_t, t, cond), eps, x)
            (loss / cfg.run.grad_accum).backward()
            loss_sum += loss.item()
        params = [p for p in nets.critic.parameters() if p.requires_grad]
        self._sync_grads(params)
        gnorm = self._clip(params)
        self.opt_c.step()
        self.sched_c.step()
        return {"critic_loss": loss_sum / cfg.run.grad_accum, "critic_grad_norm": gnorm}

    def _update_ema(self) -> None:
        e = self.cfg.ema
        if self.step + 1 < e.start_step:
            return
        sd = self.nets.student.transformer.state_dict()
        # Unsharded: a float32 CPU copy. FSDP: each process keeps the EMA of its own shards, where they live.
        home = (lambda v: v) if self.fsdp else (lambda v: v.cpu())
        with torch.no_grad():
            if self.ema is None:
                self.ema = {k: home(v.detach().float()).clone() for k, v in sd.items()}
            else:
                for k, v in sd.items():
                    self.ema[k].mul_(e.decay).add_(home(v.detach().float()), alpha=1 - e.decay)

    def train_step(self) -> dict[str, float]:
        if self.stage == "ode":
            from sfpp.train.ode import ode_regression_update

            metrics = ode_regression_update(self)
        else:
            metrics = self.generator_update()
            critic = [self.critic_update(k) for k in range(self.cfg.dmd.critic_ratio)]
            metrics["critic_loss"] = float(np.mean([c["critic_loss"] for c in critic]))
            metrics["critic_grad_norm"] = float(np.mean([c["critic_grad_norm"] for c in critic]))
        self.position += self.cfg.run.batch_size * self.world * self.cfg.run.grad_accum * (
            1 + (0 if self.stage == "ode" else self.cfg.dmd.critic_ratio))
        self.step += 1
        return metrics

    # ------------------------------------------------------------------ state
    def _full_student(self) -> dict[str, torch.Tensor]:
        """The student's diffusers-layout weights, unsharded (collective under FSDP: call on every rank)."""
        from sfpp.parallel import full_state_dict

        tr = self.nets.student.transformer
        return full_state_dict(tr) if self.fsdp else tr.state_dict()

    def _full_ema(self) -> dict[str, torch.Tensor] | None:
        from sfpp.parallel import full_tensors

        return full_tensors(self.ema) if (self.fsdp and self.ema is not None) else self.ema

    def state(self) -> dict[str, Any]:
        """Everything a resume needs, unsharded. Under FSDP a collective: every rank calls it."""
        from sfpp import parallel

        critic = self.nets.critic
        if self.fsdp:
            student, ema = self._full_student(), self._full_ema()
            critic_sd = parallel.full_state_dict(critic) if critic is not None else None
            opt_gen = parallel.optimizer_state(self.nets.student, self.opt_g)
            opt_critic = parallel.optimizer_state(critic, self.opt_c) if self.opt_c is not None else None
        else:
            student, ema = self.nets.student.transformer.state_dict(), self.ema
            critic_sd = critic.state_dict() if critic is not None else None
            opt_gen = self.opt_g.state_dict()
            opt_critic = self.opt_c.state_dict() if self.opt_c is not None else None
        rng = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
               "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": "sfpp-train-v1",
            "stage": self.stage,
            "step": self.step,
            "position": self.position,
            "total_steps": self.total_steps,
            "fsdp": self.fsdp,
            "student": student,
            "critic": critic_sd,
            "ema": ema,
            "opt_gen": opt_gen,
            "opt_critic": opt_critic,
            "sched_gen": self.sched_g.state_dict(),
            "sched_critic": self.sched_c.state_dict() if self.sched_c is not None else None,
            "rng": rng,
            "config": json.dumps(to_dict(self.cfg)),
        }

    def _load(self, st: dict[str, Any]) -> None:
        if st.get("format") != "sfpp-train-v1" or st.get("stage") != self.stage:
            raise SfppError(f"the checkpoint in {self.dir} is not an sfpp {self.stage} checkpoint; start a new --out")
        saved = json.loads(st["config"])
        mine = to_dict(self.cfg)
        off = to_dict(LoraSection())  # checkpoints from before [lora] existed trained full weights
        for section in ("model", "rollout", "lora"):
            if saved.get(section, off if section == "lora" else None) != mine.get(section):
                diff = [k for k in mine[section] if saved.get(section, {}).get(k) != mine[section][k]]
                raise SfppError(f"cannot resume: the checkpoint was trained with different [{section}] settings "
                                f"({', '.join(diff)}); restore them or use a new --out")
        if bool(st.get("fsdp", False)) != self.fsdp:
            raise SfppError(f"cannot resume: the checkpoint in {self.dir} was written with [run] fsdp = "
                            f"{str(bool(st.get('fsdp', False))).lower()}; set it back or use a new --out")
        from sfpp import parallel

        parallel.load_full_state(self.nets.student.transformer, st["student"], source=str(self.dir))
        if self.nets.critic is not None and st["critic"] is not None:
            parallel.load_full_state(self.nets.critic, st["critic"], source=str(self.dir))
        if self.fsdp:
            parallel.load_optimizer_state(self.nets.student, self.opt_g, st["opt_gen"])
        else:
            self.opt_g.load_state_dict(st["opt_gen"])
        self.sched_g.load_state_dict(st["sched_gen"])
        if self.opt_c is not None:
            if self.fsdp:
                parallel.load_optimizer_state(self.nets.critic, self.opt_c, st["opt_critic"])
            else:
                self.opt_c.load_state_dict(st["opt_critic"])
            self.sched_c.load_state_dict(st["sched_critic"])
        self.ema = st["ema"]
        if self.fsdp and self.ema is not None:  # each rank keeps the EMA of its own shards
            own = self.nets.student.transformer.state_dict()
            self.ema = {k: parallel.shard_like(v.float(), own[k].detach().float()) for k, v in self.ema.items()}
        self.step, self.position = int(st["step"]), int(st["position"])
        rng = st["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate((3, tuple(int(x) for x in rng["python"]), None))
        np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def export_config(self) -> dict[str, Any]:
        """Embedded in exported students: enough for `sfpp generate --checkpoint` to describe it."""
        cfg = {"model": self.cfg.model.preset, "stage": self.stage, "step": self.step,
               "rollout": self.rollout.to_dict(), "distill_config": to_dict(self.cfg)}
        if self.cfg.lora.enabled:
            cfg["lora"] = {**to_dict(self.cfg.lora), "merged": True}
        return cfg

    def export_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Plain diffusers-layout student weights: with LoRA, the adapters merged into the base."""
        if not self.cfg.lora.enabled:
            return state
        from sfpp.lora import lora_scale, merge_injected_state

        return merge_injected_state(state, lora_scale(self.cfg.lora.rank, self.cfg.lora.alpha))

    def save_checkpoint(self) -> Path | None:
        path = None
        if self.acc.is_main_process or self.fsdp:  # FSDP: gathering the state is a collective
            state = self.state()
        if self.acc.is_main_process:
            exports = {"student": (self.export_weights(state["student"]), self.export_config())}
            if state["ema"] is not None:
                exports["student_ema"] = (self.export_weights(state["ema"]), self.export_config())
            path = self.ckpt.save(self.step, state, exports)
        self.acc.wait_for_everyone()
        return path

    def export_final(self) -> Path:
        """`<stage>/student.safetensors` (+ `student_ema.safetensors`, and with LoRA the adapter
        alone, `student_lora.safetensors`) and `done.json`."""
        from sfpp.checkpoints import save_student

        sd, ema = (self._full_student(), self._full_ema()) if self.fsdp else (None, None)  # collectives
        shard_report = self._shard_report() if self.fsdp else None
        if self.acc.is_main_process:
            if not self.fsdp:
                sd, ema = self.nets.student.transformer.state_dict(), self.ema
            save_student(self.dir / "student.safetensors", self.export_weights(sd), self.export_config())
            if ema is not None:
                save_student(self.dir / "student_ema.safetensors", self.export_weights(ema),
                             self.export_config())
            if self.cfg.lora.enabled:
                from sfpp.lora import save_adapter

                lo = self.cfg.lora
                adapter_cfg = {**self.export_config(), "lora": {**to_dict(lo), "merged": False}}
                save_adapter(self.dir / "student_lora.safetensors", sd, rank=lo.rank, alpha=lo.alpha,
                             target_modules=lo.target_modules, config=adapter_cfg)
            done = {"step": self.step}
            if self.fsdp:
                done["fsdp"] = shard_report
            (self.dir / "done.json").write_text(json.dumps(done) + "\n")
        self.acc.wait_for_everyone()
        return self.dir / "student.safetensors"

    # ------------------------------------------------------------------ loop
    def _log(self, metrics: dict) -> None:
        if not self.acc.is_main_process:
            return
        row = {"step": self.step, "stage": self.stage, "total_steps": self.total_steps, **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}}
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                self.tb = False
        if self.tb:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{self.stage}/{k}", v, self.step)
            self.tb.flush()
        if self.on_log is not None:
            self.on_log(row)

    def _truncate_log(self) -> None:
        """After a resume, drop log rows written after the checkpoint (they will be redone)."""
        log = self.dir / "log.jsonl"
        if self.acc.is_main_process and log.is_file():
            rows = [ln for ln in log.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in rows if json.loads(ln)["step"] <= self.step]
            log.write_text("".join(ln + "\n" for ln in keep))

    def run(self, sample_fn: Callable[["Distiller"], None] | None = None) -> Path:
        """Train up to `total_steps`, checkpointing every `checkpoint_every` steps and on exit."""
        if self.done:
            return self.dir / "student.safetensors"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._truncate_log()
        if self.stage == "ode":
            from sfpp.train.ode import ensure_trajectories

            ensure_trajectories(self)
        every = self.cfg.run.checkpoint_every
        try:
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                metrics = self.train_step()
                metrics["step_time"] = time.perf_counter() - t0
                metrics["lr"] = self.sched_g.get_last_lr()[0]
                if self.step % self.cfg.run.log_every == 0 or self.step == self.total_steps:
                    self._log(metrics)
                if every > 0 and self.step % every == 0:
                    self.save_checkpoint()
                se = self.cfg.run.sample_every
                # FSDP: every rank takes part in the sample's forwards (only rank 0 writes the video)
                if sample_fn is not None and se > 0 and self.step % se == 0 and (self.acc.is_main_process
                                                                                 or self.fsdp):
                    sample_fn(self)
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        if self.ckpt.latest() is None or not self.ckpt.latest().name.endswith(f"{self.step:06d}"):
            self.save_checkpoint()
        return self.export_final()
