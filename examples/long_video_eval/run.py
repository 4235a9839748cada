#!/usr/bin/env python
"""Self-Forcing++'s long-video protocol for one student: generate, evaluate, print the paper's table.

For each length (the paper's 5 s, 50 s, 75 s and 100 s by default) every prompt x seed of the prompt
file is rolled out with `sfpp.rollout_batch` into OUT/rollouts/<L>s/ (resumable; split across the
processes when launched with `accelerate launch`), then all lengths are scored in one
`sfpp.evaluate` pass (the offline metrics always; VBench with --weights-dir; the Gemini Visual
Stability judge when GOOGLE_API_KEY or GEMINI_API_KEY is set) into OUT/evaluate/, and rank 0 prints
Text Alignment, Temporal Quality, Dynamic Degree, Visual Stability and Framewise Quality per length
with the paper's published rows beside them (also written to OUT/table.md and OUT/table.json).

    python examples/long_video_eval/run.py --model toy --prompts examples/long_video_eval/prompts_toy.txt
    accelerate launch --num_processes 8 examples/long_video_eval/run.py --model wan2.1-t2v-1.3b \\
        --weights /models/Wan2.1-T2V-1.3B-Diffusers --checkpoint runs/sfpp/extended/student_ema.safetensors \\
        --prompts moviegen128.txt --weights-dir /models/vbench

See README.md in this folder (how to get the paper's 128 MovieGen prompts, what each column is).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

COLUMNS = ("Text Alignment", "Temporal Quality", "Dynamic Degree", "Visual Stability", "Framewise Quality")

# Self-Forcing++ (arXiv 2510.02283v1), long-video results (Tables 1-2; the aggregates' components are in
# appendix Table 4): TA / TQ / DD / VS / FQ on the 128 MovieGen prompts, scored with VBench-Long and the
# Gemini-2.5-Pro Visual Stability judge. None: the method failed at that length ("-" in the paper).
PAPER_SOURCE = "Self-Forcing++ paper, arXiv 2510.02283v1, long-video table (Tables 1-2)"
PAPER_ROWS: dict[int, dict[str, tuple[float, ...] | None]] = {
    50: {
        "NOVA": (24.58, 86.53, 31.96, 45.94, 34.45),
        "Pyramid Flow": None,
        "MAGI-1": (26.04, 88.34, 28.49, 51.25, 54.20),
        "SkyReels-V2": (23.73, 88.78, 39.15, 60.41, 54.13),
        "CausVid": (25.25, 89.34, 37.35, 40.47, 61.56),
        "Self-Forcing": (24.77, 88.17, 34.35, 40.12, 61.06),
        "Self-Forcing++": (26.37, 91.03, 55.36, 90.94, 60.82),
    },
    75: {
        "NOVA": (23.37, 86.32, 31.24, 34.06, 31.53),
        "Pyramid Flow": None,
        "MAGI-1": (24.95, 87.89, 24.82, 43.28, 52.04),
        "SkyReels-V2": (22.70, 88.99, 39.89, 55.47, 51.55),
        "CausVid": (24.76, 89.14, 35.82, 39.84, 60.96),
        "Self-Forcing": (23.39, 87.79, 29.15, 35.00, 60.02),
        "Self-Forcing++": (26.31, 91.00, 55.62, 86.10, 60.67),
    },
    100: {
        "NOVA": (22.89, 86.24, 31.09, 32.97, 31.03),
        "Pyramid Flow": None,
        "MAGI-1": (23.75, 87.62, 22.21, 39.38, 50.90),
        "SkyReels-V2": (22.05, 88.80, 38.75, 56.72, 50.48),
        "CausVid": (24.41, 89.06, 34.60, 39.21, 61.01),
        "Self-Forcing": (22.00, 87.39, 26.41, 32.03, 58.25),
        "Self-Forcing++": (26.04, 90.87, 54.12, 84.22, 60.66),
    },
}
# At 5 s the paper reports VBench Total / Quality / Semantic (Table 1), not the long-video columns.
PAPER_5S_VBENCH = {"CausVid": (82.46, 83.61, 77.84), "Self-Forcing": (83.00, 83.71, 80.14),
                   "Self-Forcing++": (83.11, 83.79, 80.37)}
PROXY_MARK = "*"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("the student")
    g.add_argument("--model", default="toy", help="Model preset (toy, wan2.1-t2v-1.3b, ...). Default: toy.")
    g.add_argument("--checkpoint", help="The student's checkpoint (.safetensors); default: the preset's own.")
    g.add_argument("--weights", help="Local weights folder of a Diffusers preset (Wan).")
    g.add_argument("--device", help="Rollout device (default: CUDA when there is one; cuda:LOCAL_RANK per process).")
    g = ap.add_argument_group("what to generate")
    g.add_argument("--prompts", default=str(HERE / "prompts_toy.txt"), help="Prompt file, one per line.")
    g.add_argument("--max-prompts", type=int, help="Use the first N prompts (e.g. 128 of MovieGenVideoBench.txt).")
    g.add_argument("--seeds", type=int, default=1, help="Videos per prompt (seed k: SEED + prompt index + 1000000 k).")
    g.add_argument("--seed", type=int, default=0, help="Base seed.")
    g.add_argument("--lengths", default="5,50,75,100", help="Video lengths in seconds, comma-separated.")
    g.add_argument("--time-scale", type=float, default=1.0,
                   help="Generate each length times this factor (a smoke run; the table keeps the nominal lengths).")
    g = ap.add_argument_group("how to score")
    g.add_argument("--weights-dir", help="Local VBench weights: adds the VBench metrics (see 'sfpp evaluate --help').")
    g.add_argument("--protocol", help="sfpp evaluate --protocol (default: vbench-long with --weights-dir, else windows).")
    g.add_argument("--eval-device", help="Device for the VBench networks (default: cuda when there is one, else cpu).")
    g.add_argument("--judge-model", default="gemini-2.5-pro", help="Gemini model for Visual Stability.")
    g.add_argument("--no-judge", action="store_true", help="Skip the Gemini judge even when an API key is set.")
    ap.add_argument("--out", default="runs/long_video_eval", help="Output folder.")
    args = ap.parse_args(argv)
    try:
        args.length_list = [float(x) for x in args.lengths.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--lengths must be numbers of seconds, e.g. 5,50,75,100; got {args.lengths!r}")
    if not args.length_list or any(not (math.isfinite(x) and x > 0) for x in args.length_list):
        ap.error("--lengths must be positive numbers of seconds")
    if not (math.isfinite(args.time_scale) and args.time_scale > 0):
        ap.error("--time-scale must be positive")
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    return args


def length_label(seconds: float) -> str:
    return f"{seconds:g}s"


def metric_names(args) -> list[str]:
    from sfpp.evaluate.judge import api_key_from_env

    names = ["offline"]
    if args.weights_dir:
        names.append("vbench")
    if not args.no_judge and api_key_from_env():
        names.append("visual_stability")
    return names


def student_row(run: dict) -> tuple[list[float | None], list[bool]]:
    """TA / TQ / DD / VS / FQ of one evaluated run, and which of them are offline proxies."""
    agg, summ = run["aggregates"], run["summary"]

    def summary(name: str, scale: float = 1.0) -> float | None:
        v = (summ.get(name) or {}).get("value")
        return None if v is None else scale * v

    values: list[float | None] = []
    proxy: list[bool] = []
    for exact, fallback in (
        (agg.get("text_alignment"), None),
        (agg.get("temporal_quality"), agg.get("temporal_quality_proxy")),
        (agg.get("dynamic_degree_x100"), summary("dynamic_degree_proxy", 100.0)),
        (agg.get("visual_stability"), summary("exposure_stability_proxy")),
        (agg.get("framewise_quality"), None),
    ):
        values.append(exact if exact is not None else fallback)
        proxy.append(exact is None and fallback is not None)
    return values, proxy


def _cell(v: float | None, proxy: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" + (PROXY_MARK if proxy else "")


def build_table(results: dict, lengths: list[float], student: str, time_scale: float) -> dict:
    """Per nominal length: the student's row and the paper's rows (JSON-ready)."""
    runs = {r["name"]: r for r in results["runs"]}
    blocks = []
    for L in lengths:
        run = runs.get(length_label(L))
        values, proxy = student_row(run) if run else ([None] * 5, [False] * 5)
        paper = PAPER_ROWS.get(int(L)) if float(L).is_integer() else None
        blocks.append({
            "length_s": L,
            "generated_s": L * time_scale,
            "videos": len(run["videos"]) if run else 0,
            "student": {"name": student, "values": dict(zip(COLUMNS, values)),
                        "proxy": [c for c, p in zip(COLUMNS, proxy) if p]},
            "paper": None if paper is None else {m: None if v is None else dict(zip(COLUMNS, v)) for m, v in paper.items()},
        })
    return {"columns": list(COLUMNS), "paper_source": PAPER_SOURCE, "time_scale": time_scale, "blocks": blocks}


def render_table(table: dict) -> str:
    """The paper's layout as text: one block per length, the student first, the published rows below."""
    lines = []
    name_w = max([len("Model")] + [len(b["student"]["name"]) for b in table["blocks"]]
                 + [len(m) + 9 for m in PAPER_ROWS[50]])
    widths = [max(len(c), 8) for c in COLUMNS]

    def row(name: str, cells: list[str]) -> str:
        return "  ".join([name.ljust(name_w)] + [c.rjust(w) for c, w in zip(cells, widths)])

    any_proxy = False
    for b in table["blocks"]:
        gen = "" if b["generated_s"] == b["length_s"] else f", generated at {b['generated_s']:g} s (--time-scale)"
        lines.append(f"== {b['length_s']:g} s ({b['videos']} videos{gen}) ==")
        lines.append(row("Model", list(COLUMNS)))
        lines.append(row("-" * name_w, ["-" * w for w in widths]))
        st = b["student"]
        proxy = set(st["proxy"])
        any_proxy |= bool(proxy)
        lines.append(row(st["name"], [_cell(st["values"][c], c in proxy) for c in COLUMNS]))
        if b["paper"] is None:
            if int(b["length_s"]) == 5 and float(b["length_s"]).is_integer():
                lines.append("  (at 5 s the paper reports VBench Total/Quality/Semantic instead: "
                             + "; ".join(f"{m} {'/'.join(f'{x:.2f}' for x in v)}" for m, v in PAPER_5S_VBENCH.items())
                             + ")")
            else:
                lines.append("  (the paper publishes no row at this length)")
        else:
            for m, vals in b["paper"].items():
                cells = ["-"] * 5 if vals is None else [f"{vals[c]:.2f}" for c in COLUMNS]
                lines.append(row(f"{m} (paper)", cells))
        lines.append("")
    lines.append(f"paper rows: {table['paper_source']}.")
    if any_proxy:
        lines.append(f"{PROXY_MARK} offline proxy (no --weights-dir / no judge key): the same protocol on OpenCV "
                     "stand-ins (Temporal Quality from the *_proxy metrics, Dynamic Degree from dynamic_degree_proxy, "
                     "Visual Stability from exposure_stability_proxy); not comparable with the paper's numbers.")
    if table["time_scale"] != 1.0:
        lines.append(f"smoke run: every length generated at x{table['time_scale']:g}; the numbers are not the paper's "
                     "protocol.")
    return "\n".join(lines)


def render_markdown(table: dict) -> str:
    out = []
    for b in table["blocks"]:
        out += [f"### {b['length_s']:g} s", "", "| Model | " + " | ".join(COLUMNS) + " |",
                "|---|" + "---|" * len(COLUMNS)]
        st = b["student"]
        proxy = set(st["proxy"])
        out.append(f"| **{st['name']}** | " + " | ".join(_cell(st["values"][c], c in proxy) for c in COLUMNS) + " |")
        for m, vals in (b["paper"] or {}).items():
            out.append(f"| {m} (paper) | " + " | ".join("-" if vals is None else f"{vals[c]:.2f}" for c in COLUMNS) + " |")
        out.append("")
    out.append(f"Paper rows: {table['paper_source']}. {PROXY_MARK}: offline proxy, not comparable with the paper.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import sfpp
    from sfpp.batch import read_prompts
    from sfpp.distributed_jobs import workers
    from sfpp.evaluate import EvaluateConfig, evaluate_runs, write_outputs

    w = workers()
    say = print if w.is_main else (lambda *a, **k: None)
    out = Path(args.out)
    prompts = read_prompts(args.prompts)
    if args.max_prompts:
        prompts = prompts[: args.max_prompts]
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    student = f"{ckpt.parent.name}/{ckpt.stem}".lstrip("/") if ckpt else f"{args.model} (its own weights)"
    runs = []
    for L in args.length_list:
        folder = out / "rollouts" / length_label(L)
        say(f"[long-video-eval] {length_label(L)}: {len(prompts)} prompts x {args.seeds} seed{'s' if args.seeds != 1 else ''} on {w.world} "
            f"process(es) -> {folder}", flush=True)
        res = sfpp.rollout_batch(prompts, folder, details=True, seeds=args.seeds, model=args.model,
                                 checkpoint=args.checkpoint, weights=args.weights, device=args.device,
                                 seed=args.seed, seconds=L * args.time_scale)
        say(f"[long-video-eval] {length_label(L)}: {res.summary()}", flush=True)
        runs.append(folder)

    metrics = metric_names(args)
    protocol = args.protocol or ("vbench-long" if args.weights_dir else "windows")
    device = args.eval_device or ("cuda" if torch.cuda.is_available() else "cpu")
    say(f"[long-video-eval] evaluating {', '.join(metrics)} (protocol {protocol}) on {w.world} process(es)", flush=True)
    cfg = EvaluateConfig(metrics=tuple(metrics), weights_dir=Path(args.weights_dir) if args.weights_dir else None,
                         judge_model=args.judge_model, protocol=protocol, device=device)
    ev = evaluate_runs(runs, cfg)
    if not w.is_main:  # rank 0 reports the merged errors; a rank exiting non-zero would make the launcher stop it
        return 0
    write_outputs(ev, out / "evaluate")
    table = build_table(ev.to_dict(), args.length_list, student, args.time_scale)
    (out / "table.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    (out / "table.md").write_text(render_markdown(table), encoding="utf-8")
    print()
    print(render_table(table))
    print(f"\nwrote {out / 'evaluate'} (results.json, CSVs, plots), {out / 'table.md'} and {out / 'table.json'}")
    for e in ev.errors:
        print(f"error: {e['run']}/{e['error']}", file=sys.stderr)
    return 1 if ev.errors else 0


if __name__ == "__main__":
    sys.exit(main())
