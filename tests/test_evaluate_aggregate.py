"""Aggregates: the Self-Forcing++ long-video columns and VBench's Quality score."""

from __future__ import annotations

import pytest

from sfpp.evaluate.aggregate import (
    NORMALIZATION,
    aggregates,
    framewise_quality,
    temporal_quality,
    text_alignment,
    vbench_quality_score,
)

# Component scores from the Self-Forcing++ paper (arXiv 2510.02283v1, appendix Table 4), 50 s videos,
# as given in the reference notes, with the paper's long-video columns they must reproduce.
PAPER_ROWS = [
    # (row, components in VBench's raw 0-1 scale, column, paper value)
    ("Self-Forcing++ 50s", {"overall_consistency": 0.2203, "clip_score": 0.3071}, "text_alignment", 26.37),
    (
        "CausVid 50s",
        {"subject_consistency": 0.9829, "background_consistency": 0.9727, "motion_smoothness": 0.9845, "dynamic_degree": 0.3735},
        "temporal_quality",
        89.34,
    ),
    ("CausVid 50s", {"dynamic_degree": 0.3735}, "dynamic_degree_x100", 37.35),
    ("CausVid 50s", {"imaging_quality": 0.5791, "aesthetic_quality": 0.6521}, "framewise_quality", 61.56),
]


@pytest.mark.parametrize("row,components,column,paper", PAPER_ROWS)
def test_self_forcing_pp_columns_reproduce_the_paper(row, components, column, paper):
    assert aggregates(components)[column] == pytest.approx(paper, abs=0.01), row


def test_temporal_quality_weights_dynamic_degree_by_half():
    base = {"subject_consistency": 0.9, "background_consistency": 0.8, "motion_smoothness": 0.7}
    lo = temporal_quality({**base, "dynamic_degree": 0.0})
    hi = temporal_quality({**base, "dynamic_degree": 1.0})
    assert lo == pytest.approx(100 * 2.4 / 3.5)
    assert hi - lo == pytest.approx(100 * 0.5 / 3.5)


def test_missing_components_give_none_not_a_partial_mean():
    assert text_alignment({"clip_score": 0.3}) is None
    assert framewise_quality({"imaging_quality": 0.5, "aesthetic_quality": float("nan")}) is None
    agg = aggregates({"subject_consistency_proxy": 0.9, "background_consistency_proxy": 0.9,
                      "motion_smoothness_proxy": 0.9, "dynamic_degree_proxy": 1.0})
    # proxies feed only the proxy aggregate, never the VBench/SF++ columns
    assert agg["temporal_quality"] is None and agg["vbench_quality_score"] is None
    assert agg["temporal_quality_proxy"] == pytest.approx(100 * 3.2 / 3.5)


def test_vbench_quality_score_min_max_and_weights():
    # every dimension at its table minimum -> 0; at its maximum -> 100
    dims = ["subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
            "aesthetic_quality", "imaging_quality", "dynamic_degree"]
    assert vbench_quality_score({d: NORMALIZATION[d][0] for d in dims}) == pytest.approx(0.0)
    assert vbench_quality_score({d: NORMALIZATION[d][1] for d in dims}) == pytest.approx(100.0)
    # only dynamic degree at max: weight 0.5 of 6.5
    only_dd = {d: NORMALIZATION[d][0] for d in dims} | {"dynamic_degree": 1.0}
    assert vbench_quality_score(only_dd) == pytest.approx(100 * 0.5 / 6.5)
    # subject consistency halfway between 0.1462 and 1.0 -> 0.5 * 1/6.5
    half = {d: NORMALIZATION[d][0] for d in dims} | {"subject_consistency": (0.1462 + 1.0) / 2}
    assert vbench_quality_score(half) == pytest.approx(100 * 0.5 / 6.5)
    assert vbench_quality_score({d: 0.5 for d in dims[:-1]}) is None
