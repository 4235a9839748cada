"""Does a toy teacher bind colours to shapes? Prompts in pairs that swap the two colours, sampled with
the same noise; per frame, whether every object has its asked shape (oracle v2).

    python examples/toyworld_v2/swap_binding.py TEACHER.safetensors [...] --out docs/toyworld/swap_binding.json

A teacher that cannot tell the two prompts of a pair apart draws them alike: at most one of the two is
right in any frame, so its mean stays near or below one half.
"""

import argparse
import json

import numpy as np

from sfpp.toyworld.oracle import read_frame_v2
from sfpp.toyworld.teacher import load_teacher, sample_teacher
from sfpp.toyworld.world import parse_prompt

PAIRS = [(("magenta", "circle"), ("white", "triangle"), "black"),
         (("red", "square"), ("green", "triangle"), "gray"),
         (("blue", "circle"), ("yellow", "square"), "navy"),
         (("cyan", "triangle"), ("orange", "circle"), "brown")]


def prompts():
    out = []
    for (c1, s1), (c2, s2), bg in PAIRS:
        out.append(f"a {c1} {s1} and a {c2} {s2} bouncing on a {bg} background")
        out.append(f"a {c2} {s1} and a {c1} {s2} bouncing on a {bg} background")  # colours swapped
    return out


def both_right(clip, prompt) -> float:
    scene = parse_prompt(prompt)
    want = {o.colour: o.shape for o in scene.objects}
    ok = [all(o.found and o.shape == want[c] for c, o in read_frame_v2(f, scene).objects.items()) for f in clip]
    return float(np.mean(ok))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("teachers", nargs="+")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ps = prompts()
    res = {"prompts": ps, "seeds": a.seeds, "steps": 24, "guidance": 5.0, "shift": 5.0, "teachers": {}}
    for path in a.teachers:
        t, arch = load_teacher(path)
        rows = {p: [] for p in ps}
        for seed in range(a.seeds):
            for p in ps:  # one prompt per call: the same noise for both prompts of a pair
                clip = sample_teacher(t, [p], steps=24, shift=5.0, guidance=5.0, seed=seed, arch=arch)[0]
                rows[p].append(both_right(clip, p))
        mean = float(np.mean([v for r in rows.values() for v in r]))
        res["teachers"][path] = {"arch": arch, "mean": mean, "per_prompt": {p: float(np.mean(r)) for p, r in rows.items()}}
        print(f"{path} ({arch}): every object its asked shape in {mean:.1%} of frames")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
