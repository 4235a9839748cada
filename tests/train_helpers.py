"""Shared helpers for training tests: a tiny config written to a temp folder."""

from pathlib import Path

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
