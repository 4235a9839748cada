"""Peak memory of each process while a sharded (FSDP) training checkpoint is saved.

Run under accelerate with two CPU processes (gloo):

    accelerate launch --multi_gpu --num_processes 2 benchmarks/checkpoint_memory.py --width 512 --layers 6

It builds the `debug` model family scaled up in width and depth (so the training state - student,
critic, EMA and both optimisers - is a few hundred MB), trains one step of the self-forcing stage
with `[run] fsdp = true`, then saves a checkpoint two ways and samples each process's resident memory
(/proc/self/statm, every 2 ms) during each save:

* ``sharded``: what sfpp does now (`Distiller.save_checkpoint`): every process writes its own shards
  with torch.distributed.checkpoint; the exports are gathered one tensor at a time;
* ``gathered``: what it did before: the full state (student, critic, EMA, optimiser moments) gathered
  on every process (`Distiller.state()`), as a full-state checkpoint needs.

Prints, per process, the state's full size, this process's shard, the largest single tensor, and the
peak RSS above the pre-save baseline for both ways; rank 0 also writes a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    def __init__(self):
        self.peak, self.base, self._stop = 0.0, 0.0, threading.Event()

    def __enter__(self):
        import gc

        gc.collect()
        self.base = self.peak = _rss_mb()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def above(self) -> float:
        return self.peak - self.base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=512, help="transformer width (heads x 64)")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "sfpp-ckpt-mem"),
                    help="work folder shared by the processes (emptied first)")
    args = ap.parse_args()

    import sfpp.arch as arch

    arch.DEBUG_TRANSFORMER.update(num_attention_heads=args.width // 64, attention_head_dim=64,
                                  ffn_dim=4 * args.width, num_layers=args.layers)
    import torch
    from accelerate import Accelerator

    from sfpp.config_io import load_config
    from sfpp.parallel import is_sharded
    from sfpp.train.config import DistillConfig
    from sfpp.train.trainer import Distiller

    root = Path(args.root)
    acc = Accelerator(cpu=True)
    cfg_dir = root / "cfg"
    if acc.is_main_process:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        from tests.train_helpers import write_config

        write_config(cfg_dir, run={"device": "cpu", "fsdp": True, "stages": ["self-forcing"]},
                     self_forcing={"base_steps": 1}, dmd={"critic_ratio": 1})
    acc.wait_for_everyone()
    cfg = load_config(DistillConfig, cfg_dir / "config.toml")
    tr = Distiller(cfg, stage="self-forcing", out=root / "run", total_steps=1, accelerator=acc, config_dir=cfg_dir,
                   resume=False)
    tr.train_step()  # Adam moments and the EMA now exist

    def nbytes(tensors, local: bool) -> int:
        total = 0
        for t in tensors:
            if local and is_sharded(t):
                t = t.to_local()
            total += t.numel() * t.element_size()
        return total

    params = [*tr.nets.student.parameters(), *tr.nets.critic.parameters()]
    moments = [v for opt in (tr.opt_g, tr.opt_c) for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor) and v.ndim > 0]
    ema = list(tr.ema.state.values())
    everything = params + moments + ema
    full_mb = nbytes(everything, local=False) / 2**20
    own_mb = nbytes(everything, local=True) / 2**20
    block_mb = max(t.numel() * t.element_size() for t in everything) / 2**20
    block_all_mb = sum(p.numel() * p.element_size() for p in tr.nets.student.transformer.blocks[0].parameters()) / 2**20

    acc.wait_for_everyone()
    with PeakRSS() as sharded:
        tr.save_checkpoint()
    acc.wait_for_everyone()
    with PeakRSS() as gathered:
        state = tr.state()  # the full state on every process
        del state
    acc.wait_for_everyone()
    row = {"rank": acc.process_index, "world": acc.num_processes, "width": args.width, "layers": args.layers,
           "state_full_mb": round(full_mb, 1), "own_shards_mb": round(own_mb, 1),
           "largest_tensor_mb": round(block_mb, 2), "one_block_mb": round(block_all_mb, 2),
           "sharded_save_peak_above_base_mb": round(sharded.above, 1),
           "gathered_state_peak_above_base_mb": round(gathered.above, 1)}
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
