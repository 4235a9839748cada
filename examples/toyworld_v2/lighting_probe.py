"""Issue #19, the lit world before any training: does the oracle read lit clips as unlit ones, and does the
shipped learned codec represent the light? (docs/toyworld.md "Scaling", Exposure.)

    OMP_NUM_THREADS=1 python examples/toyworld_v2/lighting_probe.py      # ~1 min on one CPU thread
    python examples/toyworld_v2/lighting_probe.py --codec runs/toylit/codec/codec.safetensors --codec-only
        # the same codec probe on another codec (e.g. one trained with train-codec --light-amplitude)

Prints the oracle's mean scores over ground-truth clips (12 s = one lighting period, 16 fps) at several
amplitudes, on the held-out prompts and on white/gray-background training prompts, then the codec's luma
error on lit and unlit clips and its mean relative luma error per gain band.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sfpp.toyworld.model import toy_codec
from sfpp.toyworld.oracle import score_video
from sfpp.toyworld.world import Lighting, held_out_prompts, parse_prompt, render_clip, training_prompts

PERIOD = 12.0
N = 192  # frames: one period at 16 fps
KEYS = ("all_colours", "shapes_all", "background_ok", "all_moving")


def luma(frames: np.ndarray) -> np.ndarray:
    return (0.299 * frames[..., 0] + 0.587 * frames[..., 1] + 0.114 * frames[..., 2]).mean(axis=(1, 2))  # (F,)


def oracle_table(name: str, prompts: list[str], amplitudes) -> None:
    for a in amplitudes:
        acc = {k: [] for k in KEYS}
        for i, p in enumerate(prompts):
            clip = render_clip(parse_prompt(p), N, np.random.default_rng(i), lighting=Lighting(a, PERIOD))
            o = score_video(clip.frames, p)["overall"]
            for k in KEYS:
                acc[k].append(o[k])
        print(f"oracle, {name}, A = {a}: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in acc.items()))


def codec_probe(prompts: list[str], path: Path | None = None) -> None:
    from sfpp.toyworld.learned_codec import load_codec

    torch.set_num_threads(1)
    codec = toy_codec("v4") if path is None else load_codec(path)
    print(f"codec: {path or 'shipped (toy-v4)'}")
    gains, rel = [], []
    for a in (0.0, 0.15):
        px, worst = [], []
        for i, p in enumerate(prompts):
            clip = render_clip(parse_prompt(p), N, np.random.default_rng(i), lighting=Lighting(a, PERIOD))
            video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # (1, 3, F, H, W)
            with torch.no_grad():
                rec = codec.decode_native(codec.encode(video))  # (1, 3, F, H, W) in [-1, 1]
            rec = ((rec[0].permute(1, 2, 3, 0) + 1) * 127.5).numpy()  # (F, H, W, 3)
            truth = clip.frames.astype(np.float32)
            px.append(np.abs(rec - truth).mean())
            worst.append(np.abs(luma(rec) - luma(truth)).max())
            if a > 0:
                gains += list(clip.gain)
                rel += list((luma(rec) - luma(truth)) / luma(truth))
        print(f"codec, A = {a}: mean |pixel error| {np.mean(px):.2f}, largest per-frame luma error {np.max(worst):.2f}")
    gains, rel = np.array(gains), np.array(rel)
    for lo, hi in ((0.85, 0.9), (0.9, 0.95), (0.95, 1.05), (1.05, 1.1), (1.1, 1.16)):
        m = (gains >= lo) & (gains < hi)
        print(f"codec, gain {lo}-{hi}: mean relative luma error {rel[m].mean():+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", type=Path, help="a codec.safetensors from train-codec (default: the shipped one)")
    ap.add_argument("--codec-only", action="store_true", help="skip the oracle tables")
    a = ap.parse_args()
    held = held_out_prompts()[:12]
    if not a.codec_only:
        bright = [p for p in training_prompts(200) if "white background" in p or "gray background" in p][:12]
        oracle_table("12 held-out prompts", held, (0.0, 0.06, 0.1, 0.15))
        oracle_table("12 white/gray-background training prompts", bright, (0.0, 0.15, 0.2))
    codec_probe(held[:8], a.codec)


if __name__ == "__main__":
    main()
