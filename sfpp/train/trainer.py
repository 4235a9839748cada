"""The distillation loop of one stage: set-up, the step loop, checkpoints, exports, logs.

The parts live in their own modules, and this one only wires them together:

* `sfpp.train.networks`: student, teacher, critic (and the text encoder, used once);
* `sfpp.train.distributed`: ranks, sharding (FSDP2) or weight broadcast, gradient sync, clipping;
* `sfpp.train.sampling`: the seeded draws and the generator sample (pure functions);
* `sfpp.train.ode` (`ODEStage`) and `sfpp.train.dmd_stage` (`DMDStage`): the updates;
* `sfpp.train.update`: sync -> clip -> step -> schedule -> EMA, for every optimiser;
* `sfpp.train.state`: atomic checkpoints, RNG state, resume checks.

Every generator sample goes through `sfpp.rollout.rollout`, the function `sfpp generate` uses,
with the student's `RolloutConfig` (`sfpp.rollout_config`), which every export carries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sfpp.config_io import to_dict
from sfpp.errors import SfppError
from sfpp.presets import get_preset, size_multiples, transformer_config
from sfpp.rollout_config import resolve_rollout
from sfpp.train.config import DistillConfig
from sfpp.train.data import PromptEmbeddings, read_prompt_file
from sfpp.train.distributed import DistContext
from sfpp.train.dmd_stage import DMDStage
from sfpp.train.networks import build_networks
from sfpp.train.ode import ODEStage
from sfpp.train.state import (CheckpointManager, check_resumable, export_hashes, is_sharded_checkpoint, rng_state,
                              set_rng_state)
from sfpp.train.update import EMA


class Distiller:
    """One stage of distillation. `run()` trains to `total_steps`, checkpoints and exports."""

    def __init__(self, cfg: DistillConfig, *, stage: str, out: Path, total_steps: int, accelerator,
                 config_dir: Path, resume: bool, student_init: Path | None = None,
                 on_log: Callable[[dict], None] | None = None, budget: float = 1.0):
        if stage == "extended" and cfg.extended.ramp_steps > 0 and budget != 1.0:
            # `--budget Nx` stretches the whole recipe N times: the N_max ramp (written for 1x) covers the
            # same share of the run at every budget. The stretched value is what checkpoints record.
            ramp = max(1, round(cfg.extended.ramp_steps * budget))
            cfg = dataclasses.replace(cfg, extended=dataclasses.replace(cfg.extended, ramp_steps=ramp))
        self.cfg, self.stage, self.acc = cfg, stage, accelerator
        self.dir = Path(out) / stage
        self.total_steps = total_steps
        self.on_log = on_log
        self.dist = DistContext(accelerator, fsdp=cfg.run.fsdp)
        self.rank, self.world, self.device, self.fsdp = self.dist.rank, self.dist.world, self.dist.device, cfg.run.fsdp
        preset = get_preset(cfg.model.preset)
        self.rollout = resolve_rollout(preset.rollout, None, cfg.rollout.overrides()).config
        self.chunk = self.rollout.chunk_frames
        self.K = self.rollout.window
        if self.K % self.chunk:
            raise SfppError(f"the window K={self.K} must be a multiple of the chunk size {self.chunk}")
        h = cfg.model.height or preset.height
        w = cfg.model.width or preset.width
        sf = preset.codec.spatial_factor
        mh, mw = size_multiples(preset)
        if h % mh or w % mw:
            raise SfppError(f"[model] height/width must be multiples of {mh}/{mw} for {preset.name}, got {h}x{w}")
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
        self.dist.distribute(self.nets, lora=cfg.lora.enabled)

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
        # Unsharded: a float32 CPU copy. FSDP: each process keeps the EMA of its own shards, where they live.
        self.ema = EMA(cfg.ema.decay, cfg.ema.start_step, on_device=self.fsdp)
        self.step = 0
        self.position = 0  # global samples consumed
        self.accum = cfg.run.grad_accum  # micro-batches per update on each process (see `_adopt_world`)
        if stage == "ode":
            self.ode = ODEStage(cfg, student=s, teacher=self.nets.teacher, data=self.data, dist=self.dist,
                                root=self.dir / "trajectories", k=self.K, chunk=self.chunk, timesteps=self.timesteps,
                                latent_hw=self.latent_hw, on_log=on_log)
        else:
            self.dmd = DMDStage(cfg, stage=stage, nets=self.nets, data=self.data, dist=self.dist,
                                rollout=self.rollout, cache_cfg=self.cache_cfg, latent_hw=self.latent_hw)
        if resume:
            latest = self.ckpt.latest()
            if latest is not None and is_sharded_checkpoint(latest):
                self._load_sharded(latest)
            else:
                self._load(self.ckpt.load())
        self.tb = None

    def _adopt_world(self, saved_world: int, saved_accum: int) -> None:
        """Resuming on another number of processes: keep the global batch (and so every draw) the same."""
        total = int(saved_world) * int(saved_accum)
        if total % self.world:
            raise SfppError(f"cannot resume on {self.world} processes: the run was saved on {saved_world} with "
                            f"grad_accum {saved_accum}, a global batch of {total} micro-batches that "
                            f"{self.world} processes cannot split evenly; use a divisor of {total}")
        self.accum = total // self.world
        stage = self.ode if self.stage == "ode" else self.dmd
        stage.accum = self.accum

    def _warmup(self, s: int) -> float:
        w = self.cfg.optim.warmup_steps
        return 1.0 if w <= 0 else min(1.0, (s + 1) / w)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        if self.stage == "ode":
            metrics = self.ode.update(self.opt_g, self.sched_g, self.ema, step=self.step, position=self.position)
        else:
            metrics = self.dmd.generator_update(self.opt_g, self.sched_g, self.ema, step=self.step,
                                                position=self.position)
            critic = [self.dmd.critic_update(k, self.opt_c, self.sched_c, step=self.step, position=self.position)
                      for k in range(self.cfg.dmd.critic_ratio)]
            metrics["critic_loss"] = float(np.mean([c["critic_loss"] for c in critic]))
            metrics["critic_grad_norm"] = float(np.mean([c["critic_grad_norm"] for c in critic]))
        self.position += self.cfg.run.batch_size * self.world * self.cfg.run.grad_accum * (
            1 + (0 if self.stage == "ode" else self.cfg.dmd.critic_ratio))
        self.step += 1
        return metrics

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything a resume needs, unsharded. Under FSDP a collective: every rank calls it."""
        d, critic = self.dist, self.nets.critic
        return {
            "format": "sfpp-train-v1",
            "stage": self.stage,
            "step": self.step,
            "position": self.position,
            "total_steps": self.total_steps,
            "fsdp": self.fsdp,
            "student": d.full_state_dict(self.nets.student.transformer),
            "critic": d.full_state_dict(critic) if critic is not None else None,
            "ema": d.full_tensors(self.ema.state),
            "opt_gen": d.optimizer_state(self.nets.student, self.opt_g),
            "opt_critic": d.optimizer_state(critic, self.opt_c) if self.opt_c is not None else None,
            "sched_gen": self.sched_g.state_dict(),
            "sched_critic": self.sched_c.state_dict() if self.sched_c is not None else None,
            "rng": rng_state(),
            "config": json.dumps(to_dict(self.cfg)),
            "world": self.world,
            "grad_accum": self.accum,
        }

    # ------------------------------------------------------------------ sharded checkpoints ([run] fsdp)
    def _dcp_state(self, *, with_ema: bool) -> dict[str, Any]:
        """This process's shards of everything a resume needs, keyed for torch.distributed.checkpoint."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        nets = self.nets
        student, opt_gen = get_state_dict(nets.student, self.opt_g)
        state: dict[str, Any] = {"student": student, "opt_gen": opt_gen, "rng": rng_state()}
        if nets.critic is not None:
            state["critic"], state["opt_critic"] = get_state_dict(nets.critic, self.opt_c)
        if with_ema:
            if self.ema.state is None:  # a template for loading: laid out like the student's shards
                self.ema.state = {k: v.detach().float().clone() for k, v in nets.student.transformer.state_dict().items()}
            state["ema"] = self.ema.state
        return state

    def _trainer_record(self) -> dict[str, Any]:
        return {"format": "sfpp-train-dcp-v1", "stage": self.stage, "step": self.step, "position": self.position,
                "total_steps": self.total_steps, "world": self.world, "grad_accum": self.accum, "fsdp": True,
                "sched_gen": self.sched_g.state_dict(),
                "sched_critic": self.sched_c.state_dict() if self.sched_c is not None else None,
                "config": json.dumps(to_dict(self.cfg))}

    def _load_sharded(self, path: Path) -> None:
        from torch.distributed.checkpoint.state_dict import set_state_dict

        from sfpp.train.state import load_sharded, sharded_keys

        try:
            trainer = json.loads((path / "trainer.json").read_text())
        except (OSError, ValueError):
            raise SfppError(f"checkpoint {path} has no readable trainer.json; start a new --out") from None
        if trainer.get("format") != "sfpp-train-dcp-v1" or trainer.get("stage") != self.stage:
            raise SfppError(f"the checkpoint in {path} is not an sfpp {self.stage} checkpoint; start a new --out")
        if not self.fsdp:
            raise SfppError(f"cannot resume: the checkpoint in {self.dir} is sharded ([run] fsdp = true); set it "
                            "back or use a new --out")
        check_resumable({**trainer, "format": "sfpp-train-v1"}, stage=self.stage, config=to_dict(self.cfg),
                        fsdp=True, where=self.dir)
        had_ema = self.ema.state is not None
        state = self._dcp_state(with_ema="ema" in sharded_keys(path))
        load_sharded(path, state)
        nets = self.nets
        set_state_dict(nets.student, self.opt_g, model_state_dict=state["student"], optim_state_dict=state["opt_gen"])
        if nets.critic is not None:
            set_state_dict(nets.critic, self.opt_c, model_state_dict=state["critic"],
                           optim_state_dict=state["opt_critic"])
        if "ema" not in state and not had_ema:
            self.ema.state = None
        self.sched_g.load_state_dict(trainer["sched_gen"])
        if self.sched_c is not None:
            self.sched_c.load_state_dict(trainer["sched_critic"])
        self.step, self.position = int(trainer["step"]), int(trainer["position"])
        set_rng_state(state["rng"])
        self._adopt_world(trainer["world"], trainer["grad_accum"])

    def _write_exports(self, folder: Path) -> None:
        """student(_ema).safetensors gathered one tensor at a time; the main process writes (collective)."""
        from sfpp.checkpoints import FORMAT
        from sfpp.parallel import write_safetensors_gathered

        meta = {"sfpp_format": FORMAT, "sfpp_config": json.dumps(self.export_config())}
        write_safetensors_gathered(folder / "student.safetensors", self.nets.student.transformer.state_dict(),
                                   metadata=meta, is_main=self.dist.is_main)
        if self.ema.state is not None:
            write_safetensors_gathered(folder / "student_ema.safetensors", self.ema.state, metadata=meta,
                                       is_main=self.dist.is_main)

    def _load(self, st: dict[str, Any]) -> None:
        check_resumable(st, stage=self.stage, config=to_dict(self.cfg), fsdp=self.fsdp, where=self.dir)
        d = self.dist
        d.load_module_state(self.nets.student.transformer, st["student"], source=str(self.dir))
        if self.nets.critic is not None and st["critic"] is not None:
            d.load_module_state(self.nets.critic, st["critic"], source=str(self.dir))
        d.load_optimizer_state(self.nets.student, self.opt_g, st["opt_gen"])
        self.sched_g.load_state_dict(st["sched_gen"])
        if self.opt_c is not None:
            d.load_optimizer_state(self.nets.critic, self.opt_c, st["opt_critic"])
            self.sched_c.load_state_dict(st["sched_critic"])
        ema = st["ema"]
        if self.fsdp and ema is not None:  # each rank keeps the EMA of its own shards
            ema = d.shard_like(ema, self.nets.student.transformer)
        self.ema.state = ema
        self.step, self.position = int(st["step"]), int(st["position"])
        set_rng_state(st["rng"])
        self._adopt_world(st.get("world", self.world), st.get("grad_accum", self.cfg.run.grad_accum))

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
        if self.fsdp:  # each process writes its own shards; exports are gathered one tensor at a time
            return self.ckpt.save_sharded(self.step, self._dcp_state(with_ema=self.ema.state is not None),
                                          self._trainer_record(), dist=self.dist, write_exports=self._write_exports)
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

        d = self.dist
        if self.fsdp:  # gathered one tensor at a time, written by the main process (collective)
            self._write_exports(self.dir)
        shard_report = d.shard_report(self.nets.student) if (self.fsdp and self.world > 1) else None
        if self.acc.is_main_process:
            if not self.fsdp:
                sd, ema = self.nets.student.transformer.state_dict(), self.ema.state
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
            done = {"step": self.step, "exports": export_hashes(self.dir)}
            if shard_report is not None:
                done["fsdp"] = shard_report
            tmp = self.dir / "done.json.tmp"
            tmp.write_text(json.dumps(done) + "\n")
            os.replace(tmp, self.dir / "done.json")
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
            except ImportError:  # the [train] extra; without it, log.jsonl only
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
            self.ode.ensure_trajectories(self.step)
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
