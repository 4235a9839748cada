"""CPU time of a 60 s `sfpp generate` on the bundled model: current code vs a reference commit.

Acceptance point: on the bundled model, a 60 s video costs less CPU time than today's (measured
side by side in one run).

    python benchmarks/cpu_time_vs_ref.py [--ref-commit dab9dea] [--repeats 3] [--seconds 60]
                                         [--new PATH] [--ref-dir DIR] [--out DIR] [--no-omp1]

The reference is the tree of `--ref-commit`, extracted with `git archive` into `--ref-dir`
(default /tmp/sfpp-ref-<commit>, outside the repository; reused when it already holds that
commit, nothing is committed or registered in the repository). Both sides run

    python -m sfpp.cli.main generate "a red circle and a blue square bouncing on a black background" \
        --seconds 60 --out X.mp4

in fresh subprocesses of this interpreter with PYTHONPATH=<ref tree> or PYTHONPATH=<new tree>
(default: the repository this script lives in), cwd = a scratch folder, and every SFPP_* variable
removed (so the bundled `toy` model and each side's own defaults apply). Which tree each side
really imports is checked once (`sfpp.__file__`) and the script stops if it is not the intended one.

Two configurations, each interleaved ref/new per repeat (order alternating: ref,new then new,ref):
  default : OMP_NUM_THREADS / MKL_NUM_THREADS removed: each side picks its own thread count (what a
            user gets; the current code may choose its own default).
  omp1    : OMP_NUM_THREADS=1 for both sides, separating the thread default from the rest.

Per run: exit code, CPU seconds (user+sys of the process plus its waited-for children, i.e. the
ffmpeg encoder, from os.wait4), wall seconds, peak RSS (ru_maxrss of the tree's largest process),
frames read back from the MP4 (must be seconds * 16). Reported: medians per side and the median
of the per-pair ratios new/ref (and the ratio of medians). Prints a table, then a line
`JSON: {...}`. Exits 1 if any run failed or wrote a wrong frame count, 0 otherwise (the ratio itself
is reported, not judged).
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

PROMPT = "a red circle and a blue square bouncing on a black background"
FPS = 16
REPO = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def extract_ref(commit: str, ref_dir: Path | None) -> tuple[Path, str]:
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    ref_dir = ref_dir or Path(tempfile.gettempdir()) / f"sfpp-ref-{full[:7]}"
    marker = ref_dir / ".sfpp-ref-commit"
    if marker.exists() and marker.read_text().strip() == full and (ref_dir / "sfpp" / "__init__.py").exists():
        return ref_dir, full
    if ref_dir.exists() and any(ref_dir.iterdir()):
        if not marker.exists():
            raise SystemExit(f"{ref_dir} exists, is not empty and was not made by this script; pass --ref-dir")
        import shutil

        shutil.rmtree(ref_dir)
    ref_dir.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "archive", full], cwd=REPO, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(ref_dir)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit("git archive failed")
    marker.write_text(full + "\n")
    return ref_dir, full


def child_env(tree: Path, omp1: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFPP_") and k not in THREAD_VARS}
    env["PYTHONPATH"] = str(tree)
    if omp1:
        env["OMP_NUM_THREADS"] = "1"
    return env


def check_import(tree: Path, scratch: Path) -> str:
    r = subprocess.run([sys.executable, "-c", "import sfpp; print(sfpp.__file__)"], env=child_env(tree, False),
                       cwd=scratch, capture_output=True, text=True, check=False)
    got = r.stdout.strip()
    if r.returncode != 0 or Path(got).resolve() != (tree / "sfpp" / "__init__.py").resolve():
        raise SystemExit(f"PYTHONPATH={tree} imports sfpp from {got or r.stderr.strip()!r}, not from {tree}")
    return got


def torch_default_threads(omp1: bool) -> int | None:
    """torch.get_num_threads() in a bare interpreter with this configuration's environment."""
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                       env=child_env(REPO, omp1), cwd=tempfile.gettempdir(),
                       capture_output=True, text=True, check=False)
    try:
        return int(r.stdout.strip())
    except ValueError:
        return None


def count_frames(mp4: Path) -> tuple[int | None, float | None]:
    try:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(str(mp4))
        meta = next(gen)
        return sum(1 for _ in gen), float(meta["fps"])
    except Exception:  # noqa: BLE001 - reported as None
        return None, None


def run_one(side: str, tree: Path, omp1: bool, seconds: float, out: Path) -> dict:
    cmd = [sys.executable, "-m", "sfpp.cli.main", "generate", PROMPT, "--seconds", f"{seconds:g}", "--out", str(out)]
    for p in (out, out.with_suffix(".json")):
        p.unlink(missing_ok=True)
    log = out.with_suffix(".log")
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(tree, omp1), cwd=out.parent)
        _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    row = {"side": side, "config": "omp1" if omp1 else "default", "rc": rc,
           "cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "user_s": round(ru.ru_utime, 2),
           "sys_s": round(ru.ru_stime, 2), "wall_s": round(wall, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}
    if rc != 0:
        row["error_tail"] = log.read_text(errors="replace")[-1500:]
    row["frames"], row["fps"] = count_frames(out) if out.exists() else (None, None)
    side_json = out.with_suffix(".json")
    if side_json.exists():
        try:
            js = json.loads(side_json.read_text())
            t = js.get("timings") or {}
            row["torch_threads"] = t.get("torch_threads", (js.get("config") or {}).get("threads"))
            row["generate_s"] = round(t["generate_s"], 2) if "generate_s" in t else None
        except Exception as e:  # noqa: BLE001 - reported in the row
            row["sidecar_error"] = f"{type(e).__name__}: {e}"
    return row


def med(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref-commit", default="dab9dea")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--new", type=Path, default=REPO, help="tree of the current code (default: this repository)")
    ap.add_argument("--ref-dir", type=Path, default=None, help="where to extract the reference (default /tmp/sfpp-ref-<sha>)")
    ap.add_argument("--out", type=Path, default=None, help="folder for videos and logs (default: a temp folder)")
    ap.add_argument("--no-omp1", action="store_true", help="skip the OMP_NUM_THREADS=1 secondary rows")
    args = ap.parse_args()

    ref_tree, ref_sha = extract_ref(args.ref_commit, args.ref_dir)
    new_tree = args.new.resolve()
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="sfpp-cpu-vs-ref-")
        out_dir = Path(tmp.name)
    else:
        out_dir = args.out.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
    files = {"ref": check_import(ref_tree, out_dir), "new": check_import(new_tree, out_dir)}
    try:
        new_head = git("rev-parse", "--short", "HEAD", cwd=new_tree)
        new_dirty = bool(git("status", "--porcelain", "--untracked-files=no", cwd=new_tree))
    except Exception:  # noqa: BLE001
        new_head, new_dirty = None, None
    print(f"ref {ref_sha[:7]}: sfpp from {files['ref']}")
    print(f"new {new_head}{' (+uncommitted changes)' if new_dirty else ''}: sfpp from {files['new']}", flush=True)

    trees = {"ref": ref_tree, "new": new_tree}
    configs = [False] if args.no_omp1 else [False, True]
    expected = round(args.seconds * FPS)
    runs: list[dict] = []
    torch_defaults = {("omp1" if o else "default"): torch_default_threads(o) for o in configs}
    print(f"torch's own default thread count (bare interpreter): {torch_defaults}; cores: {os.cpu_count()}")
    for omp1 in configs:
        for i in range(args.repeats):
            order = ("ref", "new") if i % 2 == 0 else ("new", "ref")
            for side in order:
                tag = f"{'omp1' if omp1 else 'default'}_{side}_{i}"
                row = run_one(side, trees[side], omp1, args.seconds, out_dir / f"{tag}.mp4")
                row["repeat"] = i
                if row.get("torch_threads") is None:  # sidecar does not say: torch's own default applied
                    row["torch_threads"], row["torch_threads_from"] = torch_defaults[row["config"]], "torch default"
                runs.append(row)
                print(f"  {row['config']:7s} #{i} {side}: rc={row['rc']} cpu {row['cpu_s']:.1f} s wall "
                      f"{row['wall_s']:.1f} s peak RSS {row['peak_rss_mb']:.0f} MB frames {row['frames']} "
                      f"threads {row.get('torch_threads')}", flush=True)

    summary = {}
    for cfg in ("default", "omp1") if not args.no_omp1 else ("default",):
        sel = {s: [r for r in runs if r["config"] == cfg and r["side"] == s] for s in ("ref", "new")}
        pair_ratios = []
        for i in range(args.repeats):
            a = [r for r in sel["ref"] if r["repeat"] == i and r["rc"] == 0]
            b = [r for r in sel["new"] if r["repeat"] == i and r["rc"] == 0]
            if a and b and a[0]["cpu_s"] > 0:
                pair_ratios.append(b[0]["cpu_s"] / a[0]["cpu_s"])
        m = {s: {k: med([r[k] for r in sel[s] if r["rc"] == 0]) for k in ("cpu_s", "wall_s", "peak_rss_mb")}
             for s in sel}
        summary[cfg] = {
            **m,
            "cpu_ratio_new_over_ref_median_of_pairs": round(statistics.median(pair_ratios), 4) if pair_ratios else None,
            "cpu_ratio_of_medians": (round(m["new"]["cpu_s"] / m["ref"]["cpu_s"], 4)
                                     if m["new"]["cpu_s"] and m["ref"]["cpu_s"] else None),
            "wall_ratio_of_medians": (round(m["new"]["wall_s"] / m["ref"]["wall_s"], 4)
                                      if m["new"]["wall_s"] and m["ref"]["wall_s"] else None),
            "pair_ratios": [round(x, 4) for x in pair_ratios],
            "torch_default_threads": torch_defaults[cfg],
            "torch_threads": {s: sorted({r.get("torch_threads") for r in sel[s]}, key=str) for s in sel},
        }

    failures = [f"{r['config']} {r['side']} #{r['repeat']}: rc={r['rc']}, frames={r['frames']} (expected {expected})"
                for r in runs if r["rc"] != 0 or r["frames"] != expected]

    print()
    print(f"{'config':8s} {'side':4s} {'#':>2s} {'rc':>3s} {'frames':>6s} {'cpu s':>8s} {'user s':>8s} {'sys s':>7s} "
          f"{'wall s':>8s} {'RSS MB':>8s} {'threads':>7s}")
    for r in runs:
        print(f"{r['config']:8s} {r['side']:4s} {r['repeat']:2d} {r['rc']:3d} {r['frames']!s:>6s} {r['cpu_s']:8.1f} "
              f"{r['user_s']:8.1f} {r['sys_s']:7.1f} {r['wall_s']:8.1f} {r['peak_rss_mb']:8.0f} "
              f"{str(r.get('torch_threads')) + ('*' if r.get('torch_threads_from') else ''):>7s}")
    print("threads: from the sidecar; * = not recorded by that code, torch's default for the environment")
    print()
    for cfg, s in summary.items():
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}"
        print(f"{cfg:8s} median CPU ref {fmt(s['ref']['cpu_s'])} s, new {fmt(s['new']['cpu_s'])} s; "
              f"new/ref CPU ratio {s['cpu_ratio_new_over_ref_median_of_pairs']} (median of pairs), "
              f"{s['cpu_ratio_of_medians']} (of medians); wall ratio {s['wall_ratio_of_medians']}")
    if failures:
        print("FAIL: " + "; ".join(failures))

    for r in runs:
        r.pop("error_tail", None) if r["rc"] == 0 else None
    report = {
        "benchmark": "cpu_time_vs_ref", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "prompt": PROMPT, "seconds": args.seconds,
        "expected_frames": expected, "repeats": args.repeats,
        "ref": {"commit": ref_sha, "tree": str(ref_tree), "sfpp_file": files["ref"]},
        "new": {"head": new_head, "uncommitted_changes": new_dirty, "tree": str(new_tree), "sfpp_file": files["new"]},
        "summary": summary, "runs": runs, "ok": not failures, "failures": failures,
    }
    print("JSON: " + json.dumps(report))
    if tmp is not None:
        tmp.cleanup()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
