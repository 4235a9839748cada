"""Compare ToyWorld students over long horizons with the oracle (the results page's numbers).

For each student checkpoint, each prompt and each length (multiples of the teacher horizon K),
generate a video with `sfpp.generate` and score it with the oracle per window. Writes
``OUT/<label>/<len>x/*.mp4`` (+ sidecars, so `sfpp evaluate` can read the folders),
``OUT/compare.json`` and ``OUT/fidelity_over_time.png``. With ``reuse`` a video already in OUT
from the same checkpoint (hash), sink, prompt, seed and length (per its sidecar) is scored again
instead of regenerated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sfpp.spec import DEFAULT_MODEL
from sfpp.toyworld.model import TOY_CODEC, TOY_WINDOW
from sfpp.toyworld.oracle import score_video
from sfpp.toyworld.world import FPS


def horizon_seconds() -> float:
    """The teacher horizon K in seconds (K latent frames of T pixel frames each)."""
    return TOY_WINDOW * TOY_CODEC.frames / FPS


def compare(students: dict[str, str | None | dict], prompts: list[str], out: Path, *, multiples=(1, 10, 30, 100),
            seed: int = 0, window_s: float = 2.0, log=print, reuse: bool = False) -> dict:
    import sfpp
    from sfpp.files import write_json
    from sfpp.spec import VideoSpec, load_model, resolve_spec
    from sfpp.video import read_mp4

    out = Path(out)
    results: dict = {"horizon_s": horizon_seconds(), "multiples": list(multiples), "prompts": prompts, "runs": {}}
    for label, entry in students.items():
        opts = dict(entry) if isinstance(entry, dict) else {"checkpoint": entry}
        ckpt, sink = opts.get("checkpoint"), int(opts.get("sink", 0))
        rs = resolve_spec(VideoSpec(model=None if ckpt else DEFAULT_MODEL, checkpoint=ckpt, seconds=1.0, device="cpu", sink=sink))
        lm = load_model(rs)
        per_len = {}
        for m in multiples:
            seconds = m * horizon_seconds()
            folder = out / label / f"{m}x"
            folder.mkdir(parents=True, exist_ok=True)
            scores, tails = [], []
            for i, p in enumerate(prompts):
                path = folder / f"p{i:02d}.mp4"
                if not (reuse and _same_video(path, p, seed + i, seconds, lm.checkpoint_sha256, sink)):
                    sfpp.generate(p, out=path, loaded=lm, model=None if ckpt else DEFAULT_MODEL, checkpoint=ckpt, seconds=seconds, seed=seed + i,
                                  device="cpu", sink=sink)
                frames, fps = read_mp4(path)
                scores.append(score_video(frames, p, fps=fps, window_s=window_s))
                tails.append(tail_scores(frames, fps, p))
            keys = ("fidelity", "all_colours", "background_ok", "brightness", "extra_colours", "objects",
                    "shapes_all", "all_moving", "frozen", "speed", "band", "clean", "sharp")
            overall = {k: _nanmean([s["overall"][k] for s in scores]) for k in keys}
            last = {k: _nanmean([s["windows"][-1][k] for s in scores]) for k in keys}
            tail = {k: _nanmean([t[k] for t in tails]) for k in TAIL_KEYS}
            per_len[f"{m}x"] = {"seconds": seconds, "overall": overall, "last_window": last, "tail": tail,
                                **{f"{k}_curve": _window_means(scores, k)
                                   for k in ("fidelity", "brightness", "all_colours", "objects", "shapes_all",
                                             "all_moving")}}
            log(f"{label} {m}x ({seconds:.1f} s): fidelity {overall['fidelity']:.3f}, last window "
                f"{last['fidelity']:.3f}, colours {overall['all_colours']:.3f}")
        results["runs"][label] = per_len
        results.setdefault("stable_length", {})[label] = stable_length(
            {int(k[:-1]): v["tail"] for k, v in per_len.items()})
    write_json(out / "compare.json", results)
    _plot(results, out / "fidelity_over_time.png")
    return results


# ---------------------------------------------------------------------- stable length (issue #19)
TAIL = 0.1  # the last 10 % of a video
TAIL_KEYS = ("objects", "motion", "shapes")
STABLE_FRACTION = 0.8  # both persistences must stay >= 80 % of their values at 1x K
# Fixed before any budget sweep ran (issue #19): the measure, its tail and its threshold are not tuned on data.


def tail_scores(frames: np.ndarray, fps: float, prompt: str, *, tail: float = TAIL) -> dict[str, float]:
    """Oracle v2 over the last `tail` of a video: object persistence (every prompted object found),
    motion persistence (every prompted object moving, per 2 s window) and shapes (all right).

    The tail is at least 8 frames (motion needs a few frames), so a teacher-horizon video (12 frames)
    is scored on its last 8.
    """
    n = len(frames)
    k = min(n, max(8, int(round(n * tail))))
    s = score_video(frames[n - k:], prompt, fps=fps, window_s=min(2.0, k / fps))
    o = s["overall"]
    return {"objects": o["all_colours"], "motion": o["all_moving"], "shapes": o["shapes_all"]}


def stable_length(per_multiple: dict[int, dict[str, float]], *, fraction: float = STABLE_FRACTION) -> dict:
    """The longest length (a multiple of the teacher horizon K) up to which object and motion
    persistence in the video's tail both stay >= `fraction` of their values at the shortest length.

    ``per_multiple``: {multiple of K: tail scores (`tail_scores` averaged over prompts)}. Lengths are
    taken in order; the first that fails ends the search (a later recovery does not count). Returns
    ``{"stable_multiple": m or 0, "reference": {...}, "failed_at": m or None, "reason": ...}``.
    """
    ms = sorted(per_multiple)
    if not ms:
        return {"stable_multiple": 0, "reference": None, "failed_at": None, "reason": "no videos"}
    ref = per_multiple[ms[0]]
    stable, failed, reason = 0, None, None
    for m in ms:
        v = per_multiple[m]
        bad = [k for k in ("objects", "motion")
               if not (np.isfinite(v[k]) and np.isfinite(ref[k]) and v[k] >= fraction * ref[k])]
        if ref["objects"] <= 0 or ref["motion"] <= 0:
            bad = bad or ["reference is zero"]
        if bad:
            failed, reason = m, ", ".join(bad)
            break
        stable = m
    return {"stable_multiple": stable, "reference": ref, "failed_at": failed, "reason": reason, "fraction": fraction}


def stable_length_of_folder(folder: Path, prompts: list[str] | None = None) -> dict:
    """Recompute the stable length of one student from its stored compare videos (``<m>x/pNN.mp4``)."""
    from sfpp.videos import read_sidecar, sidecar_prompt
    from sfpp.video import read_mp4

    per: dict[int, dict[str, float]] = {}
    for sub in sorted(Path(folder).iterdir()):
        if not (sub.is_dir() and sub.name.endswith("x") and sub.name[:-1].isdigit()):
            continue
        tails = []
        for mp4 in sorted(sub.glob("p*.mp4")):
            if mp4.name.endswith(".partial.mp4"):
                continue
            side = read_sidecar(mp4.with_suffix(".json") if mp4.with_suffix(".json").is_file() else None)
            prompt = sidecar_prompt(side) or (prompts[int(mp4.stem[1:])] if prompts else None)
            if prompt is None:
                continue
            frames, fps = read_mp4(mp4)
            tails.append(tail_scores(frames, fps, prompt))
        if tails:
            per[int(sub.name[:-1])] = {k: _nanmean([t[k] for t in tails]) for k in TAIL_KEYS}
    return {"per_multiple": per, **stable_length(per)}


def _nanmean(values) -> float:
    v = np.array([x for x in values], dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _window_means(scores: list[dict], key: str) -> list[float]:
    """Per window, the mean of `key` over the prompts' oracle scores (up to the shortest video)."""
    n_win = min(len(s["windows"]) for s in scores)
    return [_nanmean([s["windows"][w][key] for s in scores]) for w in range(n_win)]


def _same_video(path: Path, prompt: str, seed: int, seconds: float, sha256: str | None, sink: int) -> bool:
    """An earlier video at `path` from the same checkpoint, sink, prompt, seed and length (per its sidecar).

    Without a checkpoint hash (the bundled model) the video's origin cannot be checked: never reused.
    """
    side = path.with_suffix(".json")
    if sha256 is None or not (path.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("prompt") == prompt and meta.get("seed") == seed and meta.get("checkpoint_sha256") == sha256
            and meta.get("config", {}).get("cache", {}).get("sink") == sink
            and abs(float(meta.get("seconds", -1)) - seconds) < 1e-6)


def _plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # the [eval] extra
        from sfpp.errors import SfppError

        raise SfppError("plots need matplotlib: pip install 'sfpp[eval]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = f"{max(results['multiples'])}x"
    panels = (("shapes_all_curve", "frames with every object its asked shape", "Shape accuracy", (0, 1.02)),
              ("all_colours_curve", "frames with every prompted colour", "Object persistence", (0, 1.02)),
              ("all_moving_curve", "share of videos with every object moving", "Motion persistence", (0, 1.02)),
              ("brightness_curve", "mean luma (0-255)", "Brightness (exposure drift)", None))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for label, per_len in results["runs"].items():
        r = per_len[longest]
        for ax, (key, _, _, _) in zip(axes, panels):
            curve = r.get(key)
            if curve is not None:  # compare.json files from before oracle v2 have no shape/motion curves
                ax.plot(np.arange(len(curve)) * 2.0, curve, label=label)
    for ax, (_, ylabel, title, ylim) in zip(axes, panels):
        ax.set(xlabel="time (s, 2 s windows)", ylabel=ylabel, title=f"{title}, {longest} K video")
        if ylim is not None:
            ax.set_ylim(*ylim)
    for a in axes:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def switch_test(first: str, second: str, out: Path, *, at_s: float, seconds: float, checkpoint: str | None = None,
                seed: int = 0, blend: int = 0) -> dict:
    """A prompt switch measured with the oracle (issue #7).

    Generates ``first`` alone and the schedule ``first[0s] | second[at_s]`` with the same seed, then
    reports: whether every frame before the switch takes effect is identical to the single-prompt
    video, and how many chunks after the switch the oracle first finds the second prompt's content
    (its background and all its object colours) in a frame.
    """
    import sfpp
    from sfpp.files import write_json
    from sfpp.prompts import PromptEntry, chunk_prompt_index
    from sfpp.spec import VideoSpec, load_model, resolve_spec
    from sfpp.toyworld.oracle import frame_scores
    from sfpp.toyworld.world import parse_prompt
    from sfpp.video import read_mp4

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rs = resolve_spec(VideoSpec(model=None if checkpoint else DEFAULT_MODEL, checkpoint=checkpoint, seconds=seconds, device="cpu"))
    lm = load_model(rs)
    schedule = [PromptEntry(0.0, first), PromptEntry(at_s, second)]
    single, switched = out / "single.mp4", out / "switch.mp4"
    sfpp.generate(first, out=single, loaded=lm, model=None if checkpoint else DEFAULT_MODEL, checkpoint=checkpoint, seconds=seconds, seed=seed,
                  device="cpu")
    sfpp.generate(schedule, out=switched, loaded=lm, model=None if checkpoint else DEFAULT_MODEL, checkpoint=checkpoint, seconds=seconds, seed=seed,
                  device="cpu", blend_chunks=blend)
    a, fps = read_mp4(single)
    b, _ = read_mp4(switched)
    cf = rs.chunk_frames
    per_chunk = _pixel_frames(2 * cf) - _pixel_frames(cf)  # pixel frames of a (non-first) chunk
    # the first chunk generated under the second prompt, and its first pixel frame
    c = 0
    while chunk_prompt_index(schedule, _pixel_frames(c * rs.chunk_frames) / fps) == 0:
        c += 1
    switch_frame = _pixel_frames(c * rs.chunk_frames)
    scene = parse_prompt(second)
    found = []
    for f in b[switch_frame:]:
        s = frame_scores(f, scene)
        found.append(bool(s["background_ok"] == 1.0 and s["all_colours"] == 1.0))
    first_found = next((i for i, ok in enumerate(found) if ok), None)
    res = {
        "first": first, "second": second, "at_s": at_s, "seconds": seconds, "seed": seed, "blend_chunks": blend,
        "switch_frame": switch_frame, "switch_s": switch_frame / fps, "frames_per_chunk": per_chunk,
        "identical_before_switch": bool(np.array_equal(a[:switch_frame], b[:switch_frame])),
        "first_found_frame": None if first_found is None else switch_frame + first_found,
        "chunks_to_find": None if first_found is None else first_found // per_chunk + 1,
        "found_after_switch": float(np.mean(found)) if found else 0.0,
    }
    write_json(out / "switch.json", res)
    return res


def _pixel_frames(latent_frames: int) -> int:
    from sfpp.presets import get_preset

    return get_preset(DEFAULT_MODEL).codec.pixel_frames(latent_frames)
