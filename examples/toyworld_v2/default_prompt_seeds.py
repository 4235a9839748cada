"""Oracle-v2 scores of one prompt's videos over several generation seeds, per student checkpoint.

    python examples/toyworld_v2/default_prompt_seeds.py STUDENT.safetensors [...] --seconds 60 --seeds 0,1,2,3

Prints one line per (student, seed) and, with --json, writes them all (docs/toyworld/default_prompt_60s_v4.json
was made this way, one student at a time). Videos go to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import sfpp
from sfpp.files import write_json
from sfpp.serve.config import TOY_PROMPT as DEFAULT_PROMPT  # the toy models' default prompt, defined once
from sfpp.spec import VideoSpec, load_model, resolve_spec
from sfpp.toyworld.oracle import score_video
from sfpp.video import read_mp4

KEYS = ("shapes_all", "shape_ok", "all_moving", "frozen", "speed", "band", "all_colours")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--json", default=None, help="write every score here")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    report = {"prompt": a.prompt, "seconds": a.seconds, "window_s": 2.0, "students": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for ck in a.checkpoints:
            lm = load_model(resolve_spec(VideoSpec(checkpoint=ck, seconds=a.seconds, device="cpu")))
            rows = report["students"].setdefault(ck, {})
            for seed in seeds:
                out = Path(tmp) / f"s{seed}.mp4"
                sfpp.generate(a.prompt, out=out, loaded=lm, checkpoint=ck, seconds=a.seconds, seed=seed, device="cpu")
                frames, fps = read_mp4(out)
                s = score_video(frames, a.prompt, fps=fps)["overall"]
                rows[str(seed)] = {k: round(float(s[k]), 4) for k in KEYS}
                print(ck, seed, rows[str(seed)], flush=True)
    if a.json:
        write_json(a.json, report)  # atomic: a full disk never leaves half a file


if __name__ == "__main__":
    main()
