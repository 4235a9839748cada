"""Oracle v2: shapes, motion, stripes, noise and bands, calibrated on ground truth and on degradations
with known answers (thresholds fixed here, before any model was trained against them)."""

import cv2
import numpy as np
import pytest

from sfpp.toyworld.oracle import score_video
from sfpp.toyworld.world import BACKGROUNDS, COLOURS, ObjectSpec, SceneSpec, random_scene, render_clip

WINDOW = 0.5  # s: degradations must be found in the right half-second window
K = 48  # frame where a degradation starts (window 6 of 0.5 s at 16 fps)


def test_ground_truth_scores_shapes_and_motion_right():
    rng = np.random.default_rng(11)
    shape_ok, moving, clean, sharp, stripes, band = [], [], [], [], [], []
    for _ in range(10):
        sc = random_scene(rng)
        s = score_video(render_clip(sc, 48, rng).frames, sc, window_s=1.0)
        o = s["overall"]
        shape_ok.append(o["shape_ok"])
        moving += [w["all_moving"] for w in s["windows"]]
        clean.append(o["clean"])
        sharp.append(o["sharp"])
        stripes.append(o["stripes_ok"])
        band.append(o["band"])
        assert 0.4 <= o["speed"] <= 1.3  # the world's speed range, 0.4-1.2 px/frame
    assert np.nanmean(shape_ok) >= 0.95
    assert np.mean(moving) >= 0.95
    assert np.mean(clean) >= 0.99 and np.nanmean(sharp) >= 0.95 and np.mean(stripes) >= 0.95
    assert max(band) == 0.0


def _clip():
    sc = SceneSpec((ObjectSpec("red", "circle"), ObjectSpec("blue", "square")), "black")
    return sc, render_clip(sc, 96, np.random.default_rng(2)).frames


def _windows(frames, sc, key):
    return [w[key] for w in score_video(frames, sc, window_s=WINDOW)["windows"]]


def _before_after(values, ok, bad):
    """Windows wholly before K are fine, windows from one window after K on are flagged."""
    w = int(WINDOW * 16)
    before = [v for i, v in enumerate(values) if (i + 1) * w <= K]
    after = [v for i, v in enumerate(values) if i * w >= K + w]
    assert before and after
    assert all(ok(v) for v in before), values
    assert all(bad(v) for v in after), values


def test_frozen_scene_is_found_when_it_freezes():
    sc, f = _clip()
    f[K:] = f[K]
    _before_after(_windows(f, sc, "all_moving"), lambda v: v == 1.0, lambda v: v == 0.0)


def test_frozen_scene_with_per_frame_noise_is_still_frozen():
    """Grain that changes every frame (the toy model's) is not motion."""
    sc, f = _clip()
    f[K:] = f[K]
    g = np.random.default_rng(0)
    f[K:] = np.clip(f[K:] + g.normal(0, 8, f[K:].shape), 0, 255).astype(np.uint8)
    _before_after(_windows(f, sc, "all_moving"), lambda v: v == 1.0, lambda v: v == 0.0)


def test_blur_is_found_when_it_starts():
    sc = SceneSpec((ObjectSpec("orange", "square"),), "navy")  # one object: its edges are never occluded
    f = render_clip(sc, 96, np.random.default_rng(6)).frames
    f[K:] = np.stack([cv2.GaussianBlur(x, (0, 0), 1.0) for x in f[K:]])
    _before_after(_windows(f, sc, "sharp"), lambda v: v == 1.0, lambda v: v == 0.0)


def test_a_band_is_found_when_it_is_painted_in():
    sc, f = _clip()
    f[K:, 14:19, :] = COLOURS["blue"]
    _before_after(_windows(f, sc, "band"), lambda v: v == 0.0, lambda v: v == 1.0)


def test_noise_is_found_when_it_is_added():
    sc, f = _clip()
    f[K:] = np.clip(f[K:] + np.random.default_rng(0).normal(0, 20, f[K:].shape), 0, 255).astype(np.uint8)
    _before_after(_windows(f, sc, "clean"), lambda v: v == 1.0, lambda v: v == 0.0)


def test_a_removed_object_is_missed_from_the_frame_it_goes():
    sc, f = _clip()
    img = f[K:].astype(np.float32)
    red = np.sqrt(((img - np.array(COLOURS["red"], np.float32)) ** 2).sum(-1)) < 120
    f[K:][red] = BACKGROUNDS["black"]
    _before_after(_windows(f, sc, "all_colours"), lambda v: v == 1.0, lambda v: v == 0.0)


@pytest.mark.parametrize("drawn, prompted", [("square", "circle"), ("circle", "triangle"), ("triangle", "square")])
def test_the_wrong_shape_is_not_the_prompted_one(drawn, prompted):
    rng = np.random.default_rng(3)
    f = render_clip(SceneSpec((ObjectSpec("green", drawn),), "gray"), 32, rng).frames
    asked = SceneSpec((ObjectSpec("green", prompted),), "gray")
    assert score_video(f, asked)["overall"]["shape_ok"] <= 0.1
    right = SceneSpec((ObjectSpec("green", drawn),), "gray")
    assert score_video(f, right)["overall"]["shape_ok"] >= 0.95


def test_stripes_and_their_pan_are_read():
    sc = SceneSpec((ObjectSpec("yellow", "circle"),), "navy", striped=True)
    s = score_video(render_clip(sc, 48, np.random.default_rng(5)).frames, sc)
    o = s["overall"]
    assert o["stripes_ok"] >= 0.95 and 0.15 <= abs(o["stripe_pan"]) <= 0.6  # the world pans 0.2-0.5 px/frame
    plain = SceneSpec((ObjectSpec("yellow", "circle"),), "navy", striped=False)
    assert score_video(render_clip(sc, 16, np.random.default_rng(5)).frames, plain)["overall"]["stripes_ok"] <= 0.05
