"""Long `sfpp generate` on the bundled model: frame count, fps and peak RSS vs a short run.

Acceptance point: `sfpp generate "a plane over snowy mountains" --seconds 240` with no other option
exits 0 on the bundled model and writes 3840 frames at 16 fps (read back); its peak RSS is within
10% of a 10 s run.

    python benchmarks/generate_long_rss.py [--seconds-long 240] [--seconds-short 10] [--repeats 1]
                                           [--out DIR] [--prompt TEXT]

Each run is `python -m sfpp.cli.main generate PROMPT --seconds S --out DIR/<name>.mp4` in a fresh
subprocess of this interpreter (the `sfpp` of the current environment), with SFPP_MODEL and every
other SFPP_* variable removed from its environment, so the defaults (bundled `toy` model) apply.
Long and short runs are interleaved (short, long, short, long, ...); medians over the repeats.

Per run: exit code, wall seconds, CPU seconds (user+sys of the process and its waited-for
children, i.e. the ffmpeg encoder, from os.wait4), peak RSS (ru_maxrss from os.wait4: the largest
single process of the tree, not a sum), the frame count and fps read back from the MP4 (decoded
frame by frame in this process, so it costs nothing in the child's RSS), and the sidecar JSON's
`num_frames` / `fps`.

Prints a table, then one line `JSON: {...}`. Exits 1 if any long run failed, wrote a frame count
other than seconds_long * 16 or an fps other than 16, or the median peak RSS of the long runs
exceeds 1.10x that of the short runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPECTED_FPS = 16
RSS_LIMIT = 1.10


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFPP_")}
    return env


def read_back(mp4: Path) -> tuple[int | None, float | None, str | None]:
    """(frames, fps, error) decoded from the MP4 one frame at a time."""
    try:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(str(mp4))
        meta = next(gen)
        n = sum(1 for _ in gen)
        return n, float(meta["fps"]), None
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return None, None, f"{type(e).__name__}: {e}"


def run_one(prompt: str, seconds: float, out: Path, log: Path) -> dict:
    cmd = [sys.executable, "-m", "sfpp.cli.main", "generate", prompt, "--seconds", f"{seconds:g}", "--out", str(out)]
    for p in (out, out.with_suffix(".json")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(), cwd=out.parent)
        _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = {
        "seconds": seconds,
        "rc": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "user_s": round(ru.ru_utime, 2),
        "sys_s": round(ru.ru_stime, 2),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "out": str(out),
        "log": str(log),
    }
    if proc.returncode != 0:
        row["error_tail"] = log.read_text(errors="replace")[-2000:]
    if out.exists():
        row["mp4_frames"], row["mp4_fps"], err = read_back(out)
        if err:
            row["read_error"] = err
    side = out.with_suffix(".json")
    if side.exists():
        try:
            js = json.loads(side.read_text())
            row["sidecar_num_frames"] = js.get("num_frames")
            row["sidecar_fps"] = js.get("fps")
            row["sidecar_model"] = js.get("model") or (js.get("config") or {}).get("model")
            row["sidecar_timings"] = js.get("timings")
        except Exception as e:  # noqa: BLE001
            row["sidecar_error"] = f"{type(e).__name__}: {e}"
    return row


def med(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds-long", type=float, default=240)
    ap.add_argument("--seconds-short", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=1, help="pairs (short, long), interleaved")
    ap.add_argument("--out", type=Path, default=None, help="folder for the videos (default: a temp folder)")
    ap.add_argument("--prompt", default="a plane over snowy mountains")
    args = ap.parse_args()

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="sfpp-long-rss-")
        out_dir = Path(tmp.name)
    else:
        out_dir = args.out.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)

    probe = subprocess.run([sys.executable, "-c", "import sfpp; print(sfpp.__file__)"], capture_output=True,
                           text=True, env=child_env(), cwd=out_dir, check=False)
    print(f"sfpp imported from: {probe.stdout.strip() or probe.stderr.strip()}", flush=True)

    runs: dict[str, list[dict]] = {"short": [], "long": []}
    for i in range(args.repeats):
        for kind, secs, name in (("short", args.seconds_short, "short"), ("long", args.seconds_long, "long")):
            stem = name if args.repeats == 1 else f"{name}_{i}"
            row = run_one(args.prompt, secs, out_dir / f"{stem}.mp4", out_dir / f"{stem}.log")
            runs[kind].append(row)
            print(f"  [{i + 1}/{args.repeats}] {kind:5s} {secs:6g} s: rc={row['rc']} wall {row['wall_s']:.1f} s "
                  f"cpu {row['cpu_s']:.1f} s peak RSS {row['peak_rss_mb']:.1f} MB "
                  f"frames {row.get('mp4_frames')} fps {row.get('mp4_fps')}", flush=True)

    expected_frames = round(args.seconds_long * EXPECTED_FPS)
    failures = []
    for r in runs["long"]:
        if r["rc"] != 0:
            failures.append(f"long run exited {r['rc']}")
        if r.get("mp4_frames") != expected_frames:
            failures.append(f"long run MP4 has {r.get('mp4_frames')} frames, expected {expected_frames}")
        if r.get("mp4_fps") is None or abs(r["mp4_fps"] - EXPECTED_FPS) > 1e-6:
            failures.append(f"long run MP4 fps {r.get('mp4_fps')}, expected {EXPECTED_FPS}")
        if r.get("sidecar_num_frames") != expected_frames or r.get("sidecar_fps") != EXPECTED_FPS:
            failures.append(f"long run sidecar num_frames={r.get('sidecar_num_frames')} fps={r.get('sidecar_fps')}")
    for r in runs["short"]:
        if r["rc"] != 0:
            failures.append(f"short run exited {r['rc']}")
    rss_long, rss_short = med(runs["long"], "peak_rss_mb"), med(runs["short"], "peak_rss_mb")
    ratio = rss_long / rss_short if rss_long and rss_short else None
    if ratio is None or ratio > RSS_LIMIT:
        failures.append(f"peak RSS long/short = {ratio if ratio is None else round(ratio, 3)} (limit {RSS_LIMIT})")

    print()
    print(f"{'run':>6} {'seconds':>8} {'rc':>3} {'frames':>7} {'fps':>5} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12}")
    for kind in ("short", "long"):
        for r in runs[kind]:
            fps = f"{r['mp4_fps']:g}" if r.get("mp4_fps") is not None else "-"
            print(f"{kind:>6} {r['seconds']:8g} {r['rc']:3d} {r.get('mp4_frames', '-')!s:>7} {fps:>5} "
                  f"{r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_rss_mb']:12.1f}")
    print(f"median peak RSS: long {rss_long} MB, short {rss_short} MB, ratio "
          f"{'n/a' if ratio is None else f'{ratio:.3f}'} (limit {RSS_LIMIT})")
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))

    for rows in runs.values():  # keep the JSON line short
        for r in rows:
            r.pop("sidecar_timings", None)
    report = {
        "benchmark": "generate_long_rss",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "sfpp_file": probe.stdout.strip(),
        "prompt": args.prompt, "seconds_long": args.seconds_long, "seconds_short": args.seconds_short,
        "repeats": args.repeats, "expected_frames": expected_frames,
        "median": {k: {"wall_s": med(v, "wall_s"), "cpu_s": med(v, "cpu_s"), "peak_rss_mb": med(v, "peak_rss_mb")}
                   for k, v in runs.items()},
        "rss_ratio_long_over_short": None if ratio is None else round(ratio, 4),
        "rss_limit": RSS_LIMIT,
        "runs": runs,
        "pass": not failures, "failures": failures,
    }
    print("JSON: " + json.dumps(report))
    if tmp is not None:
        tmp.cleanup()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
