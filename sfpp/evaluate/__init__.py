"""`sfpp evaluate` as a Python API: VBench-style metrics over time, per video and per run.

    from sfpp.evaluate import EvaluateConfig, evaluate_runs, write_outputs
    ev = evaluate_runs(["runs/a", "runs/b"], EvaluateConfig(window_s=2.0))
    write_outputs(ev, "eval-out")   # results.json, windows.csv, summary.csv, plots/*.png

Offline metrics need no weights; VBench metrics load local weights (`weights_dir`); the
Visual Stability judge calls Gemini through google-genai.
"""

from sfpp.evaluate.metrics import GROUPS, METRICS, OFFLINE_METRICS, VBENCH_METRICS, MetricSpec, resolve_metrics
from sfpp.evaluate.report import render_table, write_outputs
from sfpp.evaluate.runner import EvaluateConfig, Evaluation, evaluate_runs

__all__ = [
    "EvaluateConfig",
    "Evaluation",
    "GROUPS",
    "METRICS",
    "MetricSpec",
    "OFFLINE_METRICS",
    "VBENCH_METRICS",
    "evaluate_runs",
    "render_table",
    "resolve_metrics",
    "write_outputs",
]
