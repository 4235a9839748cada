"""`sfpp evaluate` as a Python API: VBench-style metrics over time, per video and per run.

    from sfpp.evaluate import EvaluateConfig, evaluate_runs, write_outputs
    ev = evaluate_runs(["runs/a", "runs/b"], EvaluateConfig(window_s=2.0))
    write_outputs(ev, "eval-out")   # results.json, windows.csv, summary.csv, plots/*.png

Offline metrics need no weights; VBench metrics load local weights (`weights_dir`); the
Visual Stability judge calls Gemini through google-genai. The names below are imported on first
use, so importing a submodule (e.g. the metric registry for ``--help``) stays light.
"""

from __future__ import annotations

_LAZY = {
    "GROUPS": "sfpp.evaluate.metrics", "METRICS": "sfpp.evaluate.metrics", "OFFLINE_METRICS": "sfpp.evaluate.metrics",
    "VBENCH_METRICS": "sfpp.evaluate.metrics", "MetricSpec": "sfpp.evaluate.metrics",
    "resolve_metrics": "sfpp.evaluate.metrics", "render_table": "sfpp.evaluate.report",
    "write_outputs": "sfpp.evaluate.report", "EvaluateConfig": "sfpp.evaluate.runner",
    "Evaluation": "sfpp.evaluate.runner", "evaluate_runs": "sfpp.evaluate.runner",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sfpp.evaluate' has no attribute {name!r}")
