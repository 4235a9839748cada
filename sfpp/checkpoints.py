"""Student checkpoints: sfpp's own safetensors format (self-describing) and loading into a model.

A student checkpoint is a safetensors file of the diffusers `WanTransformer3DModel` state dict,
with metadata ``sfpp_format`` and ``sfpp_config`` (the resolved JSON config that produced it),
so a checkpoint describes itself. Everything else goes through `sfpp.convert` on load: torch
pickles (Self-Forcing / CausVid / LongLive ``.pt``, ``FILE#ENTRY`` to pick ``generator_ema``
etc.), original-Wan-layout or prefixed safetensors, plain diffusers state dicts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module does not import torch
    import torch

import json
import os
from pathlib import Path
from typing import Any

from sfpp.errors import SfppError
from sfpp.home import file_sha256  # noqa: F401 - part of this module's API

FORMAT = "sfpp-student-v1"


def save_student(path: str | os.PathLike, state_dict: dict[str, "torch.Tensor"], config: dict[str, Any]) -> Path:
    """Write a student checkpoint atomically (temp file, fsync, rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(tensors, str(tmp), metadata={"sfpp_format": FORMAT, "sfpp_config": json.dumps(config)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The file of a checkpoint argument (``FILE`` or ``FILE#ENTRY``)."""
    from sfpp.convert import split_entry

    return split_entry(path)[0]


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The config embedded in an sfpp student, read from the safetensors header only ({} for other files).

    Foreign checkpoints (Self-Forcing / CausVid / LongLive pickles, plain state dicts) carry no
    rollout settings, so nothing is read from them here.
    """
    from sfpp.convert import PICKLE_SUFFIXES, split_entry

    file, entry = split_entry(path)
    if entry is not None or file.suffix.lower() in PICKLE_SUFFIXES or not file.is_file():
        return {}
    try:
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= 100_000_000:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") or {} if isinstance(header, dict) else {}
    if not isinstance(meta, dict) or meta.get("sfpp_format") != FORMAT or "sfpp_config" not in meta:
        return {}
    try:
        cfg = json.loads(meta["sfpp_config"])
    except ValueError:
        raise SfppError(f"checkpoint {file} has a damaged embedded config; re-export it or pass the rollout settings as flags") from None
    return cfg if isinstance(cfg, dict) else {}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """Read a student checkpoint -> (diffusers-layout state dict, embedded config or {}).

    sfpp students are read as they are; any other file (``FILE`` or ``FILE#ENTRY``) is converted
    by `sfpp.convert.read_foreign` (pickles load with ``weights_only=True`` only).
    """
    from sfpp.convert import PICKLE_SUFFIXES, read_foreign, split_entry

    file, entry = split_entry(path)
    if not file.is_file():
        raise SfppError(f"checkpoint {file} does not exist")
    if entry is None and file.suffix.lower() not in PICKLE_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("sfpp_format") == FORMAT:
                    state = {k: f.get_tensor(k) for k in f.keys()}
                    config = json.loads(meta["sfpp_config"]) if "sfpp_config" in meta else {}
                    return state, config
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise SfppError(f"checkpoint {file} is not a readable safetensors file ({type(e).__name__})") from None
    ck = read_foreign(path)
    return ck.state, (ck.config or ck.describe())


def check_fits(own: dict[str, "torch.Tensor"], state: dict[str, "torch.Tensor"], *, source: str,
               fix: str = "pick the --model the checkpoint was trained for") -> None:
    """Raise one clear error when `state` has other keys or shapes than `own` (a module's state dict)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise SfppError(
            f"checkpoint {source} does not fit this model: {'; '.join(parts)}; {fix}"
        )


def load_into(module, state: dict[str, "torch.Tensor"], *, source: str) -> None:
    """Load a state dict strictly, turning any key or shape mismatch into one clear error."""
    import torch

    own = module.state_dict()
    check_fits(own, state, source=source)
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))
