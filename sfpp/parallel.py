"""Fully sharded data parallelism (PyTorch FSDP2, `fully_shard`) applied from outside the models.

The models stay plain modules; `shard_causal` and `shard_bidirectional` shard their parameters
across the processes of a 1-D device mesh (each process keeps ``1 / world`` of every block's
weights and gathers a block's weights only while it runs). Gradients are reduce-scattered
(averaged) by FSDP itself during backward.

`CausalWan` does not call its blocks' ``forward``: it runs each block through its
``block_runner`` (the pure `block_forward` by default). To let FSDP's gather/free hooks fire, each
block gets a ``sfpp_block`` method (that function bound to the block) registered as an FSDP forward
method, and the student's ``block_runner`` is set to `fsdp_block_runner`, which calls it; the root
hooks are registered on `CausalWan.forward`, `forward_full` and `encode_text`. Because a block's
weights are gathered only inside its own call, a sharded `CausalWan` projects the prompt's
cross-attention K/V inside each block (``text_kv_in_blocks``, `TextContext.lazy`) instead of once
up front.

Helpers here move state between sharded modules and full (unsharded) CPU tensors so that
checkpoints and exports look exactly like the unsharded ones.
"""

from __future__ import annotations

import types
import warnings
from typing import Any

import torch
from torch import nn


# FSDP2 warns when a wrapped module returns a view (in-place ops on it would skip its backward
# all-gather). sfpp never modifies model outputs in place (the KV cache copies K/V out of them), and
# tests/test_fsdp.py checks FSDP gradients against plain data parallelism.
warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")


def device_mesh(device: torch.device):
    """A 1-D mesh over every process of the default process group."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        raise RuntimeError("FSDP needs torch.distributed to be initialised (run under `accelerate launch`)")
    return init_device_mesh(device.type, (dist.get_world_size(),))


def fsdp_block_runner(block: nn.Module, *args):
    """`CausalWan.block_runner` for sharded blocks: through the block's FSDP-registered ``sfpp_block``."""
    return block.sfpp_block(*args)


def shard_causal(student: nn.Module, mesh) -> nn.Module:
    """Shard a `CausalWan` in place: every transformer block is one FSDP unit; the rest is the root."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    from sfpp.causal import block_forward

    for block in student.transformer.blocks:
        block.sfpp_block = types.MethodType(block_forward, block)
        fully_shard(block, mesh=mesh)
        register_fsdp_forward_method(block, "sfpp_block")
    fully_shard(student, mesh=mesh)
    for name in ("forward_full", "encode_text"):
        register_fsdp_forward_method(student, name)
    student.block_runner = fsdp_block_runner
    student.text_kv_in_blocks = True
    return student


def shard_bidirectional(model: nn.Module, mesh) -> nn.Module:
    """Shard a diffusers `WanTransformer3DModel` (teacher or critic) in place: blocks, then the root."""
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for a sharded one: every process must call it)."""
    return t.full_tensor() if is_sharded(t) else t


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU copy of ``module.state_dict()`` on every process (collective when sharded)."""
    return {k: full_tensor(v.detach()).cpu() for k, v in module.state_dict().items()}


def full_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unsharded CPU copies of a dict of (possibly sharded) tensors, e.g. EMA weights."""
    return {k: full_tensor(v).cpu() for k, v in state.items()}


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`full` distributed the way `like` (a sharded tensor) is; `full` itself when `like` is plain."""
    if not is_sharded(like):
        return full.to(like.device, like.dtype)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements)


def load_full_state(module: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load an unsharded state dict into a (possibly sharded) module, strictly."""
    from sfpp.checkpoints import check_fits

    own = module.state_dict()
    check_fits(own, state, source=source)  # global shapes: a sharded tensor reports the full shape
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(shard_like(state[k], v))


def optimizer_state(module: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Full (unsharded) optimizer state keyed by parameter name; on every process."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(module, opt, options=StateDictOptions(full_state_dict=True))


def load_optimizer_state(module: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, opt, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


# ---------------------------------------------------------------------- exports with bounded memory
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL"}


def write_safetensors_gathered(path, state: dict[str, torch.Tensor], *, metadata: dict[str, str] | None,
                               is_main: bool) -> None:
    """Write (possibly sharded) tensors as one safetensors file, one tensor at a time.

    Every process takes part (gathering a sharded tensor is a collective); only the main process
    keeps each gathered tensor, writes it and drops it, so no process ever holds more than one whole
    tensor besides its own shards. The file is written to ``PATH.tmp`` and renamed on success.
    The layout is the safetensors format (a JSON header with dtypes, shapes and offsets, then the data).
    """
    import json
    import os
    from pathlib import Path

    path = Path(path)
    keys = sorted(state)
    header, off = {}, 0
    for k in keys:
        t = state[k]
        n = t.numel() * t.element_size()
        header[k] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    if metadata:
        header["__metadata__"] = metadata
    f = None
    tmp = path.with_name(path.name + ".tmp")
    try:
        if is_main:
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            f = open(tmp, "wb")
            f.write(len(raw).to_bytes(8, "little") + raw)
        for k in keys:
            full = full_tensor(state[k].detach())  # collective for a sharded tensor
            if f is not None:
                f.write(full.contiguous().cpu().view(torch.uint8).numpy().tobytes() if full.numel() else b"")
            del full
        if f is not None:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            f = None
            os.replace(tmp, path)
    finally:
        if f is not None:
            f.close()
            tmp.unlink(missing_ok=True)
