"""Exposure of long ToyWorld videos against the lit world's lighting cycle (issue #19's exposure experiment).

In the lit world (`world.Lighting`) every frame is multiplied by gain(t) = 1 + A sin(2 pi t / P + phase), and
the prompt does not name the light, so a student has to carry it in its context. The measure splits a video
into whole periods P and fits, per period, the frame luma with

    L(t) = c0 + c1 sin(2 pi t / P) + c2 cos(2 pi t / P)        (t: seconds from the start of the video)

which gives the period's mean exposure c0, the cycle's relative amplitude hypot(c1, c2) / c0 and its phase
atan2(c2, c1) (L = c0 (1 + a sin(2 pi t / P + phase))). Exposure errors that accumulate show as:

* **mean drift**: the period mean moving away from the first period's (the video creeping brighter or darker);
* **fading** (or growing) cycle: the amplitude of the last period against the first (a student that stops
  carrying the light freezes the exposure: amplitude -> 0);
* **phase drift**: the cycle running at the wrong rate, its phase moving from period to period (unwrapped).

A video shorter than one period has no whole period and no result. What the world itself gives (its own clips
of the same prompts, `world_reference`) is the answer a student should match: clipping at white lowers the
amplitude of bright scenes below A, so students are read against that, not against A.

Layouts: frames (F, H, W, 3) uint8 (or float 0..255); luma (F,).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SUMMARY_KEYS = ("mean_drift", "mean_range", "amplitude_first", "amplitude_last", "amplitude_ratio", "phase_drift_deg")


def frame_luma(frames: np.ndarray) -> np.ndarray:
    """Mean BT.601 luma (0..255) of each frame: (F, H, W, 3) -> (F,)."""
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3), got {f.shape}")
    return (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).mean(axis=(1, 2))


def fit_cycle(luma: np.ndarray, t_s: np.ndarray, period_s: float) -> tuple[float, float, float]:
    """Least-squares fit of L(t) = c0 + c1 sin(wt) + c2 cos(wt), w = 2 pi / P, at absolute times `t_s`.
    Returns (c0, relative amplitude hypot(c1, c2) / c0, phase atan2(c2, c1) in radians)."""
    w = 2 * math.pi / period_s
    t = np.asarray(t_s, dtype=np.float64)
    a = np.stack([np.ones_like(t), np.sin(w * t), np.cos(w * t)], axis=1)  # (n, 3)
    (c0, c1, c2), *_ = np.linalg.lstsq(a, np.asarray(luma, dtype=np.float64), rcond=None)
    return float(c0), float(math.hypot(c1, c2) / c0) if c0 > 0 else float("nan"), float(math.atan2(c2, c1))


def exposure_cycle(luma: np.ndarray, fps: float, period_s: float) -> dict:
    """Per whole period of `luma` (F,) at `fps`: mean, relative amplitude and phase; and the drift summary
    (keys SUMMARY_KEYS; relative values, phase in degrees). Raises ValueError below one whole period."""
    luma = np.asarray(luma, dtype=np.float64)
    n = int(round(period_s * fps))  # frames per period
    k = len(luma) // n if n > 0 else 0
    if k < 1:
        raise ValueError(f"{len(luma) / fps:.1f} s of video holds no whole {period_s:g} s lighting period")
    t = np.arange(len(luma)) / fps
    wins = [fit_cycle(luma[i * n:(i + 1) * n], t[i * n:(i + 1) * n], period_s) for i in range(k)]
    means = np.array([w[0] for w in wins])
    amps = np.array([w[1] for w in wins])
    phases = np.unwrap(np.array([w[2] for w in wins]))
    return {
        "periods": k,
        "period_s": period_s,
        "mean": means.tolist(),
        "amplitude": amps.tolist(),
        "phase_deg": np.degrees(phases).tolist(),
        "mean_drift": float((means[-1] - means[0]) / means[0]),
        "mean_range": float((means.max() - means.min()) / means[0]),
        "amplitude_first": float(amps[0]),
        "amplitude_last": float(amps[-1]),
        "amplitude_ratio": float(amps[-1] / amps[0]) if amps[0] > 0 else float("nan"),
        "phase_drift_deg": float(np.degrees(phases[-1] - phases[0])),
    }


def summarise(per_video: list[dict]) -> dict:
    """Mean of each drift key over videos, plus the mean absolute mean drift and the largest |phase drift|."""
    out = {key: float(np.mean([v[key] for v in per_video])) for key in SUMMARY_KEYS}
    out["abs_mean_drift"] = float(np.mean([abs(v["mean_drift"]) for v in per_video]))
    out["max_abs_phase_drift_deg"] = float(max(abs(v["phase_drift_deg"]) for v in per_video))
    out["videos"] = len(per_video)
    return out


def world_reference(prompts: list[str], seconds: float, lighting, *, seed: int = 0, size: int | None = None) -> dict:
    """The measure on the world's own lit clips of `prompts` (`seconds` long each): what a student that carries
    the light exactly would score. Clip i is drawn with seed `seed + i`."""
    from sfpp.toyworld.world import FPS, NATIVE, parse_prompt, render_clip

    per = []
    for i, p in enumerate(prompts):
        clip = render_clip(parse_prompt(p), int(round(seconds * FPS)), np.random.default_rng(seed + i),
                           size=size or NATIVE, lighting=lighting)
        per.append(exposure_cycle(frame_luma(clip.frames), FPS, lighting.period_s))
    return {"per_video": per, "summary": summarise(per)}


def exposure_of_folder(folder: Path, period_s: float, multiple: int | None = None) -> dict:
    """The measure on one student's stored compare videos (``folder/<m>x/pNN.mp4``), at `multiple` (default:
    the longest length there). Returns {"multiple", "seconds", "prompts", "per_video", "summary"}."""
    from sfpp.errors import SfppError
    from sfpp.video import read_mp4
    from sfpp.videos import read_sidecar, sidecar_prompt

    subs = {int(d.name[:-1]): d for d in folder.iterdir()
            if d.is_dir() and d.name.endswith("x") and d.name[:-1].isdigit()} if folder.is_dir() else {}
    if not subs:
        raise SfppError(f"{folder} holds no <m>x/ video folders; give OUT/LABEL folders of 'sfpp toyworld compare'")
    m = max(subs) if multiple is None else multiple
    if m not in subs:
        raise SfppError(f"{folder} has no {m}x/ videos (it has {', '.join(f'{k}x' for k in sorted(subs))}); "
                        "pick one of those with --multiple")
    per, prompts, seconds = [], [], 0.0
    for mp4 in sorted(subs[m].glob("p*.mp4")):
        if mp4.name.endswith(".partial.mp4"):
            continue
        side = mp4.with_suffix(".json")
        prompts.append(sidecar_prompt(read_sidecar(side if side.is_file() else None)))
        frames, fps = read_mp4(mp4)
        seconds = len(frames) / fps
        try:
            per.append(exposure_cycle(frame_luma(frames), fps, period_s))
        except ValueError as e:
            raise SfppError(f"{mp4}: {e}; pick a longer --multiple") from None
    if not per:
        raise SfppError(f"{subs[m]} holds no pNN.mp4 videos")
    return {"multiple": m, "seconds": seconds, "prompts": prompts, "per_video": per, "summary": summarise(per)}


# The rule of issue #19's lit experiment, fixed before any lit student was measured: the two algorithms
# "differ in exposure" on a quantity when their difference is larger than the spread (max - min) of that
# quantity over the world's own clips, and larger than the difference between two training seeds of the same
# algorithm where there are two seeds; with two seeds it must hold for each seed (then it has one sign in
# every seed: |d0 - d1| <= 2 x seed difference < |d0| + |d1| rules out opposite signs).
VERDICT_QUANTITIES = {"abs_mean_drift": "mean_drift", "amplitude_last": "amplitude_last"}


def exposure_verdict(result: dict, a: str = "sf", b: str = "sfpp") -> dict:
    """Apply the rule to one `sfpp toyworld exposure --json` result (one length). Student folders are named
    ``<algorithm>_s<seed>`` (their last path part); the world's entry is the one whose key starts "world".

    Returns, per quantity: the world's spread, each seed's a and b values and difference, the seed difference
    (None with one seed), and "differ" (True / False); "seed_check" says whether the seed part could be
    applied."""
    from sfpp.errors import SfppError

    world = [v for k, v in result.items() if k.startswith("world")]
    if len(world) != 1:
        raise SfppError("the exposure result needs exactly one world reference entry (run it without --no-reference)")
    students: dict[tuple[str, int], dict] = {}
    for k, v in result.items():
        if k.startswith("world"):
            continue
        name = Path(k.rstrip("/")).name
        algo, sep, seed = name.rpartition("_s")
        if not sep or not seed.isdigit():
            raise SfppError(f"student folder {k} is not named <algorithm>_s<seed>")
        students[(algo, int(seed))] = v["summary"]
    counts = {k: len(v["per_video"]) if "per_video" in v else v["summary"].get("videos") for k, v in result.items()}
    if len({c for c in counts.values() if c is not None}) > 1:  # e.g. a folder still being written by compare
        raise SfppError("the exposure result's entries hold different numbers of videos "
                        f"({', '.join(f'{k}: {c}' for k, c in counts.items())}); rerun it when every video is written")
    seeds = sorted({s for (al, s) in students if al == a} & {s for (al, s) in students if al == b})
    if not seeds:
        raise SfppError(f"no seed has both an '{a}' and a '{b}' student; found {sorted(students)}")
    out: dict = {"seeds": seeds, "seed_check": len(seeds) >= 2, "quantities": {}}
    for q, per_key in VERDICT_QUANTITIES.items():
        wvals = [abs(p[per_key]) if q.startswith("abs_") else p[per_key] for p in world[0]["per_video"]]
        spread = float(max(wvals) - min(wvals))
        diffs = {s: students[(b, s)][q] - students[(a, s)][q] for s in seeds}
        seed_diff = None
        if len(seeds) >= 2:
            seed_diff = float(max(max(students[(al, s)][q] for s in seeds) - min(students[(al, s)][q] for s in seeds)
                                  for al in (a, b)))
        big = all(abs(d) > spread and (seed_diff is None or abs(d) > seed_diff) for d in diffs.values())
        out["quantities"][q] = {
            "world_spread": spread,
            a: {s: students[(a, s)][q] for s in seeds}, b: {s: students[(b, s)][q] for s in seeds},
            f"{b}_minus_{a}": diffs, "seed_difference": seed_diff, "differ": bool(big)}
    out["differ"] = any(v["differ"] for v in out["quantities"].values())
    return out
