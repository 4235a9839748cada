"""Outputs of `sfpp evaluate`: a rich table (runs side by side), JSON, CSV and PNG plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from sfpp.evaluate.aggregate import AGGREGATE_NEEDS
from sfpp.evaluate.metrics import METRICS
from sfpp.evaluate.runner import Evaluation

_AGG_LABELS = {
    "vbench_quality_score": "VBench Quality score",
    "text_alignment": "SF++ Text Alignment",
    "temporal_quality": "SF++ Temporal Quality",
    "dynamic_degree_x100": "SF++ Dynamic Degree",
    "visual_stability": "SF++ Visual Stability",
    "framewise_quality": "SF++ Framewise Quality",
    "temporal_quality_proxy": "Temporal Quality (proxy)",
}


_KIND = {"vbench-formula": "vbench", "vbench": "vbench", "proxy": "proxy", "sfpp": "sfpp", "judge": "judge"}


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    av = abs(v)
    return f"{v:.4f}" if av < 10 else f"{v:.2f}"


def render_table(ev: Evaluation) -> Table:
    """Metrics as rows, runs as columns; aggregates below (n/a when components are missing)."""
    t = Table(title="sfpp evaluate", show_lines=False)
    t.add_column("metric", no_wrap=True)
    t.add_column("unit", style="dim", no_wrap=True)
    t.add_column("kind", style="dim", no_wrap=True)
    for rd in ev.runs:
        t.add_column(rd["name"], justify="right", overflow="fold")
    for m in ev.metrics:
        spec = METRICS[m]
        cells = []
        for rd in ev.runs:
            s = rd["summary"][m]
            n_total = len(rd["videos"])
            cell = _fmt(s["value"])
            if s["n_videos"] and s["n_videos"] < n_total:
                cell += f" ({s['n_videos']}/{n_total})"
            cells.append(cell)
        t.add_row(m, spec.unit, _KIND.get(spec.family, spec.family), *cells)
    have_metrics = set(ev.metrics)
    t.add_section()
    for key, label in _AGG_LABELS.items():
        if not (set(AGGREGATE_NEEDS[key]) & have_metrics):
            continue  # nothing of it was asked for
        t.add_row(f"[bold]{label}[/]", "0-100", "agg", *[_fmt(rd["aggregates"].get(key)) for rd in ev.runs])
    return t


def missing_aggregate_notes(ev: Evaluation) -> list[str]:
    """One line per aggregate that could not be formed, naming the metrics it lacks."""
    notes = []
    have = set(ev.metrics)
    for key, label in _AGG_LABELS.items():
        needs = AGGREGATE_NEEDS[key]
        if set(needs) & have and not set(needs) <= have:
            missing = [n if n in METRICS else f"{n} (not implemented in sfpp yet)" for n in needs if n not in have]
            notes.append(f"{label}: n/a, needs {', '.join(missing)}")
    return notes


def write_json(ev: Evaluation, path: Path) -> None:
    """results.json, replaced in one step (a reader never sees half a file)."""
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(ev.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(ev: Evaluation, out: Path) -> tuple[Path, Path]:
    """`windows.csv` (one row per run/video/metric/window) and `summary.csv` (run x metric)."""
    win_path, sum_path = out / "windows.csv", out / "summary.csv"
    with open(win_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["run", "video", "metric", "window", "start_s", "end_s", "start_frame", "end_frame", "value"])
        for rd in ev.runs:
            for vd in rd["videos"]:
                for m in ev.metrics:
                    for row in vd["metrics"].get(m, {}).get("windows") or []:
                        w.writerow([rd["name"], vd["name"], m, row["index"], row["start_s"], row["end_s"],
                                    row["start_frame"], row["end_frame"], "" if row["value"] is None else row["value"]])
    with open(sum_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["run", "metric", "family", "value", "n_videos"])
        for rd in ev.runs:
            for m in ev.metrics:
                s = rd["summary"][m]
                w.writerow([rd["name"], m, METRICS[m].family, "" if s["value"] is None else s["value"], s["n_videos"]])
            for key, v in rd["aggregates"].items():
                w.writerow([rd["name"], key, "aggregate", "" if v is None else v, ""])
    return win_path, sum_path


def write_plots(ev: Evaluation, out: Path) -> list[Path]:
    """One PNG per windowed metric (x: time in seconds, one line per run), plus per-frame flow."""
    try:
        import matplotlib
    except ImportError:  # the [eval] extra
        from sfpp.errors import SfppError

        raise SfppError("plots need matplotlib: pip install 'sfpp[eval]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in ev.metrics:
        spec = METRICS[m]
        if spec.whole_video:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        drew = False
        for rd in ev.runs:
            pts = rd["curves"].get(m) or []
            if not pts:
                continue
            x = [p["mid_s"] for p in pts]
            y = [p["value"] for p in pts]
            ax.plot(x, y, marker="o", linewidth=1.8, markersize=4, label=f"{rd['name']} ({len(rd['videos'])} videos)")
            drew = True
        if not drew:
            plt.close(fig)
            continue
        ax.set_xlabel("time in video (s), window centre")
        ax.set_ylabel(f"{m} [{spec.unit}]")
        kind = {"proxy": " (offline proxy, not VBench)", "sfpp": " (sfpp diagnostic)"}.get(spec.family, "")
        ax.set_title(f"{m}{kind}: mean over videos per window", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(title="run", fontsize=8)
        fig.tight_layout()
        p = out / f"{m}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    if "flow_magnitude" in ev.metrics:
        p = _plot_flow_per_frame(ev, out, plt)
        if p:
            paths.append(p)
    return paths


def _plot_flow_per_frame(ev: Evaluation, out: Path, plt) -> Path | None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    drew = False
    for rd in ev.runs:
        series = [vd["metrics"]["flow_magnitude"]["details"] for vd in rd["videos"]
                  if vd["metrics"].get("flow_magnitude", {}).get("details")]
        if not series:
            continue
        n = max(len(s["per_frame_top5"]) for s in series)
        if n == 0:
            continue
        padded = np.full((len(series), n), np.nan)
        for i, s in enumerate(series):
            padded[i, : len(s["per_frame_top5"])] = s["per_frame_top5"]
        longest = max(series, key=lambda s: len(s["frame_times_s"]))
        with np.errstate(all="ignore"):
            y = np.nanmean(padded, axis=0)  # mean over the videos that are this long
        ax.plot(longest["frame_times_s"], y, linewidth=1.2, label=f"{rd['name']} ({len(series)} videos)")
        drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_xlabel("time in video (s)")
    ax.set_ylabel("optical-flow magnitude, top 5 % [px/frame]")
    ax.set_title("flow magnitude per frame pair (mean over videos)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(title="run", fontsize=8)
    fig.tight_layout()
    p = out / "flow_magnitude_per_frame.png"
    fig.savefig(p)
    plt.close(fig)
    return p


def write_outputs(ev: Evaluation, out_dir: Path | str) -> dict[str, Any]:
    """Write results.json, windows.csv, summary.csv and plots/*.png under `out_dir`.

    Under several processes every rank holds the same merged Evaluation; call this on rank 0 only
    (`sfpp.distributed_jobs.workers().is_main`), as `sfpp evaluate` does.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(ev, out / "results.json")
    win_csv, sum_csv = write_csv(ev, out)
    plots = write_plots(ev, out / "plots")
    return {"json": out / "results.json", "windows_csv": win_csv, "summary_csv": sum_csv, "plots": plots}
