"""Metrics that need no downloaded weights: numpy + OpenCV over decoded frames.

`temporal_flickering` is VBench's exact formula. Everything named `*_proxy` re-uses a VBench
formula (sampling, thresholds) on OpenCV optical flow / SSIM / colour histograms instead of
VBench's networks: the numbers are NOT comparable with VBench's and are never mixed with them.
The exposure, colour-drift, sharpness, stagnation and flow-curve metrics are sfpp's own.

Frames are `(F, H, W, 3)` uint8 RGB; a window is frames `[start, end)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfpp.evaluate.video import Window

# Exposure thresholds on BT.601 luma (0-255), as in the reference notes.
HIGHLIGHT_LUMA = 250.0
SHADOW_LUMA = 5.0
# A frame pair is "frozen" when nothing changes: the mean abs diff of coarse grey frames (16x16-pixel
# block means, which average per-frame grain away: sigma 4 grain leaves ~0.3) and the consistent top-5 %
# flow are both tiny.
FROZEN_MAD = 0.6
FROZEN_BLOCK = 16
# ... or the change is grain: per-frame noise averages out in block means (i.i.d. grain of any strength
# leaves block-mean changes ~0.1x the per-pixel change; a real change of content keeps most of it).
FROZEN_GRAIN_RATIO = 0.2
FROZEN_FLOW_PX = 0.25
# Flow statistics count only forward-backward consistent vectors (Sundaram et al. 2010):
# |f(x) + b(x + f(x))|^2 <= FB_ALPHA * (|f|^2 + |b|^2) + FB_BETA px^2. Per-frame grain makes Farneback
# report large random vectors that the reverse flow does not undo; real motion is undone.
FB_ALPHA = 0.01
FB_BETA = 0.25
# ... and only where the motion explains the change: warping frame j back by the flow must cut the local
# (7x7 box) abs difference to frame i to at most FLOW_GAIN of the difference without motion. Per-frame
# grain on a frozen scene is not explained by any motion, so it reads as no motion.
FLOW_GAIN = 0.5
FLOW_GAIN_BOX = 11
# Grey frames are smoothed before Farneback (Gaussian sigma in flow-resolution pixels).
FLOW_PRESMOOTH_SIGMA = 2.0
# Fixed size (W, H) on which the Laplacian variance is taken, so sharpness is resolution-free.
SHARPNESS_SIZE = (256, 256)
# subject_consistency_proxy compares grey frames downscaled to this longer side.
SSIM_SIDE = 64
# exposure_stability_proxy: clipped fraction -> 0-5 rating anchors (mirrors the judge's rubric).
_CLIP_ANCHORS = np.array([0.0, 0.01, 0.05, 0.15, 0.35, 0.70, 0.90])
_RATING_ANCHORS = np.array([5.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
# ... minus rating levels for brightness drift from the first window: DRIFT_LEVELS_PER_DOUBLING per
# doubling (or halving) of (mean luma + 10), at most DRIFT_MAX_LEVELS ...
DRIFT_LEVELS_PER_DOUBLING = 3.0
DRIFT_MAX_LEVELS = 3.0
# ... and for frame-to-frame flicker: one level per FLICKER_LUMA_PER_LEVEL of mean |change in mean luma
# between consecutive frames - the window's mean change| (a steady ramp costs nothing), at most 4.
FLICKER_LUMA_PER_LEVEL = 2.0
FLICKER_MAX_LEVELS = 4.0


@dataclass(frozen=True, kw_only=True)
class FlowConfig:
    """Farneback optical-flow settings shared by every flow-based metric."""

    max_side: int = 512  # flow is computed on frames downscaled to this longer side (px rescaled)
    pyr_scale: float = 0.5
    levels: int = 4
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2


def _cv2():
    try:
        import cv2
    except ImportError:  # the [eval] extra
        from sfpp.errors import SfppError

        raise SfppError("offline metrics need OpenCV: pip install 'sfpp[eval]'") from None
    return cv2


def top_fraction_mean(mag: np.ndarray, fraction: float = 0.05) -> float:
    """Mean of the largest `int(N * fraction)` values (VBench's top-5 % flow statistic)."""
    flat = mag.reshape(-1)
    k = max(1, int(flat.size * fraction))
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


class FrameAnalysis:
    """Per-frame and per-pair quantities of one video, computed lazily and shared by metrics."""

    def __init__(self, frames: np.ndarray, fps: float, flow: FlowConfig = FlowConfig()):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (F, H, W, 3), got {frames.shape}")
        self.frames = frames
        self.fps = float(fps)
        self.num_frames, self.height, self.width = frames.shape[:3]
        self.flow_cfg = flow
        longer = max(self.height, self.width)
        self.flow_scale = min(1.0, flow.max_side / longer)  # flow-frame px per native px
        self._cache: dict[str, np.ndarray] = {}
        self._flows: dict[tuple[int, int], np.ndarray] = {}
        self._stats: dict[tuple[int, int], dict[str, float]] = {}
        self._grey_small: dict[int, np.ndarray] = {}

    # ---- per-frame -------------------------------------------------------------------------
    def _per_frame(self, key: str, fn) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = np.array([fn(f) for f in self.frames], dtype=np.float64)
        return self._cache[key]

    @staticmethod
    def luma(frame: np.ndarray) -> np.ndarray:
        f = frame.astype(np.float32)
        return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]  # BT.601, (H, W)

    def highlight_fraction(self) -> np.ndarray:
        return self._per_frame("hi", lambda f: float((self.luma(f) >= HIGHLIGHT_LUMA).mean()))

    def shadow_fraction(self) -> np.ndarray:
        return self._per_frame("lo", lambda f: float((self.luma(f) <= SHADOW_LUMA).mean()))

    def mean_luma(self) -> np.ndarray:
        return self._per_frame("luma", lambda f: float(self.luma(f).mean()))

    def mean_lab(self) -> np.ndarray:
        """Per-frame mean CIELAB colour (L 0-100), `(F, 3)`."""
        if "lab" not in self._cache:
            cv2 = _cv2()
            labs = [cv2.cvtColor(f.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(0) for f in self.frames]
            self._cache["lab"] = np.array(labs, dtype=np.float64)
        return self._cache["lab"]

    def laplacian_variance(self) -> np.ndarray:
        cv2 = _cv2()

        def lapvar(f):
            g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            g = cv2.resize(g, SHARPNESS_SIZE, interpolation=cv2.INTER_AREA)
            return float(cv2.Laplacian(g.astype(np.float64), cv2.CV_64F).var())

        return self._per_frame("lap", lapvar)

    # ---- per consecutive pair (index i = pair (i, i+1)) ------------------------------------
    def pair_rgb_mae(self) -> np.ndarray:
        """Mean absolute RGB difference of consecutive frames (VBench flickering's MAE)."""
        if "mae" not in self._cache:
            f = self.frames
            self._cache["mae"] = np.array(
                [np.abs(f[i + 1].astype(np.float32) - f[i].astype(np.float32)).mean() for i in range(len(f) - 1)],
                dtype=np.float64,
            )
        return self._cache["mae"]

    def pair_grey_mad(self) -> np.ndarray:
        if "mad" not in self._cache:
            mad, prev = [], self.luma(self.frames[0])
            for f in self.frames[1:]:  # two luma frames at a time: long videos stay in memory bounds
                cur = self.luma(f)
                mad.append(float(np.abs(cur - prev).mean()))
                prev = cur
            self._cache["mad"] = np.array(mad, dtype=np.float64)
        return self._cache["mad"]

    def pair_flow_top5(self) -> np.ndarray:
        """Mean of the top-5 % flow magnitudes between consecutive frames, in native px/frame."""
        return np.array([self.flow_stats(i, i + 1)["top5"] for i in range(self.num_frames - 1)])

    def pair_flow_mean(self) -> np.ndarray:
        return np.array([self.flow_stats(i, i + 1)["mean"] for i in range(self.num_frames - 1)])

    def flow_stats(self, i: int, j: int) -> dict[str, float]:
        """Top-5 %, top-2 % and mean flow magnitude from frame i to j (kept for every pair seen)."""
        key = (i, j)
        if key not in self._stats:
            mag = self.consistent_flow_magnitude(i, j)
            self._stats[key] = {
                "top5": top_fraction_mean(mag, 0.05),
                "top2": top_fraction_mean(mag, 0.02),
                "mean": float(mag.mean()),
            }
        return self._stats[key]

    # ---- optical flow ----------------------------------------------------------------------
    def _grey(self, i: int) -> np.ndarray:
        if i not in self._grey_small:
            cv2 = _cv2()
            g = cv2.cvtColor(self.frames[i], cv2.COLOR_RGB2GRAY)
            if self.flow_scale < 1.0:
                size = (max(8, round(self.width * self.flow_scale)), max(8, round(self.height * self.flow_scale)))
                g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
            g = cv2.GaussianBlur(g, (0, 0), FLOW_PRESMOOTH_SIGMA)
            self._grey_small[i] = g
            if len(self._grey_small) > 64:  # bounded memory on long videos
                self._grey_small.pop(next(iter(self._grey_small)))
        return self._grey_small[i]

    def flow(self, i: int, j: int) -> np.ndarray:
        """Farneback flow from frame i to frame j, `(h, w, 2)` in native pixels (flow resolution)."""
        key = (i, j)
        if key not in self._flows:
            cv2 = _cv2()
            c = self.flow_cfg
            fl = cv2.calcOpticalFlowFarneback(
                self._grey(i), self._grey(j), None, c.pyr_scale, c.levels, c.winsize, c.iterations, c.poly_n, c.poly_sigma, 0
            )
            fl = fl / self.flow_scale
            self._flows[key] = fl
            if len(self._flows) > 16:
                self._flows.pop(next(iter(self._flows)))
        return self._flows[key]

    def flow_magnitude(self, i: int, j: int) -> np.ndarray:
        fl = self.flow(i, j)
        return np.sqrt(fl[..., 0] ** 2 + fl[..., 1] ** 2)

    def consistent_flow_magnitude(self, i: int, j: int) -> np.ndarray:
        """|flow i->j| where the reverse flow j->i undoes it (`FB_ALPHA`, `FB_BETA`) and where warping by
        it explains the change between the frames (`FLOW_GAIN`); 0 elsewhere.

        Grain and compression noise make Farneback report random vectors; they fail these checks, so
        a frozen noisy scene measures ~0 px while moving objects keep their flow.
        """
        cv2 = _cv2()
        f, b = self.flow(i, j), self.flow(j, i)  # native px, at flow resolution
        h, w = f.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        s = self.flow_scale
        bw = cv2.remap(b, gx + f[..., 0] * s, gy + f[..., 1] * s, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = ((f + bw) ** 2).sum(-1)
        ok = err <= FB_ALPHA * ((f ** 2).sum(-1) + (bw ** 2).sum(-1)) + FB_BETA
        gi, gj = self._grey(i).astype(np.float32), self._grey(j).astype(np.float32)
        warped = cv2.remap(gj, gx + f[..., 0] * s, gy + f[..., 1] * s, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        box = (FLOW_GAIN_BOX, FLOW_GAIN_BOX)
        moved = cv2.blur(np.abs(warped - gi), box)
        still = cv2.blur(np.abs(gj - gi), box)
        ok &= moved <= FLOW_GAIN * still  # the motion explains the change (grain is explained by none)
        return np.sqrt((f ** 2).sum(-1)) * ok

    def pair_coarse_mad(self) -> np.ndarray:
        """Mean abs difference of consecutive frames' `FROZEN_BLOCK`-pixel block-mean luma (grain averages out)."""
        if "cmad" not in self._cache:
            cv2 = _cv2()
            size = (max(1, self.width // FROZEN_BLOCK), max(1, self.height // FROZEN_BLOCK))
            coarse = [cv2.resize(self.luma(f), size, interpolation=cv2.INTER_AREA) for f in self.frames]
            self._cache["cmad"] = np.array([float(np.abs(coarse[k + 1] - coarse[k]).mean()) for k in range(len(coarse) - 1)])
        return self._cache["cmad"]


def _pairs(win: Window) -> slice:
    """Consecutive-pair indices inside a window: pairs (i, i+1) with start <= i < end-1."""
    return slice(win.start, max(win.start, win.end - 1))


# ---- VBench's exact formula --------------------------------------------------------------------
def temporal_flickering(a: FrameAnalysis, win: Window) -> float:
    """VBench: (255 - mean over consecutive pairs of the mean abs RGB difference) / 255."""
    mae = a.pair_rgb_mae()[_pairs(win)]
    return float((255.0 - mae.mean()) / 255.0) if mae.size else float("nan")


def static_window(a: FrameAnalysis, win: Window) -> bool:
    """VBench's static filter on Farneback flow: top-2 % magnitude, 3*(min(H,W)/256) px, round(2N/16) pairs."""
    idx = list(range(win.start, win.end, max(1, round(a.fps / 8))))
    thres = 3.0 * min(a.height, a.width) / 256.0
    count_num = round(2 * len(idx) / 16.0)
    moving = sum(a.flow_stats(i, j)["top2"] > thres for i, j in zip(idx, idx[1:]))
    return moving < max(1, count_num)


# ---- proxies of VBench dimensions ---------------------------------------------------------------
def dynamic_degree_proxy(a: FrameAnalysis, win: Window) -> float:
    """VBench's dynamic-degree rule on Farneback flow: 1.0 if the window moves, else 0.0.

    Frames sampled every round(fps/8); per pair the mean of the top 5 % magnitudes; moving once
    round(4*N/16) pairs exceed 6*min(H,W)/256 px.
    """
    idx = list(range(win.start, win.end, max(1, round(a.fps / 8))))
    if len(idx) < 2:
        return float("nan")
    thres = 6.0 * min(a.height, a.width) / 256.0
    count_num = round(4 * len(idx) / 16.0)
    counter = 0
    for i, j in zip(idx, idx[1:]):
        if a.flow_stats(i, j)["top5"] > thres:
            counter += 1
        if counter >= count_num:
            return 1.0
    return 0.0


def _consistency(sims_prev: list[float], sims_first: list[float]) -> float:
    """VBench's subject/background formula: mean of (max(0, s_prev) + max(0, s_first)) / 2."""
    if not sims_prev:
        return float("nan")
    cur = [(max(0.0, p) + max(0.0, f)) / 2.0 for p, f in zip(sims_prev, sims_first)]
    return float(np.mean(cur))


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of two grey float images (Gaussian window 11, sigma 1.5, data range 255)."""
    cv2 = _cv2()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def _global_shift(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Translation (dx, dy) with cur(x) ~ ref(x - (dx, dy)), by phase correlation (Hann window)."""
    cv2 = _cv2()
    win = cv2.createHanningWindow((ref.shape[1], ref.shape[0]), cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(ref.copy(), cur.copy(), win)  # copies: OpenCV may window them in place
    return float(dx), float(dy)


def aligned_ssim(ref: np.ndarray, cur: np.ndarray) -> float:
    """SSIM of `cur` and `ref` after undoing their global translation (rounded to whole pixels),
    over the overlap only.

    Camera pans (the whole frame translating) compare like a still shot; objects that change or
    move against the background still lower the score.
    """
    dx, dy = _global_shift(ref, cur)
    h, w = ref.shape
    sx, sy = int(round(dx)), int(round(dy))
    if abs(sx) > w - 11 or abs(sy) > h - 11:  # too little overlap for the SSIM window
        return ssim(ref, cur)
    # cur(x) ~ ref(x - s): compare cur[s:] with ref[:-s] (per axis, for either sign)
    r = ref[max(0, -sy) : h - max(0, sy), max(0, -sx) : w - max(0, sx)]
    c = cur[max(0, sy) : h - max(0, -sy), max(0, sx) : w - max(0, -sx)]
    return ssim(np.ascontiguousarray(r), np.ascontiguousarray(c))


def subject_consistency_proxy(a: FrameAnalysis, win: Window) -> float:
    """VBench's first/previous-frame formula on motion-compensated SSIM of 64-px grey frames
    (global translation by phase correlation) in place of DINO cosines."""
    cv2 = _cv2()
    greys = []
    for i in range(win.start, win.end):
        g = cv2.cvtColor(a.frames[i], cv2.COLOR_RGB2GRAY).astype(np.float64)
        if max(g.shape) > SSIM_SIDE:  # coarse structure: tolerant of small motion, like a feature
            s = SSIM_SIDE / max(g.shape)
            g = cv2.resize(g, (round(g.shape[1] * s), round(g.shape[0] * s)), interpolation=cv2.INTER_AREA)
        greys.append(g)
    prev = [aligned_ssim(greys[i - 1], greys[i]) for i in range(1, len(greys))]
    first = [aligned_ssim(greys[0], greys[i]) for i in range(1, len(greys))]
    return _consistency(prev, first)


def _hsv_histogram(frame: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, [16, 8, 8], [0, 180, 0, 256, 0, 256]).reshape(-1)
    n = np.linalg.norm(h)
    return h / n if n > 0 else h


def background_consistency_proxy(a: FrameAnalysis, win: Window) -> float:
    """VBench's first/previous-frame formula with cosines of HSV colour histograms in place of CLIP."""
    hs = [_hsv_histogram(a.frames[i]) for i in range(win.start, win.end)]
    prev = [float(hs[i - 1] @ hs[i]) for i in range(1, len(hs))]
    first = [float(hs[0] @ hs[i]) for i in range(1, len(hs))]
    return _consistency(prev, first)


def _warp(frame: np.ndarray, flow: np.ndarray, t: float) -> np.ndarray:
    """Sample `frame` at x + t*flow(x) (flow at any resolution, resized to the frame)."""
    cv2 = _cv2()
    h, w = frame.shape[:2]
    if flow.shape[:2] != (h, w):
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(frame, gx + t * flow[..., 0], gy + t * flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def motion_smoothness_proxy(a: FrameAnalysis, win: Window) -> float:
    """VBench's motion-smoothness protocol with Farneback flow warping in place of AMT-S.

    Frames 2k and 2k+2 predict frame 2k+1 (each warped half-way along the flow towards the
    other, then averaged); score = (255 - mean abs diff to the real odd frames) / 255.
    """
    diffs = []
    for k in range(win.start, win.end - 2, 2):
        prev, nxt = a.frames[k].astype(np.float32), a.frames[k + 2].astype(np.float32)
        from_prev = _warp(prev, a.flow(k + 2, k), 0.5)  # mid(x) ~ prev(x - v/2), flow(next->prev) ~ -v
        from_next = _warp(nxt, a.flow(k, k + 2), 0.5)
        pred = 0.5 * (from_prev + from_next)
        diffs.append(np.abs(pred - a.frames[k + 1].astype(np.float32)).mean())
    return float((255.0 - np.mean(diffs)) / 255.0) if diffs else float("nan")


# ---- sfpp's own long-video diagnostics ---------------------------------------------------------
def clipped_highlights(a: FrameAnalysis, win: Window) -> float:
    return float(a.highlight_fraction()[win.start : win.end].mean())


def clipped_shadows(a: FrameAnalysis, win: Window) -> float:
    return float(a.shadow_fraction()[win.start : win.end].mean())


def mean_luma(a: FrameAnalysis, win: Window) -> float:
    return float(a.mean_luma()[win.start : win.end].mean())


def luma_slope(values: np.ndarray, fps: float) -> float:
    """Least-squares slope of a per-frame series, per second."""
    if len(values) < 2:
        return 0.0
    t = np.arange(len(values)) / fps
    return float(np.polyfit(t, values, 1)[0])


def luma_trend(a: FrameAnalysis, win: Window) -> float:
    return luma_slope(a.mean_luma()[win.start : win.end], a.fps)


def colour_drift(a: FrameAnalysis, win: Window, first: Window) -> float:
    """CIE76 Delta E between the window's mean Lab colour and the first window's."""
    lab = a.mean_lab()
    return float(np.linalg.norm(lab[win.start : win.end].mean(0) - lab[first.start : first.end].mean(0)))


def sharpness_ratio(a: FrameAnalysis, win: Window, first: Window) -> float:
    """Laplacian variance (fixed 256x256 grey) of the window relative to the first window."""
    lv = a.laplacian_variance()
    ref = lv[first.start : first.end].mean()
    return float(lv[win.start : win.end].mean() / ref) if ref > 1e-9 else float("nan")


def exposure_rating(clipped: float, luma_drift_ratio: float = 1.0, flicker: float = 0.0) -> float:
    """0-5 rating mirroring the exposure rubric: clipped-pixel fraction, minus drift and flicker levels.

    `luma_drift_ratio` is (mean luma + 10) of the window over that of the first window (2 = twice
    as bright); `flicker` is the window's frame-to-frame luma jitter (`luma_flicker`).
    """
    r = float(np.interp(clipped, _CLIP_ANCHORS, _RATING_ANCHORS))
    r -= min(DRIFT_MAX_LEVELS, abs(np.log2(max(luma_drift_ratio, 1e-6))) * DRIFT_LEVELS_PER_DOUBLING)
    r -= min(FLICKER_MAX_LEVELS, flicker / FLICKER_LUMA_PER_LEVEL)
    return max(0.0, r)


def luma_flicker(a: FrameAnalysis, win: Window) -> float:
    """Mean |d_t - mean(d)| over the window, d_t the change of mean luma between consecutive frames.

    A steady brightening (constant d_t) scores 0; frames alternating by +-x luma score about x.
    """
    lum = a.mean_luma()[win.start : win.end]
    if len(lum) < 3:
        return 0.0
    d = np.diff(lum)
    return float(np.abs(d - d.mean()).mean())


def exposure_stability_proxy(a: FrameAnalysis, win: Window, first: Window) -> float:
    """sfpp's offline stand-in for Visual Stability on 0-100 (NOT the paper's Gemini judge).

    Drift is the window's frame furthest in brightness from the video's first half second
    (mean luma + 10, as a ratio), so a steady brightening counts in full even in short windows.
    """
    clipped = clipped_highlights(a, win) + clipped_shadows(a, win)
    lum = a.mean_luma()
    ref = float(lum[first.start : first.start + max(1, int(round(a.fps / 2)))].mean()) + 10.0
    ratios = (lum[win.start : win.end] + 10.0) / ref
    ratio = float(ratios[np.argmax(np.abs(np.log2(np.maximum(ratios, 1e-6))))])
    return 20.0 * exposure_rating(clipped, ratio, luma_flicker(a, win))


def worst_quarter_mean(values) -> float:
    """Mean of the worst (lowest) quarter of window scores, at least one window.

    The per-video exposure proxy: exposure failure in any stretch of a video drags it down,
    while a failure "limited in duration" (rubric level 3) costs less in a long video.
    """
    v = np.sort(np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=np.float64))
    if not v.size:
        return float("nan")
    return float(v[: max(1, int(np.ceil(len(v) / 4)))].mean())


def flow_magnitude(a: FrameAnalysis, win: Window) -> float:
    """Mean over the window's consecutive pairs of the top-5 % flow magnitude (px/frame)."""
    v = a.pair_flow_top5()[_pairs(win)]
    return float(v.mean()) if v.size else float("nan")


def stagnation(a: FrameAnalysis, win: Window) -> float:
    """Fraction of the window's consecutive pairs that are frozen (nothing moves or changes)."""
    frozen = frozen_pairs(a)[_pairs(win)]
    return float(frozen.mean()) if frozen.size else float("nan")


def frozen_pairs(a: FrameAnalysis) -> np.ndarray:
    coarse = a.pair_coarse_mad()
    still = (coarse < FROZEN_MAD) | (coarse < FROZEN_GRAIN_RATIO * a.pair_grey_mad())
    return still & (a.pair_flow_top5() < FROZEN_FLOW_PX)


def stagnation_segments(a: FrameAnalysis, min_seconds: float = 0.5) -> list[dict]:
    """Runs of frozen pairs lasting at least `min_seconds` (and 2 pairs).

    `start_frame` is the first frame that repeats its predecessor: the frame where it freezes.
    """
    frozen = frozen_pairs(a)
    min_len = max(2, int(round(min_seconds * a.fps)))
    segs, i = [], 0
    while i < len(frozen):
        if frozen[i]:
            j = i
            while j < len(frozen) and frozen[j]:
                j += 1
            if j - i >= min_len:
                segs.append(
                    {"start_frame": i + 1, "end_frame": j + 1, "start_s": (i + 1) / a.fps, "end_s": (j + 1) / a.fps}
                )
            i = j
        else:
            i += 1
    return segs


def windowed_variance(x: np.ndarray, size: int = 8) -> np.ndarray:
    """Variance over a trailing window of `size` values (SF++ Fig. 5's flow-spike curve)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < size:
        return np.array([float(np.var(x))]) if len(x) else np.array([])
    return np.array([float(np.var(x[i - size : i])) for i in range(size, len(x) + 1)])

