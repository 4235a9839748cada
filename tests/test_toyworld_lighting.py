"""The lit ToyWorld (issue #19's exposure world): a slow global lighting cycle over the same scenes."""

import math

import numpy as np
import pytest

from sfpp.toyworld.oracle import score_video
from sfpp.toyworld.world import FPS, Lighting, parse_prompt, render_clip

PROMPT = "a red circle and a cyan square bouncing on a gray background"


def test_unlit_clips_are_the_draws_of_the_world_without_lighting():
    scene = parse_prompt(PROMPT)
    plain = render_clip(scene, 24, np.random.default_rng(3))
    zero = render_clip(scene, 24, np.random.default_rng(3), lighting=Lighting(0.0))
    assert np.array_equal(plain.frames, zero.frames) and zero.gain is None


def test_lighting_scales_every_pixel_by_the_cycles_gain():
    scene = parse_prompt(PROMPT)
    n = 12 * FPS  # one full 12 s period
    plain = render_clip(scene, n, np.random.default_rng(5))
    lit = render_clip(scene, n, np.random.default_rng(5), lighting=Lighting(0.15, 12.0))
    assert np.array_equal(plain.positions, lit.positions)  # same scene, same motion: the phase is drawn last
    # the gain is a sinusoid of the asked amplitude and period
    assert lit.gain.min() == pytest.approx(0.85, abs=2e-3) and lit.gain.max() == pytest.approx(1.15, abs=2e-3)
    spectrum = np.abs(np.fft.rfft(lit.gain - lit.gain.mean()))
    assert int(np.argmax(spectrum)) == 1  # one cycle in the clip
    # every frame is the unlit frame times its gain (gray, red and cyan stay below 255 at 1.15x)
    ratio = lit.frames.astype(np.float64).sum(axis=(1, 2, 3)) / plain.frames.astype(np.float64).sum(axis=(1, 2, 3))
    assert np.abs(ratio - lit.gain).max() < 0.01
    lit_luma = lit.frames.mean(axis=(1, 2, 3))
    assert lit_luma.max() - lit_luma.min() > 0.25 * plain.frames.mean()  # visibly brighter and darker


def test_the_gain_follows_the_formula_from_a_random_phase():
    light = Lighting(0.1, 8.0)
    t = np.arange(0, 16, 1 / FPS)
    g = light.gain(t, 0.5)
    assert np.allclose(g, 1 + 0.1 * np.sin(2 * math.pi * t / 8.0 + 0.5))
    phases = [render_clip(parse_prompt(PROMPT), 4, np.random.default_rng(s), lighting=light).gain[0] for s in range(40)]
    assert np.std(phases) > 0.03  # clips start at different points of the cycle


@pytest.mark.parametrize("amplitude, period", [(-0.1, 12.0), (1.0, 12.0), (0.1, 0.0)])
def test_impossible_lighting_is_refused(amplitude, period):
    with pytest.raises(ValueError):
        Lighting(amplitude, period)


def test_the_oracle_reads_lit_clips_as_well_as_unlit_ones():
    """Persistence measured by the oracle must not change with the light (up to +-15 %), or the lit world's
    object and motion scores would measure the lighting instead of the student."""
    prompts = [PROMPT, "a orange triangle moving on a white background", "a blue square moving on a striped brown background"]
    for p in prompts:
        scores = [score_video(render_clip(parse_prompt(p), 12 * FPS, np.random.default_rng(1),
                                          lighting=Lighting(a, 12.0)).frames, p)["overall"] for a in (0.0, 0.15)]
        for k in ("all_colours", "shapes_all", "all_moving", "background_ok"):
            assert scores[1][k] >= scores[0][k] - 0.05, (p, k, scores)
