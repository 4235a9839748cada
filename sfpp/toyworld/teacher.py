"""Train the short-horizon bidirectional ToyWorld teacher with flow matching.

The teacher sees clips of K latent frames (`TOY_WINDOW` = 6 = 12 pixel frames, 0.75 s): its
horizon. Clips are rendered procedurally; a fixed set of held-out scenes (unseen colour / shape /
background combinations) is never rendered for training and is used to test generalisation.

    sfpp toyworld train-teacher --steps 2500 --out runs/toy/teacher
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sfpp.checkpoints import save_student
from sfpp.schedule import add_noise, shift_sigma
from sfpp.text import encode_prompts
from sfpp.toyworld.model import (
    TOY_ARCHS,
    TOY_TEXT_LEN,
    TOY_WINDOW,
    latent_size,
    new_toy_transformer,
    toy_codec,
    toy_codec_kind,
    toy_lighting,
    toy_text_encoder,
    toy_tokenizer,
)
from sfpp.toyworld.world import SHAPES, held_out_prompts, random_scene, render_clip, training_prompts  # noqa: F401 - prompt sets re-exported


@dataclass(frozen=True, kw_only=True)
class TeacherConfig:
    steps: int = 2500
    batch_size: int = 16
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup: int = 200
    lr_min_ratio: float = 0.05  # cosine decay from lr to lr * lr_min_ratio over the run (1.0: constant)
    save_every: int = 500  # EMA snapshot to out/teacher.safetensors (0: only at the end)
    shift: float = 3.0  # timestep shift for t sampling
    caption_dropout: float = 0.1  # empty prompt for classifier-free guidance
    pool_clips: int = 3000  # rendered clips kept in memory (24 frames each)
    max_objects: int = 3  # objects per training scene (1: single objects, a curriculum's first stage)
    ema: float = 0.999
    seed: int = 0
    log_every: int = 50
    arch: str = "v1"  # toy transformer architecture (sfpp.toyworld.model.TOY_ARCHS)


def lr_factor(cfg: TeacherConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``lr_min_ratio`` at the last step."""
    if step < cfg.warmup:
        return (step + 1) / max(1, cfg.warmup)
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def render_pool(n: int, frames: int, seed: int, exclude: set[str], *, max_objects: int = 3,
                lighting=None) -> tuple[np.ndarray, list[str]]:
    """`n` rendered clips of `frames` frames (lit by `lighting`, a `Lighting`, if given) and their prompts."""
    rng = np.random.default_rng(seed)
    clips, prompts = [], []
    for _ in range(n):
        c = render_clip(random_scene(rng, exclude=exclude, max_objects=max_objects), frames, rng, lighting=lighting)
        clips.append(c.frames)
        prompts.append(c.prompt)
    return np.stack(clips), prompts  # (n, frames, 32, 32, 3)


STATE = "train_state.pt"


def _save_state(out: Path, step: int, model, ema, opt, sched, rng, cfg: TeacherConfig) -> None:
    """Everything a resume needs, written atomically (temp file, fsync, rename)."""
    from sfpp.files import save_torch_atomic

    state = {"step": step, "model": model.state_dict(), "ema": ema, "opt": opt.state_dict(),
             "sched": sched.state_dict(), "np_rng": json.dumps(rng.bit_generator.state),
             "torch_rng": torch.get_rng_state(), "config": json.dumps(asdict(cfg))}
    save_torch_atomic(state, out / STATE)


def train_teacher(cfg: TeacherConfig, out: Path, *, on_log: Callable[[dict], None] | None = None,
                  device: str = "cpu", init: Path | None = None, resume: bool = False,
                  stop_after: int | None = None) -> Path:
    """Train and write ``out/teacher.safetensors`` (EMA weights) plus ``out/log.jsonl``.

    ``init``: continue from an earlier teacher (its weights start both the model and the EMA).
    ``resume``: continue an interrupted run in `out` exactly where its last saved state left it
    (``train_state.pt``, written every ``save_every`` steps and at the last step run): weights, EMA,
    optimiser, schedule, data order and noise; the config must be the same.
    ``stop_after``: pause the run after that step of its ``cfg.steps``-step schedule (the learning rate
    follows the whole schedule): the EMA snapshot and the resume state of that step are written, and a
    later ``resume`` continues from it. Returns the snapshot's path.
    """
    from sfpp.errors import SfppError

    if stop_after is not None and not 1 <= stop_after <= cfg.steps:
        raise SfppError(f"--stop-after must be between 1 and --steps ({cfg.steps}), got {stop_after}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = None
    if resume:
        if not (out / STATE).is_file():
            raise SfppError(f"no {STATE} in {out} to resume from; start without --resume")
        saved = torch.load(out / STATE, map_location="cpu", weights_only=True)
        # settings added after a run started take their defaults (what that run trained with)
        if {**asdict(TeacherConfig()), **json.loads(saved["config"])} != asdict(cfg):
            raise SfppError(f"cannot resume: {out} was trained with other settings; give the same options or a new --out")
        if int(saved["step"]) >= cfg.steps:  # finished already: its teacher is the saved EMA
            return _save(out, saved["ema"], cfg, cfg.steps)
    elif (out / STATE).is_file():
        raise SfppError(f"{out} already holds a teacher run; pass --resume to continue it or choose another --out")
    init_state = None
    if init is not None:  # checked before the clips are rendered: a wrong file fails at once
        from sfpp.checkpoints import check_fits, load_into, read_checkpoint, read_checkpoint_config

        declared = read_checkpoint_config(init).get("model")
        if isinstance(declared, str) and declared.startswith("toy"):
            arch = "v1" if declared == "toy" else declared.removeprefix("toy-")
            # another architecture with the same transformer (v3 -> v4: only the text encoder differs) may
            # start a run: the weights fit, and the run learns the new conditioning from there
            if TOY_ARCHS.get(arch) != TOY_ARCHS[cfg.arch] or toy_codec_kind(arch) != toy_codec_kind(cfg.arch):
                raise SfppError(f"--init {init} is a {declared} checkpoint; pass --arch {arch} (or an --init of "
                                f"arch {cfg.arch})")
        init_state, _ = read_checkpoint(init)
        check_fits(new_toy_transformer(cfg.seed, cfg.arch).state_dict(), init_state, source=str(init),
                   fix=f"--init must be a teacher or student of --arch {cfg.arch}")
    torch.manual_seed(cfg.seed)
    codec = toy_codec(cfg.arch).to(device)
    T = codec.config.frames
    clip_frames = TOY_WINDOW * T
    pool, prompts = render_pool(cfg.pool_clips, clip_frames * 2, cfg.seed, set(held_out_prompts()),
                                max_objects=cfg.max_objects, lighting=toy_lighting(cfg.arch))  # v4lit: the lit world
    tok, enc = toy_tokenizer(), toy_text_encoder(cfg.arch).to(device)
    uniq = sorted(set(prompts)) + [""]
    emb = encode_prompts(tok, enc, uniq, max_length=TOY_TEXT_LEN, device=device)
    emb_of = {p: i for i, p in enumerate(uniq)}
    model = new_toy_transformer(cfg.seed, cfg.arch)
    if init_state is not None:
        load_into(model, init_state, source=str(init))
    model = model.to(device).train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    rng = np.random.default_rng(cfg.seed + 1)
    first = 1
    if saved is not None:
        model.load_state_dict(saved["model"])
        ema = saved["ema"]
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        rng.bit_generator.state = json.loads(saved["np_rng"])
        torch.set_rng_state(saved["torch_rng"])
        first = int(saved["step"]) + 1
        rows = [ln for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()] \
            if (out / "log.jsonl").is_file() else []
        keep = [ln for ln in rows if json.loads(ln)["step"] <= saved["step"]]
        (out / "log.jsonl").write_text("".join(ln + "\n" for ln in keep))
    log = open(out / "log.jsonl", "a" if saved is not None else "w")
    t0 = time.perf_counter()
    last = cfg.steps if stop_after is None else stop_after
    if first > last:
        raise SfppError(f"{out} is already at step {first - 1}, past --stop-after {stop_after}")
    for step in range(first, last + 1):
        idx = rng.integers(0, len(pool), cfg.batch_size)
        start = rng.integers(0, pool.shape[1] - clip_frames + 1, cfg.batch_size)
        clips = np.stack([pool[i, s : s + clip_frames] for i, s in zip(idx, start)])  # (B, F, 32, 32, 3)
        video = torch.from_numpy(clips).to(device).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)  # (B, 3, F, H, W)
        with torch.no_grad():  # the codec is frozen
            x0 = codec.encode(video)  # (B, C, K, h, w): h = w = 16 (pixel codec) or 8 (learned codec)
        drop = rng.random(cfg.batch_size) < cfg.caption_dropout
        e = emb[[emb_of[""] if d else emb_of[prompts[i]] for i, d in zip(idx, drop)]]
        u = torch.rand(cfg.batch_size, device=device)
        t = shift_sigma(u, cfg.shift) * 1000.0  # (B,)
        eps = torch.randn_like(x0)
        x_t = add_noise(x0, eps, t)
        v = model(x_t, t, e, return_dict=False)[0]
        loss = F.mse_loss(v.float(), eps - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))
            for k, p in model.state_dict().items():
                ema[k].mul_(d).add_(p.detach(), alpha=1 - d)
        if step % cfg.log_every == 0 or step == last:
            row = {"step": step, "loss": loss.item(), "grad_norm": gn, "lr": sched.get_last_lr()[0], "elapsed_s": time.perf_counter() - t0}
            log.write(json.dumps(row) + "\n")
            log.flush()
            if on_log:
                on_log(row)
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            _save(out, ema, cfg, step)
            _save_state(out, step, model, ema, opt, sched, rng, cfg)
    log.close()
    # the state of the last step run, paused or finished (unless just written): --resume and
    # save_raw_weights start from it
    if not (cfg.save_every and last % cfg.save_every == 0 and last < cfg.steps):
        _save_state(out, last, model, ema, opt, sched, rng, cfg)
    return _save(out, ema, cfg, last)


def save_raw_weights(run: str | Path, out: str | Path) -> Path:
    """The raw (non-EMA) weights of a teacher run's last saved state (``run/train_state.pt``) as a
    teacher checkpoint at `out`, e.g. to score them or to start another run from them (``--init``).
    The state is overwritten every ``save_every`` steps and at the run's last step: the file records the
    step it holds."""
    from sfpp.errors import SfppError

    run = Path(run)
    if not (run / STATE).is_file():
        raise SfppError(f"no {STATE} in {run}; give the --out folder of a train-teacher run")
    saved = torch.load(run / STATE, map_location="cpu", weights_only=True)
    cfg = TeacherConfig(**{**asdict(TeacherConfig()), **json.loads(saved["config"])})
    return _save_like(Path(out), saved["model"], cfg, int(saved["step"]), weights="raw")


def _save(out: Path, ema: dict, cfg: TeacherConfig, step: int) -> Path:
    return _save_like(out / "teacher.safetensors", ema, cfg, step, weights="ema")


def _save_like(path: Path, state: dict, cfg: TeacherConfig, step: int, *, weights: str) -> Path:
    return save_student(path, state,
                        {"model": "toy" if cfg.arch == "v1" else f"toy-{cfg.arch}", "role": "teacher",
                         "horizon_latent_frames": TOY_WINDOW, "step": step, "weights": weights, "train": asdict(cfg)})


@torch.no_grad()
def sample_teacher(teacher, prompts: list[str], *, steps: int = 32, shift: float = 5.0, guidance: float = 3.0,
                   seed: int = 0, device: str = "cpu", arch: str = "v1") -> np.ndarray:
    """Clips of the teacher's horizon from the bidirectional teacher (Euler ODE with CFG).

    Returns ``(B, F, 32, 32, 3)`` uint8 native frames.
    """
    from sfpp.train.dmd import cfg_flow
    from sfpp.train.networks import bidirectional_flow
    from sfpp.train.ode import euler_grid, store_indices  # noqa: F401 - shared Euler grid

    codec = toy_codec(arch).to(device)
    tok, enc = toy_tokenizer(), toy_text_encoder(arch).to(device)
    cond = encode_prompts(tok, enc, prompts, max_length=TOY_TEXT_LEN, device=device)
    uncond = encode_prompts(tok, enc, [""] * len(prompts), max_length=TOY_TEXT_LEN, device=device)
    g = torch.Generator().manual_seed(seed)
    n = latent_size(codec)
    x = torch.randn(len(prompts), codec.channels, TOY_WINDOW, n, n, generator=g).to(device)
    grid = euler_grid(steps, shift)
    for i in range(steps):
        t = torch.full((len(prompts),), float(grid[i] * 1000.0), device=device)
        v = cfg_flow(bidirectional_flow(teacher, x, t, cond), bidirectional_flow(teacher, x, t, uncond), guidance)
        x = x + float(grid[i + 1] - grid[i]) * v
    video = codec.decode_native(x)  # (B, 3, F, 32, 32)
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()


def load_teacher(path: str | Path, device: str = "cpu"):
    """A toy teacher checkpoint (``train-teacher`` output) in its own architecture (v1-v4)."""
    from sfpp.checkpoints import load_into, read_checkpoint, read_checkpoint_config

    meta = read_checkpoint_config(path)
    model = meta.get("model")
    arch = str(meta.get("train", {}).get("arch") or (model.removeprefix("toy-") if isinstance(model, str)
                                                      and model.startswith("toy-") else "v1"))
    model = new_toy_transformer(0, arch)
    state, _ = read_checkpoint(path)
    load_into(model, state, source=str(path))
    return model.to(device).eval(), arch


def score_teacher(path: str | Path, prompts: list[str], *, seeds: int = 2, steps: int = 24, guidance: float = 5.0,
                  shift: float = 5.0, device: str = "cpu") -> dict:
    """Oracle v2 on the teacher's own samples (its horizon, K latent frames = 12 frames) per prompt and seed."""
    from sfpp.toyworld.oracle import score_video
    from sfpp.toyworld.world import FPS

    teacher, arch = load_teacher(path, device)
    keys = ("all_colours", "shapes_all", "shape_ok", "all_moving", "speed", "band", "clean", "sharp",
            "background_ok", "fidelity")
    rows = []
    for seed in range(seeds):
        clips = sample_teacher(teacher, prompts, steps=steps, shift=shift, guidance=guidance, seed=seed, device=device,
                               arch=arch)
        for p, c in zip(prompts, clips):
            o = score_video(c, p, fps=FPS, window_s=len(c) / FPS)["overall"]
            rows.append({"prompt": p, "seed": seed, **{k: o[k] for k in keys}})
    with warnings.catch_warnings():  # a score with nothing to measure in any sample stays NaN (null in JSON)
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    return {"arch": arch, "checkpoint": str(path), "n": len(rows), "steps": steps, "shift": shift, "guidance": guidance,
            "mean": mean, "rows": rows}


SHAPE_WORDS = SHAPES  # the world's own shape words


def shape_confusion(path: str | Path, *, seeds: int = 2, steps: int = 24, guidance: float = 5.0, shift: float = 5.0,
                    colours: tuple[str, ...] = ("red", "blue", "yellow"), device: str = "cpu") -> dict:
    """Which shape the teacher draws for each shape word: one object moving on black, per frame.

    Returns ``{"confusion": {asked: {drawn: share of frames}}, "fit": {asked: {drawn: mean template fit}},
    "frames": {asked: n}}`` where `drawn` is the oracle's best-fitting shape, ``"unreadable"`` (too
    little visible to tell, or a band) or ``"missing"`` (the prompted colour is not there). A teacher
    that reads the shape word has a diagonal near 1; one that draws the same blob for every word has
    equal rows.
    """
    teacher, arch = load_teacher(path, device)
    prompts = [(w, f"a {c} {w} moving on a black background") for w in SHAPE_WORDS for c in colours]
    items = []
    for seed in range(seeds):
        clips = sample_teacher(teacher, [p for _, p in prompts], steps=steps, shift=shift, guidance=guidance,
                               seed=seed, device=device, arch=arch)
        items += [(word, p, clip) for (word, p), clip in zip(prompts, clips)]
    return {"checkpoint": str(path), "steps": steps, "guidance": guidance, "shift": shift, "seeds": seeds,
            **confusion_of_clips(items)}


def confusion_of_clips(items) -> dict:
    """`items`: ``(shape word asked, prompt, (F, 32, 32, 3) uint8 clip)``. Per frame, the oracle's reading of
    the one prompted object: its best-fitting shape, ``"unreadable"`` or ``"missing"``."""
    from sfpp.toyworld.oracle import read_frame_v2
    from sfpp.toyworld.world import parse_prompt

    counts: dict[str, dict[str, int]] = {w: {} for w in SHAPE_WORDS}
    fits: dict[str, dict[str, list[float]]] = {w: {} for w in SHAPE_WORDS}
    for word, p, clip in items:
        scene = parse_prompt(p)
        for frame in clip:
            o = next(iter(read_frame_v2(frame, scene).objects.values()))
            drawn = "missing" if not o.found else (o.shape if o.shape is not None and not o.band else "unreadable")
            counts[word][drawn] = counts[word].get(drawn, 0) + 1
            if drawn in SHAPE_WORDS:
                fits[word].setdefault(drawn, []).append(o.iou)
    frames = {w: sum(c.values()) for w, c in counts.items()}
    return {"frames": frames,
            "confusion": {w: {d: n / max(1, frames[w]) for d, n in sorted(c.items())} for w, c in counts.items()},
            "fit": {w: {d: float(np.mean(v)) for d, v in sorted(f.items())} for w, f in fits.items()}}
