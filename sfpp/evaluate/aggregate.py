"""Aggregate scores: VBench's Quality/Semantic/Total and the Self-Forcing++ long-video columns.

Inputs are raw VBench dimension scores in [0, 1] keyed by VBench name. Outputs are on the
papers' 0-100 scale. An aggregate whose components are missing is `None`, never a partial mean.
Proxy aggregates are built from `*_proxy` metrics only, and carry `_proxy` in their name.
"""

from __future__ import annotations

import math
from typing import Mapping

# VBench scripts/constant.py: (min, max) for min-max normalisation.
NORMALIZATION: dict[str, tuple[float, float]] = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
    "object_class": (0.0, 1.0),
    "multiple_objects": (0.0, 1.0),
    "human_action": (0.0, 1.0),
    "color": (0.0, 1.0),
    "spatial_relationship": (0.0, 1.0),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}
DIM_WEIGHT: dict[str, float] = {"dynamic_degree": 0.5}  # every other dimension weighs 1
QUALITY_DIMS = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "aesthetic_quality",
    "imaging_quality",
    "dynamic_degree",
)
SEMANTIC_DIMS = (
    "object_class",
    "multiple_objects",
    "human_action",
    "color",
    "spatial_relationship",
    "scene",
    "appearance_style",
    "temporal_style",
    "overall_consistency",
)


def _have(scores: Mapping[str, float | None], names) -> bool:
    return all(scores.get(n) is not None and not math.isnan(scores[n]) for n in names)


def normalize(name: str, value: float) -> float:
    lo, hi = NORMALIZATION[name]
    return (value - lo) / (hi - lo)


def _weighted(scores: Mapping[str, float | None], dims) -> float | None:
    if not _have(scores, dims):
        return None
    w = [DIM_WEIGHT.get(d, 1.0) for d in dims]
    return 100.0 * sum(wi * normalize(d, scores[d]) for wi, d in zip(w, dims)) / sum(w)


def vbench_quality_score(scores: Mapping[str, float | None]) -> float | None:
    """Weighted mean of the 7 min-max-normalised quality dimensions (dynamic 0.5), x100."""
    return _weighted(scores, QUALITY_DIMS)


def vbench_semantic_score(scores: Mapping[str, float | None]) -> float | None:
    return _weighted(scores, SEMANTIC_DIMS)


def vbench_total_score(scores: Mapping[str, float | None]) -> float | None:
    q, s = vbench_quality_score(scores), vbench_semantic_score(scores)
    return None if q is None or s is None else (4.0 * q + s) / 5.0


def text_alignment(scores: Mapping[str, float | None]) -> float | None:
    """SF++: mean(overall_consistency, clip_score), x100."""
    if not _have(scores, ("overall_consistency", "clip_score")):
        return None
    return 100.0 * (scores["overall_consistency"] + scores["clip_score"]) / 2.0


def temporal_quality(scores: Mapping[str, float | None], *, suffix: str = "") -> float | None:
    """SF++: (subject + background + motion_smoothness + 0.5*dynamic) / 3.5 on raw scores, x100."""
    names = [n + suffix for n in ("subject_consistency", "background_consistency", "motion_smoothness", "dynamic_degree")]
    if not _have(scores, names):
        return None
    s, b, m, d = (scores[n] for n in names)
    return 100.0 * (s + b + m + 0.5 * d) / 3.5


def framewise_quality(scores: Mapping[str, float | None]) -> float | None:
    """SF++: mean(imaging_quality, aesthetic_quality), x100."""
    if not _have(scores, ("imaging_quality", "aesthetic_quality")):
        return None
    return 100.0 * (scores["imaging_quality"] + scores["aesthetic_quality"]) / 2.0


# Which components each aggregate needs, for "n/a (needs ...)" messages.
AGGREGATE_NEEDS: dict[str, tuple[str, ...]] = {
    "vbench_quality_score": QUALITY_DIMS,
    "text_alignment": ("overall_consistency", "clip_score"),
    "temporal_quality": ("subject_consistency", "background_consistency", "motion_smoothness", "dynamic_degree"),
    "dynamic_degree_x100": ("dynamic_degree",),
    "framewise_quality": ("imaging_quality", "aesthetic_quality"),
    "visual_stability": ("visual_stability",),
    "temporal_quality_proxy": (
        "subject_consistency_proxy",
        "background_consistency_proxy",
        "motion_smoothness_proxy",
        "dynamic_degree_proxy",
    ),
}


def aggregates(scores: Mapping[str, float | None]) -> dict[str, float | None]:
    """Every aggregate computable from a run's per-metric means (0-100 scale, None if missing).

    `visual_stability` is already on 0-100 (judge rating x 20) and is passed through.
    """
    dd = scores.get("dynamic_degree")
    vs = scores.get("visual_stability")
    return {
        "vbench_quality_score": vbench_quality_score(scores),
        "text_alignment": text_alignment(scores),
        "temporal_quality": temporal_quality(scores),
        "dynamic_degree_x100": None if dd is None or math.isnan(dd) else 100.0 * dd,
        "visual_stability": None if vs is None or math.isnan(vs) else float(vs),
        "framewise_quality": framewise_quality(scores),
        "temporal_quality_proxy": temporal_quality(scores, suffix="_proxy"),
    }
