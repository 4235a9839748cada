"""The metric registry: names, versions, families, units and how each is computed.

Families: `vbench-formula` (VBench's exact formula, no network), `proxy` (a VBench protocol on
OpenCV stand-ins; never mixed with VBench numbers), `sfpp` (sfpp's own diagnostics), `vbench`
(VBench networks from --weights-dir) and `judge` (Gemini Visual Stability).
"""

from __future__ import annotations

from dataclasses import dataclass

from sfpp.errors import SfppError


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    name: str
    version: str  # bump when the computation changes: it is part of the cache key
    family: str
    unit: str
    description: str
    text_window: bool = False  # windowed by --text-window (10 s) instead of --window
    needs_prompt: bool = False
    whole_video: bool = False  # rated once per video (judge), not per window


_SPECS = [
    MetricSpec(name="temporal_flickering", version="1", family="vbench-formula", unit="0-1",
               description="VBench temporal flickering: (255 - mean abs diff of consecutive frames)/255"),
    MetricSpec(name="dynamic_degree_proxy", version="3", family="proxy", unit="0-1 windows",
               description="VBench dynamic-degree rule on Farneback flow (1 = window moves)"),
    MetricSpec(name="motion_smoothness_proxy", version="1", family="proxy", unit="0-1",
               description="VBench motion-smoothness protocol with flow-warped interpolation instead of AMT-S"),
    MetricSpec(name="subject_consistency_proxy", version="3", family="proxy", unit="0-1",
               description="VBench first/previous-frame consistency on motion-compensated grey SSIM instead of DINO"),
    MetricSpec(name="background_consistency_proxy", version="1", family="proxy", unit="0-1",
               description="VBench first/previous-frame consistency on HSV histograms instead of CLIP"),
    MetricSpec(name="clipped_highlights", version="1", family="sfpp", unit="0-1 pixels",
               description="fraction of pixels with luma >= 250"),
    MetricSpec(name="clipped_shadows", version="1", family="sfpp", unit="0-1 pixels",
               description="fraction of pixels with luma <= 5"),
    MetricSpec(name="mean_luma", version="1", family="sfpp", unit="luma 0-255", description="mean BT.601 luma"),
    MetricSpec(name="luma_trend", version="1", family="sfpp", unit="luma/s",
               description="least-squares slope of mean luma (per video: over the whole video)"),
    MetricSpec(name="exposure_stability_proxy", version="2", family="sfpp", unit="0-100",
               description="sfpp's offline exposure heuristic mirroring the judge rubric (clipping, brightness drift, "
                           "frame-to-frame flicker; not the paper's judge); "
                           "per video: mean of the worst quarter of windows"),
    MetricSpec(name="colour_drift", version="1", family="sfpp", unit="Delta E76",
               description="mean Lab colour distance to the first window"),
    MetricSpec(name="sharpness_ratio", version="1", family="sfpp", unit="x window 0",
               description="Laplacian variance (256x256 grey) relative to the first window"),
    MetricSpec(name="stagnation", version="3", family="sfpp", unit="0-1 pairs",
               description="share of frozen frame pairs; details give where the video freezes"),
    MetricSpec(name="flow_magnitude", version="3", family="sfpp", unit="px/frame",
               description="top-5 % forward-backward consistent Farneback flow magnitude between consecutive frames"),
    # version 2: float resize as VBench's load_video (no rounding); DINO's own position-embedding interpolation
    MetricSpec(name="subject_consistency", version="2", family="vbench", unit="0-1",
               description="VBench subject consistency (DINO ViT-B/16)"),
    MetricSpec(name="background_consistency", version="2", family="vbench", unit="0-1",
               description="VBench background consistency (CLIP ViT-B/32)"),
    MetricSpec(name="overall_consistency", version="1", family="vbench", unit="cosine", text_window=True,
               needs_prompt=True,
               description="VBench overall consistency: ViCLIP ViT-L/14 video-text cosine on 8 middle frames (weights MIT)"),
    MetricSpec(name="clip_score", version="2", family="vbench", unit="cosine", text_window=True, needs_prompt=True,
               description="CLIP ViT-B/32 text-frame cosine on 8 middle frames (VBench competition)"),
    MetricSpec(name="aesthetic_quality", version="2", family="vbench", unit="0-1",
               description="VBench aesthetic quality (CLIP ViT-L/14 + LAION head)"),
    # version 2: VBench's RAFT weights (raft-things.pth), not torchvision's
    MetricSpec(name="dynamic_degree", version="2", family="vbench", unit="0-1 windows",
               description="VBench dynamic degree (RAFT, raft-things.pth)"),
    MetricSpec(name="imaging_quality", version="1", family="vbench", unit="0-1",
               description="VBench imaging quality (MUSIQ-SPAQ via pyiqa, non-commercial licence)"),
    MetricSpec(name="motion_smoothness", version="1", family="vbench", unit="0-1",
               description="VBench motion smoothness (AMT-S interpolation of odd frames; weights CC BY-NC-SA 4.0)"),
    MetricSpec(name="visual_stability", version="1", family="judge", unit="0-100", needs_prompt=True, whole_video=True,
               description="Self-Forcing++ Visual Stability: Gemini exposure rubric 0-5, x20"),
]
METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

OFFLINE_METRICS = tuple(s.name for s in _SPECS if s.family in ("vbench-formula", "proxy", "sfpp"))
VBENCH_METRICS = tuple(s.name for s in _SPECS if s.family == "vbench")
GROUPS: dict[str, tuple[str, ...]] = {
    "offline": OFFLINE_METRICS,
    "vbench": VBENCH_METRICS,
    "all": OFFLINE_METRICS + VBENCH_METRICS + ("visual_stability",),
}
ALIASES = {"color_drift": "colour_drift", "exposure": "exposure_stability_proxy"}


def resolve_metrics(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Expand groups/aliases, accept hyphens, keep registry order; unknown names are an error."""
    if not names:
        return OFFLINE_METRICS
    chosen: set[str] = set()
    for raw in names:
        for part in str(raw).split(","):
            n = part.strip().lower().replace("-", "_")
            if not n:
                continue
            n = ALIASES.get(n, n)
            if n in GROUPS:
                chosen.update(GROUPS[n])
            elif n in METRICS:
                chosen.add(n)
            else:
                raise SfppError(
                    f"unknown metric {part.strip()!r}; choose from: {', '.join(GROUPS)}, {', '.join(METRICS)}"
                )
    return tuple(n for n in METRICS if n in chosen)
