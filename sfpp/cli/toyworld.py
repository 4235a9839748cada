"""`sfpp toyworld ...`: the ToyWorld teacher, its codec, clips and oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from sfpp.cli._common import check_number, console, print_table, user_errors
from sfpp.files import check_writable_file, finite_json, write_json
from sfpp.toyworld.learned_codec import CodecTrainConfig, LearnedCodecConfig

_CODEC_TRAIN, _CODEC = CodecTrainConfig(), LearnedCodecConfig()  # the defaults, written once there

app = typer.Typer(help="ToyWorld: procedural clips, the short-horizon teacher, the oracle.", no_args_is_help=True)


def _check_out_folder(out: str) -> None:
    """A training run's --out must be a folder (or not exist yet)."""
    from sfpp.errors import SfppError

    if Path(out).exists() and not Path(out).is_dir():
        raise SfppError(f"--out {out} is a file; give a folder for the run (it holds the weights, log and resume state)")


@app.command("train-teacher")
def train_teacher_cmd(
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder.")] = "runs/toy/teacher",
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = 2500,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay to 5% of it).")] = 4e-4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device")] = "cpu",
    init: Annotated[Optional[str], typer.Option("--init", help="Start from an earlier teacher.safetensors.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out exactly (same options).")] = False,
    arch: Annotated[str, typer.Option("--arch", help="Toy architecture: v1 (the first bundled model, --model toy), v2 (wider), v3 (v2 on the learned codec), v4 (v3 with a word-order-aware text encoder; the default model toy-v4) or v4lit (v4 in the lit world: a slow global lighting cycle, on its own codec).")] = "v1",
    save_every: Annotated[int, typer.Option("--save-every", help="Steps between saved teacher snapshots and resume states.")] = 500,
    shift: Annotated[float, typer.Option("--shift", help="Timestep shift of the training noise levels (lower: more "
                                                          "training at low noise, where shape detail is drawn).")] = 3.0,
    max_objects: Annotated[int, typer.Option("--max-objects", help="Objects per training scene, 1-3 (1: single "
                                             "objects, e.g. a curriculum's first stage).")] = 3,
    pool_clips: Annotated[Optional[int], typer.Option("--pool-clips", help="Distinct rendered training clips kept in "
                                                      "memory, about 74 kB each (default: TeacherConfig.pool_clips).", show_default=False)] = None,
    stop_after: Annotated[Optional[int], typer.Option("--stop-after", help="Pause after this step of the --steps "
                                                      "schedule (state saved; --resume continues).", show_default=False)] = None,
) -> None:
    """Train the bidirectional ToyWorld teacher (flow matching on K-latent-frame clips)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sfpp.errors import SfppError
    from sfpp.toyworld.teacher import TeacherConfig, train_teacher

    with user_errors():
        if steps <= 0 or batch_size <= 0:
            raise SfppError("--steps and --batch-size must be positive")
        check_number(lr, "--lr", high=1.0)
        check_number(shift, "--shift", high=100.0)
        if max_objects not in (1, 2, 3):
            raise SfppError(f"--max-objects must be 1, 2 or 3, got {max_objects}")
        if save_every < 0:
            raise SfppError(f"--save-every must be >= 0, got {save_every}")
        if pool_clips is not None and not 1 <= pool_clips <= 200_000:
            raise SfppError(f"--pool-clips must be between 1 and 200000, got {pool_clips}")
        from sfpp.spec import check_device
        from sfpp.toyworld.model import TOY_ARCHS

        device = check_device(device)
        _check_out_folder(out)
        if arch not in TOY_ARCHS:
            raise SfppError(f"--arch must be one of {', '.join(TOY_ARCHS)}, got {arch!r}")
        cfg = TeacherConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, arch=arch, save_every=save_every,
                            shift=shift, max_objects=max_objects, log_every=max(1, min(50, steps // 10)),
                            **({} if pool_clips is None else {"pool_clips": pool_clips}))
        with Progress(TextColumn("[bold]teacher"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("teacher", total=steps, info="rendering clips")
            if init is not None and not Path(init).is_file():
                raise SfppError(f"--init {init} does not exist")
            path = train_teacher(cfg, Path(out), device=device, init=Path(init) if init else None, resume=resume,
                                 stop_after=stop_after, on_log=lambda r: bar.update(task, completed=r["step"], info=f"loss {r['loss']:.4f}"))
        console.print(f"[green]teacher[/] {path}")


@app.command("train-codec")
def train_codec_cmd(
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (codec.safetensors, log.jsonl).")] = "runs/toy3/codec",
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = _CODEC_TRAIN.steps,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Latent frames per step.")] = _CODEC_TRAIN.batch_size,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay to 10% of it).")] = _CODEC_TRAIN.lr,
    channels: Annotated[int, typer.Option("--channels", help="Latent channels per latent frame (toy-v3: "
                                          f"{_CODEC.channels}).")] = _CODEC.channels,
    seed: Annotated[int, typer.Option("--seed")] = _CODEC_TRAIN.seed,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out (same options).")] = False,
    save_every: Annotated[int, typer.Option("--save-every", help="Steps between resume states.")] = _CODEC_TRAIN.save_every,
    light_amplitude: Annotated[float, typer.Option("--light-amplitude", help="Train on the lit world: clips lit by a "
                                                   "slow global cycle of this amplitude, gain 1 + A sin(2 pi t / P + "
                                                   "phase), in [0, 1) (0: unlit).")] = _CODEC_TRAIN.light_amplitude,
    light_period: Annotated[float, typer.Option("--light-period", help="Period P of the lighting cycle in seconds."
                                                )] = _CODEC_TRAIN.light_period_s,
) -> None:
    """Train the learned ToyWorld codec (a small conv autoencoder, 32x32 frames -> 8x8 latents)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sfpp.errors import SfppError
    from sfpp.toyworld.learned_codec import train_codec

    with user_errors():
        if steps <= 0 or batch_size <= 0:
            raise SfppError("--steps and --batch-size must be positive")
        if not 1 <= channels <= 256:
            raise SfppError(f"--channels must be between 1 and 256, got {channels}")
        if save_every < 0:
            raise SfppError(f"--save-every must be >= 0, got {save_every}")
        check_number(lr, "--lr", high=1.0)
        if not (math.isfinite(light_amplitude) and 0.0 <= light_amplitude < 1.0):
            raise SfppError(f"--light-amplitude must be in [0, 1), got {light_amplitude}")
        check_number(light_period, "--light-period", high=3600.0)
        _check_out_folder(out)
        cfg = CodecTrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, save_every=save_every,
                               light_amplitude=light_amplitude, light_period_s=light_period,
                               log_every=max(1, min(100, steps // 10)))
        with Progress(TextColumn("[bold]codec"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("codec", total=steps, info="rendering clips")
            path = train_codec(cfg, LearnedCodecConfig(channels=channels), Path(out), resume=resume,
                               on_log=lambda r: bar.update(task, completed=r["step"],
                                                           info=f"rmse {r['rmse_grey']:.1f} grey levels"))
        console.print(f"[green]codec[/] {path}")


@app.command("clip")
def clip_cmd(
    prompt: Annotated[str, typer.Argument(help="A ToyWorld prompt, e.g. 'a red circle on a black background'.")],
    out: Annotated[str, typer.Option("--out", "-o")] = "toyworld.mp4",
    seconds: Annotated[float, typer.Option("--seconds")] = 4.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Render a ground-truth ToyWorld clip (what the world itself looks like)."""
    import numpy as np

    from sfpp.errors import SfppError
    from sfpp.toyworld.world import FPS, parse_prompt, render_clip
    from sfpp.video import Mp4Writer

    with user_errors():
        from sfpp.spec import check_output_path

        check_number(seconds, "--seconds", high=3600)
        if seed < 0:
            raise SfppError(f"--seed must be >= 0, got {seed}")
        check_output_path(Path(out), suffix=".mp4")
        scene = parse_prompt(prompt)
        if not scene.objects:
            raise SfppError("the prompt names no ToyWorld object; use e.g. 'a red circle on a black background'")
        clip = render_clip(scene, max(1, round(seconds * FPS)), np.random.default_rng(seed))
        w = Mp4Writer(out, fps=FPS, width=256, height=256)
        w.write(clip.frames.repeat(8, axis=1).repeat(8, axis=2))
        w.finish()
        from sfpp.generation import publish, sidecar_path

        # a sidecar like generate's, so `sfpp toyworld oracle` and `sfpp evaluate` read the clip as it is
        publish(w, sidecar_path(Path(out)), {"prompt": scene.prompt, "fps": FPS, "num_frames": len(clip.frames),
                                             "seconds": len(clip.frames) / FPS, "seed": seed, "model": "toyworld",
                                             "source": "sfpp toyworld clip (ground truth)"})
        console.print(f"[green]wrote[/] {out}: {scene.prompt}")


@app.command("oracle")
def oracle_cmd(
    videos: Annotated[
        list[str],
        typer.Argument(
            help="MP4 files, or folders from 'sfpp generate' (NAME.mp4 + NAME.json) or 'sfpp rollout' "
            "(SUB/preview.mp4 + preview.json per prompt), mixed. Searched one sub-folder deep, no deeper."
        ),
    ],
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt for videos without a sidecar.")] = None,
    window: Annotated[float, typer.Option("--window", help="Window length in seconds.")] = 2.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score videos with the ToyWorld oracle: objects, shapes, motion, bands, noise, background, over time.

    Videos are named by file stem (NAME.mp4 -> NAME) or by rollout sub-folder (SUB/preview.mp4 -> SUB).

    Folders are searched one sub-folder deep; unfinished *.partial.mp4 files are skipped.

    A sidecar's prompt wins over --prompt. The table goes to stdout, whole (never cut).
    """
    from rich.table import Table

    from sfpp.toyworld.oracle import score_paths

    with user_errors():
        check_number(window, "--window", high=3600)
        results = score_paths(videos, prompt=prompt, window_s=window)
    if json_out:
        print(json.dumps(finite_json(results), indent=2))
        return
    t = Table(title="ToyWorld oracle (shares of frames, or of windows for motion)")
    t.add_column("video", overflow="fold")
    for col in ("frames", "all objects", "shapes right", "all moving", "frozen", "bands", "clean", "sharp",
                "background", "fidelity", "brightness"):
        t.add_column(col, justify="right", no_wrap=True)

    def f3(v) -> str:
        return "n/a" if v != v else f"{v:.3f}"  # NaN: nothing to tell (e.g. no object found)

    for s in results:
        o = s["overall"]
        t.add_row(escape(s["name"]), str(s["frames"]), f3(o["all_colours"]), f3(o["shapes_all"]), f3(o["all_moving"]),
                  f3(o["frozen"]), f3(o["band"]), f3(o["clean"]), f3(o["sharp"]), f3(o["background_ok"]),
                  f3(o["fidelity"]), f"{o['brightness']:.1f}")
    print_table(t)


@app.command("compare")
def compare_cmd(
    student: Annotated[list[str], typer.Option("--student", help="LABEL=CHECKPOINT[@sinkK] (repeat); LABEL=bundled for the shipped model.")],
    out: Annotated[str, typer.Option("--out", "-o")] = "runs/toy/compare",
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompt file (default: the held-out set).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of prompts to use.")] = 4,
    multiples: Annotated[str, typer.Option("--multiples", help="Video lengths as multiples of the teacher horizon K.")] = "1,10,30,100",
    reuse: Annotated[bool, typer.Option("--reuse", help="Score videos already in OUT (same checkpoint, prompt, seed, length) instead of generating them again.")] = False,
) -> None:
    """Generate videos of several lengths per student and score prompt fidelity over time with the oracle."""
    from sfpp.errors import SfppError
    from sfpp.toyworld.compare import compare
    from sfpp.toyworld.teacher import held_out_prompts

    with user_errors():
        students = {}
        for s in student:
            if "=" not in s:
                raise SfppError(f"--student must look like LABEL=CHECKPOINT, got {s!r}")
            label, path = s.split("=", 1)
            sink = 0
            if "@sink" in path:
                path, k = path.rsplit("@sink", 1)
                sink = int(k)
            if path != "bundled" and not Path(path).is_file():
                raise SfppError(f"checkpoint {path} does not exist")
            students[label] = {"checkpoint": None if path == "bundled" else path, "sink": sink}
        from sfpp.prompts import read_prompt_lines

        if n < 1:
            raise SfppError(f"--n must be at least 1, got {n}")
        plist = read_prompt_lines(prompts) if prompts else held_out_prompts()
        plist = plist[:n]
        try:
            mult = tuple(int(x) for x in multiples.split(","))
        except ValueError:
            raise SfppError(f"--multiples must be integers like 1,10,30,100, got {multiples!r}") from None
        if not mult or any(m < 1 or m > 10000 for m in mult):
            raise SfppError(f"--multiples must be whole numbers from 1 to 10000, got {multiples!r}")
        compare(students, plist, Path(out), multiples=mult, log=lambda s: console.print(s), reuse=reuse)
        console.print(f"[green]wrote[/] {out}/compare.json and {out}/fidelity_over_time.png")


@app.command("teacher-score")
def teacher_score_cmd(
    checkpoint: Annotated[str, typer.Argument(help="A teacher.safetensors from 'sfpp toyworld train-teacher'.")],
    n: Annotated[int, typer.Option("--n", help="Prompts from each set (training and held-out).")] = 8,
    seeds: Annotated[int, typer.Option("--seeds", help="Samples per prompt.")] = 2,
    steps: Annotated[int, typer.Option("--steps", help="Euler steps.")] = 24,
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale.")] = 5.0,
    shift: Annotated[float, typer.Option("--shift", help="Timestep shift of the Euler grid.")] = 5.0,
    confusion: Annotated[bool, typer.Option("--confusion", help="Also: which shape it draws for each shape word "
                                            "(one object on black, 3 colours x seeds).")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the full JSON here.")] = None,
) -> None:
    """Oracle v2 on the teacher's own samples: does the teacher draw the shapes, motion and backgrounds?"""
    from rich.table import Table

    from sfpp.errors import SfppError
    from sfpp.toyworld.teacher import held_out_prompts, score_teacher, training_prompts

    with user_errors():
        if not Path(checkpoint).is_file():
            raise SfppError(f"teacher checkpoint {checkpoint} is not a file; give a teacher.safetensors from "
                            "'sfpp toyworld train-teacher'")
        if not 1 <= n <= 100 or not 1 <= seeds <= 20 or not 1 <= steps <= 200:
            raise SfppError("--n must be 1-100, --seeds 1-20 and --steps 1-200")
        check_number(guidance, "--guidance", low=0.0, high=50.0, low_inclusive=True)
        check_number(shift, "--shift", high=100.0)
        if out is not None:
            check_writable_file(out, flag="--out")
        res = {name: score_teacher(checkpoint, prompts[:n], seeds=seeds, steps=steps, guidance=guidance, shift=shift)
               for name, prompts in (("training", training_prompts(n)), ("held-out", held_out_prompts()))}
        if confusion:
            from sfpp.toyworld.teacher import shape_confusion

            res["shape_confusion"] = shape_confusion(checkpoint, seeds=seeds, steps=steps, guidance=guidance,
                                                     shift=shift)
        if out is not None:
            write_json(out, res)
    t = Table(title=f"Teacher {checkpoint}: oracle v2 on its own samples (CFG {guidance:g}, {steps} steps, shift {shift:g})")
    keys = ("all_colours", "shapes_all", "all_moving", "speed", "band", "clean", "sharp", "background_ok")
    t.add_column("prompts")
    for k in keys:
        t.add_column(k, justify="right")
    for name in ("training", "held-out"):
        r = res[name]
        t.add_row(f"{name} ({r['n']})", *(f"{r['mean'][k]:.3f}" for k in keys))
    print_table(t)
    if confusion:
        sc = res["shape_confusion"]
        drawn = ("circle", "square", "triangle", "unreadable", "missing")
        c = Table(title="Shape drawn for each shape word (share of frames; one object on black)")
        c.add_column("asked")
        for d in drawn:
            c.add_column(d, justify="right")
        for w, row in sc["confusion"].items():
            c.add_row(f"{w} ({sc['frames'][w]})", *(f"{row.get(d, 0.0):.2f}" for d in drawn))
        print_table(c)


@app.command("stable-length")
def stable_length_cmd(
    folders: Annotated[list[str], typer.Argument(help="Student folders of a 'sfpp toyworld compare' run (OUT/LABEL, "
                                                 "holding <m>x/pNN.mp4 videos with sidecars).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Stable length: the longest video (in multiples of the teacher horizon K) whose last 10% still has
    >= 80% of the 1x K object and motion persistence (oracle v2), recomputed from stored videos."""
    from rich.table import Table

    from sfpp.errors import SfppError
    from sfpp.toyworld.compare import stable_length_of_folder

    with user_errors():
        res = {}
        for f in folders:
            if not Path(f).is_dir():
                raise SfppError(f"{f} is not a folder; give OUT/LABEL folders of a 'sfpp toyworld compare' run")
            r = stable_length_of_folder(Path(f))
            if not r["per_multiple"]:
                raise SfppError(f"{f} holds no <m>x/pNN.mp4 videos with prompts; give OUT/LABEL of 'sfpp toyworld compare'")
            res[f] = r
    if json_out:
        print(json.dumps(finite_json(res), indent=2))
        return
    t = Table(title="Stable length (last 10% of each video vs 1x K; threshold 80%)")
    for col in ("student", "stable length (x K)", "failed at", "why", "objects per length", "motion per length"):
        t.add_column(col, overflow="fold")
    for f, r in res.items():
        per = r["per_multiple"]
        t.add_row(escape(f), str(r["stable_multiple"]), str(r["failed_at"] or "-"), r["reason"] or "-",
                  " ".join(f"{m}x:{v['objects']:.2f}" for m, v in sorted(per.items())),
                  " ".join(f"{m}x:{v['motion']:.2f}" for m, v in sorted(per.items())))
    print_table(t)


@app.command("exposure")
def exposure_cmd(
    folders: Annotated[list[str], typer.Argument(help="Student folders of a 'sfpp toyworld compare' run (OUT/LABEL, "
                                                 "holding <m>x/pNN.mp4 videos with sidecars).")],
    multiple: Annotated[Optional[int], typer.Option("--multiple", help="Which video length (in K) to read "
                                                    "(default: the longest each folder has).")] = None,
    world: Annotated[str, typer.Option("--world", help="Toy architecture whose lighting cycle is the reference "
                                       "(its period, and the world's own clips of the same prompts).")] = "v4lit",
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Also score the world's own "
                                            "lit clips of the same prompts and length.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Exposure against the lit world's lighting cycle, per whole period: mean drift, cycle amplitude
    (first / last period) and phase drift, from stored compare videos (issue #19's exposure experiment)."""
    from rich.table import Table

    from sfpp.errors import SfppError
    from sfpp.toyworld.exposure import exposure_of_folder, world_reference
    from sfpp.toyworld.model import TOY_ARCHS, toy_lighting

    with user_errors():
        if world not in TOY_ARCHS:
            raise SfppError(f"--world {world} is not a toy architecture; use one of {', '.join(TOY_ARCHS)}")
        lighting = toy_lighting(world)
        if lighting is None:
            raise SfppError(f"--world {world} is unlit (no lighting cycle to read exposure against); use --world v4lit")
        if multiple is not None:
            check_number(multiple, "--multiple", low=1, low_inclusive=True)
        res = {}
        for f in folders:
            if not Path(f).is_dir():
                raise SfppError(f"{f} is not a folder; give OUT/LABEL folders of a 'sfpp toyworld compare' run")
            res[f] = exposure_of_folder(Path(f), lighting.period_s, multiple)
        if reference:
            for prompts, seconds in dict.fromkeys((tuple(r["prompts"]), r["seconds"]) for r in res.values()):
                if any(p is None for p in prompts):
                    continue  # videos without a prompt in their sidecar: no clips of the same prompts to draw
                res[f"world ({len(prompts)} prompts, {seconds:g} s)"] = {
                    "multiple": None, "seconds": seconds, "prompts": list(prompts),
                    **world_reference(list(prompts), seconds, lighting)}
    if json_out:
        print(json.dumps(finite_json(res), indent=2))
        return
    t = Table(title=f"Exposure per {lighting.period_s:g} s lighting period (relative to the first period; "
                    "means over videos)")
    for col in ("student", "length", "periods", "mean drift", "mean range", "amplitude first / last",
                "phase drift (deg)"):
        t.add_column(col, overflow="fold")
    for f, r in res.items():
        s = r["summary"]
        t.add_row(escape(f), f"{r['seconds']:g} s", str(r["per_video"][0]["periods"]), f"{s['mean_drift']:+.3f}",
                  f"{s['mean_range']:.3f}", f"{s['amplitude_first']:.3f} / {s['amplitude_last']:.3f}",
                  f"{s['phase_drift_deg']:+.1f} (max |{s['max_abs_phase_drift_deg']:.0f}|)")
    print_table(t)


@app.command("heldout")
def heldout_cmd(
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Student (default: the bundled model).")] = None,
    seconds: Annotated[float, typer.Option("--seconds")] = 10.0,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Also score this teacher's own samples (its "
                                                   "horizon, 2 seeds) on the same prompts, beside the student.")] = None,
    teacher_steps: Annotated[int, typer.Option("--teacher-steps", help="Euler steps of the teacher's samples "
                                               "(CFG 5, shift 5, as teacher-score).")] = 24,
    out: Annotated[str, typer.Option("--out", "-o")] = "runs/toy/heldout",
) -> None:
    """Oracle v2 averages over the 20 held-out prompts (never seen in training): colours, shapes, motion, frozen
    objects, bands, noise, background; with --teacher, the teacher's own samples beside them."""
    from rich.table import Table

    from sfpp.errors import SfppError
    from sfpp.toyworld.compare import compare
    from sfpp.toyworld.teacher import held_out_prompts, score_teacher

    with user_errors():
        from sfpp.toyworld.compare import horizon_seconds

        check_number(seconds, "--seconds", high=3600)
        if teacher is not None and not Path(teacher).is_file():
            raise SfppError(f"--teacher {teacher} is not a file; give a teacher.safetensors from 'sfpp toyworld "
                            "train-teacher'")
        if not 1 <= teacher_steps <= 200:
            raise SfppError(f"--teacher-steps must be 1-200, got {teacher_steps}")
        hz = horizon_seconds()
        mult = max(1, round(seconds / hz))
        res = compare({"student": checkpoint}, held_out_prompts(), Path(out), multiples=(mult,),
                      log=lambda s: console.print(s))
        rows = {f"student ({mult * hz:.1f} s)": res["runs"]["student"][f"{mult}x"]["overall"]}
        report = {"prompts": held_out_prompts(), "student": {"checkpoint": checkpoint, "seconds": mult * hz,
                                                             "mean": rows[next(iter(rows))]}}
        if teacher is not None:
            tr = score_teacher(teacher, held_out_prompts(), seeds=2, steps=teacher_steps)
            rows[f"teacher ({hz:.2f} s, 2 seeds)"] = tr["mean"]
            report["teacher"] = tr
        write_json(Path(out, "heldout.json"), report)
    keys = ("all_colours", "shapes_all", "all_moving", "band", "clean", "background_ok", "fidelity")
    t = Table(title=f"Oracle v2 on the {len(held_out_prompts())} held-out prompts (share of frames / windows)")
    t.add_column("")
    for k in keys:
        t.add_column(k, justify="right")
    for name, m in rows.items():
        t.add_row(name, *(f"{m[k]:.3f}" for k in keys))
    print_table(t)
    console.print(f"wrote {escape(str(Path(out, 'heldout.json')))}")


@app.command("switch")
def switch_cmd(
    first: Annotated[str, typer.Argument(help="Prompt before the switch.")],
    second: Annotated[str, typer.Argument(help="Prompt after the switch.")],
    at: Annotated[float, typer.Option("--at", help="Switch time in seconds.")] = 2.0,
    seconds: Annotated[float, typer.Option("--seconds")] = 5.0,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Student (default: the bundled model).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Repeat with seeds 0..N-1.")] = 1,
    blend: Annotated[int, typer.Option("--blend-chunks", help="Blend text embeddings over N chunks.")] = 0,
    out: Annotated[str, typer.Option("--out", "-o")] = "runs/toy/switch",
) -> None:
    """Prompt switch on the toy model: frames before it identical? chunks until the oracle sees the new prompt?"""
    from rich.table import Table

    from sfpp.errors import SfppError
    from sfpp.toyworld.compare import switch_test

    with user_errors():
        check_number(seconds, "--seconds", high=3600)
        check_number(at, "--at")
        if not 0 < at < seconds:
            raise SfppError(f"--at must lie inside the video (0 < at < {seconds}), got {at}")
        if seeds < 1:
            raise SfppError("--seeds must be at least 1")
        table = Table("seed", "switch at (s)", "identical before", "chunks to find", "frames with new content")
        rows = []
        for seed in range(seeds):
            r = switch_test(first, second, Path(out) / f"seed{seed}", at_s=at, seconds=seconds,
                            checkpoint=checkpoint, seed=seed, blend=blend)
            rows.append(r)
            table.add_row(str(seed), f"{r['switch_s']:.3f}", "yes" if r["identical_before_switch"] else "NO",
                          "never" if r["chunks_to_find"] is None else str(r["chunks_to_find"]),
                          f"{100 * r['found_after_switch']:.1f}%")
        print_table(table, stderr=True)
        write_json(Path(out) / "summary.json", rows)
