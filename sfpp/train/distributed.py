"""Distributed plumbing of a training stage: ranks, weight broadcast, sharding, gradient sync, clipping.

`DistContext` wraps the accelerate `Accelerator` and the run's choice between replicated (data
parallel, gradients averaged explicitly after a whole rollout) and sharded (FSDP2, `sfpp.parallel`)
networks. Everything that differs between the two lives here, so the stages only ask for
"sync these gradients", "the full state of this module" and so on.
"""

from __future__ import annotations

from typing import Any

import torch

from sfpp import parallel
from sfpp.errors import SfppError


class DistContext:
    def __init__(self, accelerator, *, fsdp: bool):
        self.acc = accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.device = accelerator.device
        self.fsdp = bool(fsdp)

    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def autocast(self):
        return self.acc.autocast()

    # ------------------------------------------------------------------ set-up
    def distribute(self, nets, *, lora: bool) -> None:
        """Every rank built the same weights: shard them (FSDP), else make sure rank 0's are everywhere."""
        if self.fsdp:
            self._shard(nets, lora=lora)
        elif self.world > 1:
            import torch.distributed as dist

            for m in (nets.student, nets.critic):
                if m is not None:
                    for p in m.parameters():
                        dist.broadcast(p.data, src=0)

    def _shard(self, nets, *, lora: bool) -> None:
        """FSDP: every network sharded across the processes (`sfpp.parallel`).

        With a single process there is nothing to shard: the networks stay whole, and checkpoints
        keep the sharded format (so a run saved on N processes resumes on one, and back).
        """
        if lora:
            raise SfppError("[run] fsdp and [lora] cannot be combined yet; LoRA adapters are small enough to "
                            "train with plain data parallelism (fsdp = false)")
        import torch.distributed as dist

        if self.world == 1:
            from sfpp.errors import warn

            warn("[run] fsdp with one process: nothing to shard, the networks stay whole (checkpoints stay "
                 "sharded-format and resume on any number of processes); launch with `accelerate launch "
                 "--multi_gpu --num_processes N` to shard")
            return
        if not dist.is_initialized():
            raise SfppError("[run] fsdp shards across processes: start the run with `accelerate launch "
                            "--multi_gpu --num_processes N ...` (N >= 2), or set fsdp = false")
        mesh = parallel.device_mesh(self.device)
        parallel.shard_causal(nets.student, mesh)
        parallel.shard_bidirectional(nets.teacher, mesh)
        if nets.critic is not None:
            parallel.shard_bidirectional(nets.critic, mesh)

    def mean(self, value: float) -> float:
        """The mean of a per-process number over all processes (logged losses are global means)."""
        if self.world <= 1:
            return float(value)
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    # ------------------------------------------------------------------ gradients
    def sync_grads(self, params: list[torch.nn.Parameter]) -> None:
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

    def clip(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        """Clip gradients to `max_norm` (global norm over all shards); returns the norm."""
        return float(parallel.full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm)))

    # ------------------------------------------------------------------ state
    def full_state_dict(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """A module's weights, unsharded (a collective under FSDP: every rank calls it)."""
        return parallel.full_state_dict(module) if self.fsdp else module.state_dict()

    def full_tensors(self, state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        return parallel.full_tensors(state) if (self.fsdp and state is not None) else state

    def optimizer_state(self, module: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
        return parallel.optimizer_state(module, opt) if self.fsdp else opt.state_dict()

    def load_optimizer_state(self, module: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        if self.fsdp:
            parallel.load_optimizer_state(module, opt, state)
        else:
            opt.load_state_dict(state)

    def load_module_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
        parallel.load_full_state(module, state, source=source)

    def shard_like(self, full: dict[str, torch.Tensor], module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Full tensors laid out like `module`'s (sharded) weights: each rank keeps its own shards."""
        own = module.state_dict()
        return {k: parallel.shard_like(v.float(), own[k].detach().float()) for k, v in full.items()}

    def shard_report(self, student: torch.nn.Module) -> dict[str, Any]:
        """Parameters held by each rank vs in the whole student (collective)."""
        import torch.distributed as dist

        ps = list(student.parameters())
        local = torch.tensor([sum((p.to_local() if parallel.is_sharded(p) else p).numel() for p in ps)],
                             dtype=torch.int64, device=self.device)
        per_rank = [torch.zeros_like(local) for _ in range(self.world)]
        dist.all_gather(per_rank, local)
        return {"world": self.world, "student_params": sum(p.numel() for p in ps),
                "student_params_per_rank": [int(t) for t in per_rank]}
