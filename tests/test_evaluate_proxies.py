"""The offline proxies on synthetic videos with known answers; the thresholds are the acceptance criteria.

Cases (128x128, 16 fps, 3 s): a static texture; the same with i.i.d. per-frame grain of std 9 luma
levels in 2x2 blotches (the toy model's video of 'a red circle and a blue square bouncing on a black
background' measures a temporal std of 9.0 luma over its nearly static last 4 s: 6 on the black
background, 18 inside the objects); a textured 32 px square moving 2 px/frame over it (with the same
grain); a clean camera pan (2 px/frame);
a steady brightening to twice the mean luma, without clipping; a hard flicker (alternate frames
+-30 luma, VBench temporal_flickering ~0.78).

What 'clearly' means for exposure_stability_proxy (0-100, 20 per rubric level): a video that
doubles its brightness must lose at least two rubric levels (<= 60, it was 80.6), a hard flicker
at least three (<= 40, it was 99.999); still, moving or panning videos keep >= 95.
"""

from __future__ import annotations

import numpy as np
import pytest

from sfpp.evaluate import offline as off
from sfpp.evaluate.video import make_windows

FPS, N, S = 16.0, 48, 128


def _texture(seed: int, w: int = S, lo: float = 60, hi: float = 160) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(lo, hi, size=(S // 6, w // 6, 3)).astype(np.float32)
    return cv2.resize(small, (w, S), interpolation=cv2.INTER_CUBIC)


def _u8(x) -> np.ndarray:
    return np.clip(np.asarray(x), 0, 255).round().astype(np.uint8)


TOY_NOISE = 9.0  # luma std of frame-to-frame grain on the toy model's nearly static stretches


def grain(seed: int, sigma: float = TOY_NOISE) -> np.ndarray:
    """(N, S, S, 1) i.i.d. per frame, in 2x2-pixel blotches like the toy model's (per-pixel std `sigma`)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(0, sigma, size=(N, S // 2, S // 2, 1))
    return np.repeat(np.repeat(g, 2, axis=1), 2, axis=2)


def static(noise: float = 0.0, seed: int = 0) -> np.ndarray:
    base = _texture(seed)
    return _u8(base[None] + grain(seed + 100, noise) if noise else np.repeat(base[None], N, 0))


def moving_object(noise: float = TOY_NOISE) -> np.ndarray:
    frames = np.repeat(_texture(1)[None], N, 0)
    sq = _texture(2, lo=0, hi=255)[:32, :32]
    for i in range(N):
        x0 = 2 + 2 * i
        frames[i, 48:80, x0 : x0 + 32] = sq
    return _u8(frames + grain(7, noise))


def pan(speed: int = 2) -> np.ndarray:
    big = _texture(3, w=S + speed * N)
    return _u8(np.stack([big[:, speed * i : speed * i + S] for i in range(N)]))


def brightening() -> np.ndarray:
    base = _texture(4, lo=40, hi=80)  # mean ~60 -> ~120: doubles, never clips
    return _u8(base[None] * np.linspace(1.0, 2.0, N)[:, None, None, None])


def flicker() -> np.ndarray:
    base = _texture(5, lo=70, hi=150)
    return _u8(base[None] + 30.0 * (np.arange(N) % 2 * 2 - 1)[:, None, None, None])


CASES = {"static": static, "static+noise": lambda: static(TOY_NOISE), "moving": moving_object, "pan": pan,
         "brightening": brightening, "flicker": flicker}


def _scores(frames: np.ndarray, module=off) -> dict[str, float]:
    a = module.FrameAnalysis(frames, FPS)
    wins = make_windows(len(frames), FPS, 2.0)
    return {
        "dynamic": float(np.mean([module.dynamic_degree_proxy(a, w) for w in wins])),
        "flow": module.flow_magnitude(a, make_windows(len(frames), FPS, 100)[0]),
        "stagnation": float(module.frozen_pairs(a).mean()),
        "subject": float(np.mean([module.subject_consistency_proxy(a, w) for w in wins])),
        "exposure": module.worst_quarter_mean([module.exposure_stability_proxy(a, w, wins[0]) for w in wins]),
        "flickering": module.temporal_flickering(a, make_windows(len(frames), FPS, 100)[0]),
    }


@pytest.fixture(scope="module")
def scores():
    return {name: _scores(make()) for name, make in CASES.items()}


def test_frozen_noisy_scene_is_static(scores):
    assert scores["static+noise"]["dynamic"] == 0.0  # every window static
    assert scores["static"]["flow"] < 0.05 and scores["static"]["stagnation"] == 1.0


def test_frozen_noisy_scene_does_not_move(scores):
    s = scores["static+noise"]
    assert s["flow"] < 0.5  # px/frame (was ~9)
    assert s["stagnation"] >= 0.9  # frozen, grain or not
    assert scores["static"]["flow"] < 0.05 and scores["static"]["stagnation"] == 1.0


def test_real_motion_still_moves(scores):
    for name in ("moving", "pan"):
        assert scores[name]["dynamic"] == 1.0, name
        assert scores[name]["stagnation"] <= 0.05, name
    assert 1.0 < scores["moving"]["flow"] < 3.0  # the square (6 % of the frame) moves 2 px/frame
    assert 1.5 < scores["pan"]["flow"] < 2.5  # 2 px/frame


def test_subject_proxy_does_not_punish_a_clean_pan(scores):
    assert scores["pan"]["subject"] >= 0.9  # was 0.37 on a pan
    assert scores["static"]["subject"] >= 0.99
    assert scores["static+noise"]["subject"] >= 0.6  # SSIM itself reads grain as change
    assert scores["moving"]["subject"] < scores["static+noise"]["subject"]  # the object does change the frame


def test_exposure_proxy_falls_clearly_for_brightening_and_flicker(scores):
    assert scores["brightening"]["exposure"] <= 60  # two rubric levels down (was 80.6)
    assert scores["flicker"]["exposure"] <= 40  # three levels down (was 99.999)
    assert scores["flicker"]["flickering"] < 0.8  # a hard flicker by VBench's own formula
    for name in ("static", "static+noise", "moving", "pan"):
        assert scores[name]["exposure"] >= 95, name


def test_exposure_rating_components():
    assert off.exposure_rating(0.0) == 5.0
    assert off.exposure_rating(0.0, 2.0) == pytest.approx(2.0)  # a doubling: 3 levels
    assert off.exposure_rating(0.0, 0.5) == pytest.approx(2.0)  # a halving too
    assert off.exposure_rating(0.0, 1.0, flicker=2.0) == pytest.approx(4.0)
    assert off.exposure_rating(0.5, 8.0, flicker=50.0) == 0.0
