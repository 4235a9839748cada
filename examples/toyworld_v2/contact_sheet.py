"""A contact sheet: one row per video, one frame every `--every` seconds (docs/toyworld.md's figures).

    python examples/toyworld_v2/contact_sheet.py gt.mp4 student.mp4 --labels "world,student" --every 5 --out sheet.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from sfpp.video import read_mp4


def sheet(paths: list[str], labels: list[str], every: float, size: int = 96, label_w: int = 90) -> Image.Image:
    rows = []
    for path, label in zip(paths, labels):
        frames, fps = read_mp4(path)  # (F, H, W, 3) uint8
        idx = np.arange(0, len(frames), max(1, round(every * fps)))
        tiles = [np.asarray(Image.fromarray(frames[i]).resize((size, size), Image.NEAREST)) for i in idx]
        row = Image.new("RGB", (label_w + len(tiles) * (size + 2), size + 14), "white")
        ImageDraw.Draw(row).text((4, size // 2), label, fill="black")
        for k, (i, t) in enumerate(zip(idx, tiles)):
            x = label_w + k * (size + 2)
            row.paste(Image.fromarray(t), (x, 0))
            ImageDraw.Draw(row).text((x + 2, size + 1), f"{i / fps:.0f} s", fill="black")
        rows.append(row)
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--labels", default=None, help="comma-separated, one per video (default: file names)")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between frames")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    labels = a.labels.split(",") if a.labels else [p.rsplit("/", 1)[-1] for p in a.videos]
    if len(labels) != len(a.videos):
        ap.error("--labels needs one label per video")
    sheet(a.videos, labels, a.every).save(a.out)


if __name__ == "__main__":
    main()
