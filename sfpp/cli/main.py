"""Assembles the `sfpp` command line from one module per command."""

from __future__ import annotations

import sys

import typer

from sfpp.cli import bench as _bench
from sfpp.cli import convert as _convert
from sfpp.cli import distill as _distill
from sfpp.cli import evaluate as _evaluate
from sfpp.cli import generate as _generate
from sfpp.cli import rollout as _rollout
from sfpp.cli import serve as _serve
from sfpp.cli import toyworld as _toyworld

app = typer.Typer(
    name="sfpp",
    help="Self-Forcing++: stable, minute-long autoregressive video generation.\n\n"
    "Exit codes: 0 done; 1 an output could not be written (disk full, I/O error; what was there before is "
    "kept); 2 bad input (one line says what to fix); 130/143 interrupted by Ctrl-C/SIGTERM (generate and "
    "rollout keep the frames done so far as NAME.partial.mp4 with a NAME.partial.json sidecar).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # tensors in locals make tracebacks unreadable
)

app.command("generate")(_generate.generate_cmd)
app.command("distill")(_distill.distill_cmd)
app.command("rollout")(_rollout.rollout_cmd)
app.command("evaluate", cls=_evaluate.EvaluateCommand, short_help=_evaluate.SHORT_HELP)(_evaluate.evaluate_cmd)
app.command("convert")(_convert.convert_cmd)
app.command("bench")(_bench.bench_cmd)
app.command("serve")(_serve.serve_cmd)
app.add_typer(_toyworld.app, name="toyworld")


def main() -> None:
    """Console-script entry point."""
    from sfpp.distributed_jobs import exit_process

    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        print("interrupted", file=sys.stderr)
        exit_process(130)
    except SystemExit as e:  # typer ends every command this way
        exit_process(e.code)
    exit_process(0)


if __name__ == "__main__":  # pragma: no cover
    main()
