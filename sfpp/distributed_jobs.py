"""Work split across processes: `sfpp rollout` and `sfpp evaluate` under ``accelerate launch``.

`workers()` reads the launcher's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``). With one
process (no launcher, or ``--num_processes 1``) it is `Workers()`: rank 0 of 1, nothing initialised,
nothing imported. With several it joins the process group once per process, through accelerate's
``PartialState`` when accelerate is installed (the ``[train]`` extra; it knows every launcher) and
``torch.distributed`` directly otherwise (``torchrun``), and opens a gloo group of its own for the
small exchanges these commands make (job results, one object per rank), whatever the device.

The split is static: job ``j`` of a sorted job list belongs to rank ``j % world`` (`Workers.mine`).
It depends only on the job list and the number of processes, never on what earlier runs finished,
so every rank agrees on it without talking, and a relaunch (with any number of processes) skips
what is finished and redoes the rest.

A rank waits for the others at the end (`Workers.all_gather`); ranks can finish far apart (a
resumed run, videos of different lengths), so the exchange group waits up to
``SFPP_DIST_TIMEOUT`` seconds (default 7 days) rather than torch's 30 minutes. A rank that dies
does not leave the others waiting: the launcher stops them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence, TypeVar

from sfpp.errors import SfppError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 7 * 24 * 3600


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise SfppError(f"{name}={raw!r} is not a whole number; the launcher (accelerate launch) sets it") from None


def timeout_s() -> float:
    raw = os.environ.get("SFPP_DIST_TIMEOUT", "").strip()
    if not raw:
        return float(DEFAULT_TIMEOUT_S)
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise SfppError(f"SFPP_DIST_TIMEOUT={raw!r}: give a positive number of seconds")
    return v


@dataclass
class Workers:
    """This process's place among the processes of one launch (rank ``rank`` of ``world``)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    _group: Any = field(default=None, repr=False)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owner(self, job: int) -> int:
        """The rank that runs job number `job` (round robin over the sorted job list)."""
        return job % self.world

    def mine(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """``(job number, item)`` for this rank's share of `items`."""
        return [(j, x) for j, x in enumerate(items) if self.owner(j) == self.rank]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable), in rank order, on every rank; also a barrier."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self._group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier(group=self._group)

    def device(self, requested: str | None) -> str | None:
        """The device this rank uses: ``cuda:LOCAL_RANK`` for ``cuda`` (or no choice on a CUDA machine)
        when several processes run; an explicit ``cuda:N``, ``cpu`` or ``mps`` is kept as given."""
        if not self.distributed:
            return requested
        if requested is None:
            import torch

            return f"cuda:{self.local_rank}" if torch.cuda.is_available() else None
        if requested.strip() == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def prefix(self) -> str:
        """'[rank R/W] ' for lines printed by a rank other than 0 ('' with one process)."""
        return f"[rank {self.rank}/{self.world}] " if self.distributed else ""


_current: Workers | None = None


def workers() -> Workers:
    """This process's `Workers`, joining the process group on first use when launched with several."""
    global _current
    if _current is not None:
        return _current
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        _current = Workers()
        return _current
    _current = _join(world)
    return _current


def _join(world: int) -> Workers:
    import torch
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s())
    if not dist.is_initialized():
        try:
            from accelerate import PartialState
        except ImportError:  # the default install: torchrun's environment is enough
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            PartialState(timeout=timeout)
    if not dist.is_initialized():  # pragma: no cover - a launcher accelerate does not turn into a group
        raise SfppError(f"WORLD_SIZE={world} but no process group could be formed; launch with 'accelerate launch'")
    rank, size = dist.get_rank(), dist.get_world_size()
    local = _env_int("LOCAL_RANK", rank % max(1, torch.cuda.device_count() or 1))
    group = dist.new_group(backend="gloo", timeout=timeout)  # CPU objects, whatever the device
    leave_group_at_exit()
    return Workers(rank=rank, world=size, local_rank=local, _group=group)


_joined = False


def leave_group_at_exit() -> None:
    """Leave the process group before the interpreter tears down (once per process): a rank that finishes
    while another is still at work otherwise dies in gloo's destructor ("terminate called without an
    active exception", SIGABRT), and the launcher then stops the rank still working."""
    import atexit

    global _joined
    _joined = True
    atexit.unregister(_leave)
    atexit.register(_leave)


def exit_process(code) -> None:
    """End the process with `code` (a ``SystemExit.code``). A process that joined a process group leaves it
    and then ends without the interpreter's teardown, where torch's distributed threads can still abort the
    process (SIGABRT) after its work is done and its outputs written; any other process exits normally."""
    import sys

    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else int(code) if isinstance(code, int) else 1
    if not _joined:
        sys.exit(status)
    import logging

    _leave()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - exiting anyway; never turn a clean exit into a traceback
            pass


def reset_for_tests() -> None:
    """Forget the cached `Workers` (tests that change the environment)."""
    global _current
    _current = None
