"""Compare ToyWorld students over long horizons with the oracle (the results page's numbers).

For each student checkpoint, each prompt and each length (multiples of the teacher horizon K),
generate a video with `sfpp.generate` and score it with the oracle per window. Writes
``OUT/<label>/<len>x/*.mp4`` (+ sidecars, so `sfpp evaluate` can read the folders),
``OUT/compare.json`` and ``OUT/fidelity_over_time.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sfpp.toyworld.model import TOY_CODEC, TOY_WINDOW
from sfpp.toyworld.oracle import score_video
from sfpp.toyworld.world import FPS


def horizon_seconds() -> float:
    """The teacher horizon K in seconds (K latent frames of T pixel frames each)."""
    return TOY_WINDOW * TOY_CODEC.frames / FPS


def compare(students: dict[str, str | None | dict], prompts: list[str], out: Path, *, multiples=(1, 10, 30, 100),
            seed: int = 0, window_s: float = 2.0, log=print) -> dict:
    import sfpp
    from sfpp.spec import VideoSpec, load_model, resolve_spec
    from sfpp.video import read_mp4

    out = Path(out)
    results: dict = {"horizon_s": horizon_seconds(), "multiples": list(multiples), "prompts": prompts, "runs": {}}
    for label, entry in students.items():
        opts = dict(entry) if isinstance(entry, dict) else {"checkpoint": entry}
        ckpt, sink = opts.get("checkpoint"), int(opts.get("sink", 0))
        rs = resolve_spec(VideoSpec(model="toy", checkpoint=ckpt, seconds=1.0, device="cpu", sink=sink))
        lm = load_model(rs)
        per_len = {}
        for m in multiples:
            seconds = m * horizon_seconds()
            folder = out / label / f"{m}x"
            folder.mkdir(parents=True, exist_ok=True)
            scores = []
            for i, p in enumerate(prompts):
                path = folder / f"p{i:02d}.mp4"
                sfpp.generate(p, out=path, loaded=lm, model="toy", checkpoint=ckpt, seconds=seconds, seed=seed + i,
                              device="cpu", sink=sink)
                frames, fps = read_mp4(path)
                scores.append(score_video(frames, p, fps=fps, window_s=window_s))
            keys = ("fidelity", "all_colours", "background_ok", "brightness", "extra_colours")
            overall = {k: float(np.mean([s["overall"][k] for s in scores])) for k in keys}
            last = {k: float(np.mean([s["windows"][-1][k] for s in scores])) for k in keys}
            n_win = min(len(s["windows"]) for s in scores)
            curve = [float(np.mean([s["windows"][w]["fidelity"] for s in scores])) for w in range(n_win)]
            bright = [float(np.mean([s["windows"][w]["brightness"] for s in scores])) for w in range(n_win)]
            per_len[f"{m}x"] = {"seconds": seconds, "overall": overall, "last_window": last,
                                "fidelity_curve": curve, "brightness_curve": bright}
            log(f"{label} {m}x ({seconds:.1f} s): fidelity {overall['fidelity']:.3f}, last window "
                f"{last['fidelity']:.3f}, colours {overall['all_colours']:.3f}")
        results["runs"][label] = per_len
    (out / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, out / "fidelity_over_time.png")
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = f"{max(results['multiples'])}x"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, per_len in results["runs"].items():
        r = per_len[longest]
        t = np.arange(len(r["fidelity_curve"])) * 2.0
        axes[0].plot(t, r["fidelity_curve"], label=label)
        axes[1].plot(t, r["brightness_curve"], label=label)
    axes[0].set(xlabel="time (s)", ylabel="oracle prompt fidelity (0-1)", title=f"Prompt fidelity, {longest} K video",
                ylim=(0, 1.02))
    axes[1].set(xlabel="time (s)", ylabel="mean luma (0-255)", title="Brightness (exposure drift)")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
