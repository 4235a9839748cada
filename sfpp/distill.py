"""`sfpp.distill(...)`: run the configured distillation stages, resumable, under accelerate.

    sfpp distill --config examples/distill_debug.toml --budget 1x --out runs/debug
    accelerate launch --num_processes 2 -m sfpp.cli.main distill --config ... --out ...

Stages run in the order of ``[run].stages`` (or just ``stage``); each stage starts its student
from the previous stage's export. Outputs under ``out``::

    config.toml                      the resolved config (and inside every checkpoint)
    <stage>/checkpoints/step_*/      resumable checkpoints (+ student safetensors)
    <stage>/student.safetensors      final student (and student_ema.safetensors): `sfpp generate --checkpoint`
    <stage>/student_lora.safetensors with [lora]: the adapter alone (`sfpp generate --lora`)
    <stage>/log.jsonl, <stage>/tb/   losses per step; TensorBoard scalars
    <stage>/samples/                 sample videos
    cache/                           prompt embeddings
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from sfpp.config_io import load_config, to_dict, to_toml
from sfpp.errors import SfppError
from sfpp.train.config import STAGES, DistillConfig, parse_budget
from sfpp.train.state import CheckpointManager, verify_exports


def _accelerator(cfg: DistillConfig):
    try:
        from accelerate import Accelerator
    except ImportError:  # the [train] extra
        raise SfppError("sfpp distill needs accelerate: pip install 'sfpp[train]'") from None

    device = cfg.run.device
    cpu = device == "cpu" or (device is None and not __import__("torch").cuda.is_available())
    try:
        return Accelerator(cpu=cpu, mixed_precision=cfg.run.mixed_precision)
    except ValueError:
        # accelerate keeps one global state per process; a second run in the same (single-process)
        # Python session with other settings must reset it first.
        from accelerate.state import AcceleratorState, PartialState

        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(cpu=cpu, mixed_precision=cfg.run.mixed_precision)


def distill(
    config: str | os.PathLike | DistillConfig,
    *,
    stage: str | None = None,
    budget: str = "1x",
    out: str | os.PathLike | None = None,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    config_dir: str | os.PathLike | None = None,
    seed: int | None = None,
) -> dict[str, Path]:
    """Run distillation. Returns {stage: exported student path}.

    ``seed`` overrides ``[run] seed`` (the override is part of the saved, resolved config).
    """
    if isinstance(config, DistillConfig):
        cfg, cdir = config, Path(config_dir or ".")
        name = "distill"
    else:
        cfg = load_config(DistillConfig, config)
        cdir, name = Path(config).resolve().parent, Path(config).stem
    if seed is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=int(seed)))
    mult = parse_budget(budget)
    if stage is not None and stage not in STAGES:
        raise SfppError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    stages = [stage] if stage else list(cfg.run.stages)
    if out is not None and not str(out).strip():
        raise SfppError("--out is empty; give a folder for the run (default: runs/<config name>)")
    out = Path(out) if out is not None else Path("runs") / name
    if out.exists() and not out.is_dir():
        raise SfppError(f"--out {out} is a file; give a folder")
    # Validate the prompts file before any work.
    from sfpp.train.data import read_prompt_file

    prompts = Path(cfg.data.prompts).expanduser()
    read_prompt_file(prompts if prompts.is_absolute() else cdir / prompts)
    saved_cfg = out / "config.toml"
    if not resume:
        held = [s for s in STAGES if (out / s / "checkpoints" / "latest").is_file() or (out / s / "done.json").is_file()]
        if held:
            raise SfppError(f"{out} already holds a run ({', '.join(held)}); pass --resume to continue it or choose another --out")

    acc = _accelerator(cfg)
    if acc.num_processes > 1:
        from sfpp.distributed_jobs import leave_group_at_exit

        leave_group_at_exit()
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        resolved = to_dict(cfg)
        resolved["run"]["stages"] = stages
        header = f"# resolved sfpp distill config (budget {budget})\n"
        saved_cfg.write_text(header + to_toml(resolved))
    acc.wait_for_everyone()

    from sfpp.train.trainer import Distiller

    results: dict[str, Path] = {}
    prev: Path | None = None
    order = list(STAGES)
    for st in stages:
        if prev is None:
            # A single later stage starts from the previous stage's export when it exists.
            earlier = [s for s in order[: order.index(st)] if (out / s / "student.safetensors").is_file()]
            prev = out / earlier[-1] / "student.safetensors" if earlier else None
        total = max(1, round(mult * cfg.base_steps(st)))
        # With --resume every stage continues from where it stands: a finished stage is skipped (its
        # exports verified), an interrupted one resumes from its last checkpoint, a later one starts.
        done = (out / st / "done.json").is_file()
        if done:
            verify_exports(out / st)
        started = CheckpointManager(out / st / "checkpoints").latest() is not None
        tr = Distiller(cfg, stage=st, out=out, total_steps=total, accelerator=acc, config_dir=cdir,
                       resume=done or (resume and started), student_init=prev, on_log=on_log,
                       budget=mult)
        from sfpp.train.samples import write_sample

        results[st] = tr.run(sample_fn=write_sample)
        prev = results[st]
    return results
