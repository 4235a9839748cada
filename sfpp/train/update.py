"""One optimiser update, the same for the generator, the critic and the ODE regression:
sync gradients -> clip -> step -> schedule -> EMA.

`EMA` keeps an exponential moving average of a module's weights (float32; on the CPU for
replicated runs, as Self-Forcing does, or as each rank's own shards under FSDP), created at
``start_step`` from the current weights.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, decay: float, start_step: int, *, on_device: bool = False):
        self.decay, self.start_step, self.on_device = float(decay), int(start_step), bool(on_device)
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, module: torch.nn.Module, step: int) -> None:
        """After update number ``step + 1``: create the average at ``start_step``, then blend."""
        if step + 1 < self.start_step:
            return
        sd = module.state_dict()
        home = (lambda v: v) if self.on_device else (lambda v: v.cpu())
        with torch.no_grad():
            if self.state is None:
                self.state = {k: home(v.detach().float()).clone() for k, v in sd.items()}
            else:
                for k, v in sd.items():
                    self.state[k].mul_(self.decay).add_(home(v.detach().float()), alpha=1 - self.decay)


def trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def apply_update(module: torch.nn.Module, opt: torch.optim.Optimizer, sched, *, dist, grad_clip: float,
                 ema: EMA | None = None, ema_module: torch.nn.Module | None = None, step: int = 0) -> float:
    """Sync gradients across processes, clip, step the optimiser and its schedule, update the EMA.

    Returns the gradient norm before clipping. ``ema_module`` (default `module`) is what the EMA
    averages (the student's inner transformer, whose state dict is the exported layout).
    """
    params = trainable(module)
    dist.sync_grads(params)
    norm = dist.clip(params, grad_clip)
    opt.step()
    sched.step()
    if ema is not None:
        ema.update(ema_module if ema_module is not None else module, step)
    return norm
