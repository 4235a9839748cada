"""Peak memory of `sfpp generate` vs video length (issue #2 acceptance).

Runs `sfpp generate` on the `debug` preset in fresh subprocesses for videos of 2x, 8x and 32x the
rolling window and reports each process's peak resident memory (ru_maxrss). Memory must not grow
with length: the 8x run must be within 15% of the 2x run.

    python benchmarks/generate_memory.py [--size 256] [--json]

Frames are decoded and written chunk by chunk, so a video that kept its frames would show up
here: at 256x256, 285 frames of float32 RGB are ~220 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import resource, sys, time
import sfpp
t = time.perf_counter()
res = sfpp.generate("a red circle and a blue square", frames=int(sys.argv[1]), height=int(sys.argv[2]),
                    width=int(sys.argv[2]), out=sys.argv[3], device="cpu", model="debug")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, res.num_frames, time.perf_counter() - t)
"""


def measure(frames: int, size: int, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(frames), str(size), str(out)],
                       capture_output=True, text=True, check=True)
    rss_kb, n, secs = r.stdout.split()[-3:]
    return {"frames": int(n), "peak_rss_mb": int(rss_kb) / 1024, "seconds": float(secs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="height = width in pixels")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from sfpp.presets import PRESETS
    from sfpp.vae_stream import pixel_frames_for_latents

    window = PRESETS["debug"].window
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        for mult in (2, 8, 32):
            frames = pixel_frames_for_latents(mult * window)
            rows[f"{mult}x"] = {"window_multiple": mult, **measure(frames, args.size, Path(d) / f"{mult}.mp4")}
    ratio = rows["8x"]["peak_rss_mb"] / rows["2x"]["peak_rss_mb"]
    report = {"date": time.strftime("%Y-%m-%d"), "size": args.size, "window_latent_frames": window,
              "runs": rows, "ratio_8x_over_2x": ratio, "within_15_percent": abs(ratio - 1) <= 0.15}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, r in rows.items():
            print(f"{k:>4} window: {r['frames']:5d} frames  peak RSS {r['peak_rss_mb']:8.1f} MB  {r['seconds']:6.1f} s")
        print(f"8x / 2x peak memory ratio: {ratio:.3f} ({'OK' if report['within_15_percent'] else 'FAIL'}: limit 1.15)")


if __name__ == "__main__":
    main()
