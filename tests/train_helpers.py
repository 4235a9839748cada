"""Shared test helpers: a tiny training config written to a temp folder; CLI invocation checks."""

from pathlib import Path

from typer.testing import CliRunner

from sfpp.cli.main import app

runner = CliRunner()


def run(*args):
    """Invoke the `sfpp` CLI in-process."""
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r, *needles):
    """The result is a one-line `error:` message (exit 2, no traceback) containing every needle."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [l for l in r.output.splitlines() if l.strip().startswith("error:")]
    assert len(lines) == 1, r.output
    for n in needles:
        assert n in lines[0], r.output

PROMPTS = ["a red circle", "a blue square over the sea", "a yellow star at night", "a green ball"]


def write_config(folder: Path, **sections) -> Path:
    """A tiny debug config; `sections` override keys, e.g. run={"checkpoint_every": 2}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    base = {
        "model": {"preset": "debug", "height": 32, "width": 32},
        "data": {"prompts": "prompts.txt", "negative_prompt": "blurry"},
        "rollout": {"window": 6, "exit_step": "random"},
        "dmd": {"critic_ratio": 2},
        "optim": {"gen_lr": 1e-4, "critic_lr": 1e-4},
        "ema": {"start_step": 1},
        "ode": {"num_trajectories": 4, "teacher_steps": 6, "shard_size": 2, "lr": 1e-4, "base_steps": 3},
        "self_forcing": {"base_steps": 3},
        "extended": {"base_steps": 3, "n_max": 18, "ramp_steps": 2},
        "run": {"stages": ["ode", "self-forcing", "extended"], "checkpoint_every": 1, "sample_every": 0},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    lines = []
    for sec, kv in base.items():
        lines.append(f"[{sec}]")
        for k, v in kv.items():
            if isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            elif isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, list):
                items = ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in v)
                lines.append(f"{k} = [{items}]")
            else:
                lines.append(f"{k} = {v}")
        lines.append("")
    path = folder / "config.toml"
    path.write_text("\n".join(lines))
    return path
