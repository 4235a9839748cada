"""Peak memory of one Self-Forcing++ `extended` generator step vs rollout length N (issue #3).

Each run is a fresh process that builds the `debug` distiller (window K = 9 latent frames,
128x128 pixels = 16x16 latents) and runs one generator update with N fixed and the window at
the end of the rollout (i = N - K, the longest gradient-free prefix). Only the window's
exit-step forwards keep activations for backward, so peak memory must not grow with N:
N = 8K must be within 20% of N = 2K.

    python benchmarks/extended_memory.py [--size 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import resource, sys, time, tempfile, pathlib
from accelerate import Accelerator
from sfpp.config_io import from_dict
from sfpp.train.config import DistillConfig
from sfpp.train.trainer import Distiller
n, size, d = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
(d / "p.txt").write_text("a red circle\n")
cfg = from_dict(DistillConfig, {"model": {"preset": "debug", "height": size, "width": size},
                                "data": {"prompts": str(d / "p.txt")}, "rollout": {"window": 9},
                                "run": {"sample_every": 0}})
tr = Distiller(cfg, stage="extended", out=d / "run", total_steps=1, accelerator=Accelerator(cpu=True),
               config_dir=d, resume=False)
K = tr.K
tr.shared_draws = lambda purpose: {"N": n, "window_start": n - K, "exit_step": 3, "renoise_step": 1}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
m = tr.generator_update()
print(json.dumps({"N": n, "K": K, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_step_mb": base / 1024, "step_s": time.perf_counter() - t, "gen_loss": m["gen_loss"]}))
""".replace("import resource", "import json, resource")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = {}
    for mult in (2, 8):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, "-c", CHILD, str(mult * 9), str(args.size), d],
                               capture_output=True, text=True, check=True)
            rows[f"{mult}K"] = json.loads(r.stdout.strip().splitlines()[-1])
    ratio = rows["8K"]["peak_rss_mb"] / rows["2K"]["peak_rss_mb"]
    report = {"date": time.strftime("%Y-%m-%d"), "size": args.size, "runs": rows, "ratio_8K_over_2K": ratio,
              "within_20_percent": abs(ratio - 1) <= 0.20}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for k, r in rows.items():
        print(f"N = {k:>2} ({r['N']:3d} latent frames): peak RSS {r['peak_rss_mb']:7.1f} MB "
              f"(before the step {r['rss_before_step_mb']:7.1f} MB), step {r['step_s']:5.1f} s")
    print(f"8K / 2K peak memory ratio: {ratio:.3f} ({'OK' if report['within_20_percent'] else 'FAIL'}: limit 1.20)")


if __name__ == "__main__":
    main()
