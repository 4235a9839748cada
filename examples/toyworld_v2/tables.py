"""Markdown tables of `sfpp toyworld compare` results (docs/toyworld.md's comparison tables).

    python examples/toyworld_v2/tables.py docs/toyworld/compare_v4_s0.json docs/toyworld/compare_v4_s1.json

One table per score: rows are students (per compare file: seed), columns the video lengths (multiples of
the teacher horizon K); each cell is the mean over the prompts of the whole video's share (frames for
shapes and colours, 2 s windows for motion). "last 2 s" adds the last window of the longest video.
"""

from __future__ import annotations

import json
import sys

SCORES = (
    ("shapes_all", "Shape accuracy: frames in which every prompted object has its asked shape", "{:.0%}"),
    ("all_colours", "Object persistence: frames showing every prompted colour", "{:.0%}"),
    ("all_moving", "Motion persistence (the toy Dynamic Degree): 2 s windows with every object moving", "{:.0%}"),
    ("frozen", "Frozen: share of object-frames moving < 0.2 px/frame (the world's objects: 0.4-1.2)", "{:.0%}"),
    ("speed", "Speed: median px/frame of the prompted objects (the world draws 0.4-1.2)", "{:.2f}"),
    ("background_ok", "Background: frames with the prompted background", "{:.0%}"),
    ("band", "Bands/smears: frames with one", "{:.1%}"),
)


def fmt(v, f):
    return "-" if v is None else f.format(v)


def main(paths: list[str]) -> None:
    runs = []
    for i, p in enumerate(paths):
        with open(p, encoding="utf-8") as f:
            r = json.load(f)
        for label, per_len in r["runs"].items():
            runs.append((f"{label} (seed {i})" if len(paths) > 1 else label, per_len, r["multiples"]))
    mults = runs[0][2]
    for key, title, f in SCORES:
        print(f"**{title}**\n")
        print("| student | " + " | ".join(f"{m}x K" for m in mults) + f" | last 2 s of {mults[-1]}x |")
        print("|---|" + "---|" * (len(mults) + 1))
        for name, per_len, _ in runs:
            cells = [fmt(per_len[f"{m}x"]["overall"].get(key), f) for m in mults]
            cells.append(fmt(per_len[f"{mults[-1]}x"]["last_window"].get(key), f))
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
