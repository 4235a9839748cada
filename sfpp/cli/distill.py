"""`sfpp distill --config FILE.toml [--stage] [--budget 8x] [--out DIR] [--resume] [--seed N]`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sfpp.cli._common import console, user_errors


def distill_cmd(
    config: Annotated[str, typer.Option("--config", "-c", help="Run config (TOML).", show_default=False)],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Run one stage: ode, self-forcing or extended.", show_default=False)] = None,
    budget: Annotated[str, typer.Option("--budget", help="Generator updates as a multiple of the preset's base run, e.g. 8x.")] = "1x",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Run folder (default runs/<config name>).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Override the config's run.seed (noise, prompt order, initialisation draws).", show_default=False)] = None,
) -> None:
    """Distil the causal few-step student from the bidirectional teacher (ODE init, Self-Forcing, Self-Forcing++)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sfpp.distill import distill

    with user_errors():
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
            tasks: dict[str, int] = {}

            def on_log(row: dict) -> None:
                st = row.get("stage", "train")
                if "ode_shards" in row:
                    key = "ode trajectories"
                    if key not in tasks:
                        tasks[key] = bar.add_task(key, total=row["ode_shards_total"], info="")
                    bar.update(tasks[key], completed=row["ode_shards"])
                    return
                if st not in tasks:
                    tasks[st] = bar.add_task(st, total=row.get("total_steps"), info="")
                info = "  ".join(f"{k} {row[k]:.4g}" for k in ("gen_loss", "critic_loss", "ode_loss", "step_time")
                                 if k in row)
                if "N" in row and row.get("stage") == "extended":
                    info += f"  N {row['N']} i {row['window_start']}"
                bar.update(tasks[st], completed=row["step"], total=row.get("total_steps"), info=info)

            results = distill(config, stage=stage, budget=budget, out=out, resume=resume, on_log=on_log, seed=seed)
        for st, path in results.items():
            console.print(f"[green]{st}[/]: student {path}")
