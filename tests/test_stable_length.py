"""Stable length (issue #19): fixed before any budget sweep: last 10% of each video, objects and motion
>= 80% of their values at 1x K. Checked on ground-truth videos with known failures."""

import json

import numpy as np

from sfpp.toyworld.compare import stable_length, stable_length_of_folder, tail_scores
from sfpp.toyworld.world import BACKGROUNDS, COLOURS, FPS, ObjectSpec, SceneSpec, render_clip
from sfpp.video import Mp4Writer

K = 12  # frames in the teacher horizon (6 latent frames x 2)
SCENE = SceneSpec((ObjectSpec("red", "circle"), ObjectSpec("blue", "square")), "black")


def test_the_rule():
    ok = {"objects": 1.0, "motion": 1.0, "shapes": 1.0}
    assert stable_length({1: ok, 10: ok, 30: ok})["stable_multiple"] == 30
    r = stable_length({1: ok, 10: ok, 30: {**ok, "objects": 0.79}, 100: ok})
    assert (r["stable_multiple"], r["failed_at"], r["reason"]) == (10, 30, "objects")  # no credit for recovering
    assert stable_length({1: ok, 10: {**ok, "motion": 0.8}})["stable_multiple"] == 10  # exactly 80% holds
    r = stable_length({1: {**ok, "motion": 0.5}, 10: {**ok, "motion": 0.41}})
    assert r["stable_multiple"] == 10  # relative to the 1x K value, not to 1
    assert stable_length({1: {**ok, "objects": 0.0}})["stable_multiple"] == 0


def _write(path, frames, prompt):
    w = Mp4Writer(path, fps=FPS, width=32, height=32)
    w.write(frames)
    w.finish()
    w.publish()
    path.with_suffix(".json").write_text(json.dumps({"prompt": prompt, "fps": FPS}))


def _video(m: int, seed: int, *, vanish_after: float | None = None, freeze_after: float | None = None):
    f = render_clip(SCENE, m * K, np.random.default_rng(seed)).frames
    n = len(f)
    if freeze_after is not None:
        k = int(n * freeze_after)
        f[k:] = f[k]
    if vanish_after is not None:
        k = int(n * vanish_after)
        img = f[k:].astype(np.float32)
        red = np.sqrt(((img - np.array(COLOURS["red"], np.float32)) ** 2).sum(-1)) < 120
        f[k:][red] = BACKGROUNDS["black"]
    return f


def test_an_object_that_vanishes_late_in_long_videos_sets_the_stable_length(tmp_path):
    for m in (1, 4, 10):
        for i in range(2):
            (tmp_path / f"{m}x").mkdir(exist_ok=True)
            _write(tmp_path / f"{m}x" / f"p{i:02d}.mp4", _video(m, i, vanish_after=0.5 if m == 10 else None),
                   SCENE.prompt)
    r = stable_length_of_folder(tmp_path)
    assert r["stable_multiple"] == 4 and r["failed_at"] == 10 and "objects" in r["reason"]
    assert r["per_multiple"][10]["objects"] == 0.0 and r["per_multiple"][4]["objects"] == 1.0


def test_motion_that_freezes_in_long_videos_sets_the_stable_length():
    per = {}
    for m in (1, 4, 10):
        t = [tail_scores(_video(m, i, freeze_after=0.5 if m >= 4 else None), FPS, SCENE.prompt) for i in range(2)]
        per[m] = {k: float(np.mean([x[k] for x in t])) for k in t[0]}
    assert per[1]["motion"] == 1.0 and per[4]["motion"] == 0.0
    r = stable_length(per)
    assert r["stable_multiple"] == 1 and r["failed_at"] == 4 and r["reason"] == "motion"
