"""The ToyWorld oracle: read frames back and score fidelity to the prompt over time.

For every frame (resized to ToyWorld's native 32x32) it estimates the background colour (the
palette colour nearest the median of the border pixels), finds pixels far from the background,
assigns each to its nearest object colour, and counts connected blobs per colour. A prompted
colour is *found* when at least `min_pixels` pixels of it form a blob.

Scores per frame:
* ``colours_found``: fraction of prompted object colours found;
* ``background_ok``: the detected background is the prompted one;
* ``fidelity``: mean of ``colours_found`` and ``background_ok``, minus a penalty for extra
  (unprompted) colours;
* ``brightness``: mean luma (0..255), to follow exposure drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfpp.toyworld.world import BACKGROUNDS, COLOURS, NATIVE, SceneSpec, parse_prompt

_OBJ_NAMES = list(COLOURS)
_OBJ_RGB = np.array([COLOURS[c] for c in _OBJ_NAMES], dtype=np.float32)
_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[c] for c in _BG_NAMES], dtype=np.float32)


@dataclass
class FrameReading:
    background: str
    colours: dict[str, int]  # colour -> pixels in its largest blob
    counts: dict[str, int]  # colour -> number of blobs
    brightness: float


def to_native(frame: np.ndarray) -> np.ndarray:
    """Area-resize an ``(H, W, 3)`` frame to 32x32 (H and W multiples of 32)."""
    h, w = frame.shape[:2]
    if (h, w) == (NATIVE, NATIVE):
        return frame.astype(np.float32)
    fy, fx = h // NATIVE, w // NATIVE
    return frame[: fy * NATIVE, : fx * NATIVE].astype(np.float32).reshape(NATIVE, fy, NATIVE, fx, 3).mean(axis=(1, 3))


def _components(mask: np.ndarray) -> list[int]:
    """Sizes of 4-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    sizes = []
    H, W = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, n = [(y0, x0)], 0
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            n += 1
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        sizes.append(n)
    return sizes


def read_frame(frame: np.ndarray, *, min_pixels: int = 6, bg_tol: float = 60.0) -> FrameReading:
    img = to_native(frame)  # (32, 32, 3) float
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])  # (128, 3)
    # Each background is a base tone, optionally striped with a second tone (base +/- 40): pick the
    # palette background that explains most border pixels with either tone.
    alt = _BG_RGB + np.where(_BG_RGB.mean(-1, keepdims=True) > 128, -40.0, 40.0)  # (n_bg, 3)
    d_base = np.sqrt(((border[:, None] - _BG_RGB[None]) ** 2).sum(-1))  # (128, n_bg)
    d_alt = np.sqrt(((border[:, None] - alt[None]) ** 2).sum(-1))
    explained = (np.minimum(d_base, d_alt) < 35.0).mean(0) - 1e-3 * d_base.mean(0)
    k = int(np.argmax(explained))
    bg, bg_rgb, alt_rgb = _BG_NAMES[k], _BG_RGB[k], alt[k]
    # A pixel belongs to an object when it is far from both background tones.
    d_bg = np.sqrt(((img - bg_rgb) ** 2).sum(-1))
    d_alt = np.sqrt(((img - alt_rgb) ** 2).sum(-1))
    fg = np.minimum(d_bg, d_alt) > bg_tol
    nearest = np.argmin(((img[..., None, :] - _OBJ_RGB) ** 2).sum(-1), axis=-1)  # (32, 32)
    near_dist = np.sqrt(((img - _OBJ_RGB[nearest]) ** 2).sum(-1))
    colours, counts = {}, {}
    for k, name in enumerate(_OBJ_NAMES):
        m = fg & (nearest == k) & (near_dist < 90.0)
        if m.sum() < min_pixels:
            continue
        sizes = [s for s in _components(m) if s >= min_pixels]
        if sizes:
            colours[name], counts[name] = max(sizes), len(sizes)
    luma = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    return FrameReading(bg, colours, counts, float(luma.mean()))


def frame_scores(frame: np.ndarray, scene: SceneSpec) -> dict[str, float]:
    r = read_frame(frame)
    wanted = {o.colour for o in scene.objects}
    found = len(wanted & set(r.colours)) / max(1, len(wanted))
    extra = len(set(r.colours) - wanted - ({"white"} if scene.background == "white" else set()))
    bg_ok = float(r.background == scene.background)
    fidelity = max(0.0, 0.5 * found + 0.5 * bg_ok - 0.1 * extra)
    return {"colours_found": found, "all_colours": float(found == 1.0), "background_ok": bg_ok,
            "extra_colours": float(extra), "fidelity": fidelity, "brightness": r.brightness,
            "objects": float(sum(r.counts.values()))}


# ---------------------------------------------------------------------- oracle v2: shapes, motion, stripes, noise, bands
SHAPE_SHAPES = ("circle", "square", "triangle")
BAND_EXTENT = 22  # px of 32: no object spans this far (radius <= 7), a band does
FROZEN_SPEED = 0.2  # px/frame; the world's objects move at 0.4-1.2 px/frame
SPEED_SPAN = 4  # frames over which an object's displacement is measured
NOISE_CLEAN = 8.0  # grey levels: mean deviation of background pixels from their tone on a clean frame
SHAPE_MIN_VISIBLE = 0.6  # an object is classified only when this much of its template is visible
SHAPE_MIN_IOU = 0.7  # fit below this: the object is a blob, whatever shape fits best
STRIPE_PERIOD = 8.0  # px: 4-px stripes
SHARP_EDGE = 1.3  # partly covered edge pixels per unit of perimeter; the world's anti-aliased shapes: <= 1.13


@dataclass
class ObjectReading:
    """One prompted object in one frame (native 32x32 pixels)."""

    colour: str
    found: bool
    x: float = float("nan")  # centroid of its largest blob
    y: float = float("nan")
    area: int = 0
    shape: str | None = None  # best-fitting shape, None when too occluded to tell
    iou: float = 0.0  # fit of the best shape template (visible pixels only), 1 = exact
    band: bool = False  # its blob spans most of the frame (a band or smear, not an object)
    edge: float = float("nan")  # partly covered pixels per unit perimeter (blur: > SHARP_EDGE)


@dataclass
class FrameReadingV2:
    background: str
    striped: bool
    stripe_phase: float | None  # px, in [0, 8): where the stripes are (their pan is its change over time)
    objects: dict[str, ObjectReading]
    extra_colours: list[str]
    bands: list[str]  # colours (prompted or not) forming a band
    noise: float  # mean |pixel - its background tone| over background pixels (grey levels)
    brightness: float


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected component labels (0 = background) of a boolean mask, and their count."""
    lab = np.zeros(mask.shape, dtype=np.int32)
    n = 0
    H, W = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if lab[y0, x0]:
            continue
        n += 1
        stack = [(y0, x0)]
        lab[y0, x0] = n
        while stack:
            y, x = stack.pop()
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and not lab[yy, xx]:
                    lab[yy, xx] = n
                    stack.append((yy, xx))
    return lab, n


_BANK: dict = {}
_RADII = np.arange(3.0, 8.01, 0.25)
_SUB = np.arange(4) / 4.0  # sub-pixel offsets of a template centre


def _bank(shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Soft templates (anti-aliased coverage, as the world renders) of `shape`, and their squares.

    Row ``ri * 16 + sy * 4 + sx`` is the shape of radius _RADII[ri] centred at (15.5 + _SUB[sx],
    15.5 + _SUB[sy]) of a 31x31 patch, flattened; a triangle is shifted up by 0.2 r so that its area
    centroid is the centre.
    """
    t = _BANK.get(shape)
    if t is None:
        from sfpp.toyworld.world import _mask

        t = np.zeros((len(_RADII), 4, 4, 31, 31), np.float32)
        for ri, r in enumerate(_RADII):
            dy = -0.2 * r if shape == "triangle" else 0.0
            for sy, oy in enumerate(_SUB):
                for sx, ox in enumerate(_SUB):
                    t[ri, sy, sx] = _mask(shape, 15.5 + ox, 15.5 + oy + dy, float(r), 32)[:31, :31]
        flat = t.reshape(len(_RADII) * 16, 31 * 31)
        _BANK[shape] = t = (flat, flat * flat)
    return t


def _area_radius(shape: str, area: float) -> float:
    """Radius whose rendered shape has this area (world geometry: square side 1.7r, triangle 2r x 1.8r)."""
    k = {"circle": np.pi, "square": 1.7 ** 2, "triangle": 1.8}[shape]
    return float(np.sqrt(max(area, 1.0) / k))


def classify_shape(alpha: np.ndarray, hidden: np.ndarray) -> tuple[str | None, float, dict]:
    """Best shape for an object's coverage map `alpha` (32x32, 0..1) given pixels hidden by other objects.

    Soft templates of each shape (radius and sub-pixel position searched around the coverage's own
    size and centroid) are compared by squared error on the visible pixels; the fit is reported as
    1 - error / (visible object mass), 1 = perfect. Returns (best shape, its fit, fit per shape), or
    (None, 0, {}) when less than `SHAPE_MIN_VISIBLE` of the best template is visible.
    """
    area = float(alpha.sum())
    if area < 3:
        return None, 0.0, {}
    ys, xs = np.mgrid[:32, :32]
    cx, cy = float((alpha * (xs + 0.5)).sum() / area), float((alpha * (ys + 0.5)).sum() / area)
    valid = (~hidden).astype(np.float32)
    # the coverage and validity maps as 31x31 patches around the 9 integer placements near the centroid
    A = np.zeros((9, 31, 31), np.float32)
    V = np.zeros((9, 31, 31), np.float32)
    k = 0
    for iy in range(int(np.floor(cy - 0.5)) - 1, int(np.floor(cy - 0.5)) + 2):
        for ix in range(int(np.floor(cx - 0.5)) - 1, int(np.floor(cx - 0.5)) + 2):
            y0, x0 = iy - 15, ix - 15  # patch pixel (15, 15) is frame pixel (iy, ix)
            ys_, xs_ = slice(max(0, y0), min(32, y0 + 31)), slice(max(0, x0), min(32, x0 + 31))
            py, px = slice(ys_.start - y0, ys_.stop - y0), slice(xs_.start - x0, xs_.stop - x0)
            A[k, py, px] = alpha[ys_, xs_]
            V[k, py, px] = valid[ys_, xs_]
            k += 1
    A, V = A.reshape(9, -1), V.reshape(9, -1)
    VA, VA2 = V * A, (V * A * A).sum(1, keepdims=True)  # (9, 961), (9, 1)
    fits, vis = {}, {}
    for shape in SHAPE_SHAPES:
        T, T2 = _bank(shape)
        r0 = _area_radius(shape, area)
        ri = np.nonzero(np.abs(_RADII - r0) <= 1.25)[0]
        if not len(ri):
            ri = np.array([int(np.argmin(np.abs(_RADII - r0)))])
        rows = slice(int(ri[0]) * 16, (int(ri[-1]) + 1) * 16)  # contiguous radii: views, no copies
        t, t2 = T[rows], T2[rows]  # (n, 961)
        # sum v (t - a)^2 = sum v t^2 - 2 sum v t a + sum v a^2, for every placement x template
        # einsum without BLAS: a threaded BLAS call this small is many times slower on a busy machine
        err = (np.einsum("kp,np->kn", V, t2, optimize=False) - 2 * np.einsum("kp,np->kn", VA, t, optimize=False)
               + VA2)  # (9, n)
        j = np.unravel_index(int(np.argmin(err)), err.shape)
        fits[shape] = 1.0 - float(err[j]) / max(area, 1e-6)
        vis[shape] = float((t[j[1]] * V[j[0]]).sum() / max(t[j[1]].sum(), 1e-6))
    shape = max(fits, key=fits.get)
    if vis[shape] < SHAPE_MIN_VISIBLE:
        return None, 0.0, fits
    return shape, float(fits[shape]), fits


def _stripes(img: np.ndarray, bg_mask: np.ndarray) -> tuple[float, float]:
    """Amplitude (grey levels) and phase (px) of a period-8 column pattern in the background pixels."""
    luma = img.mean(-1)
    cols = []
    xs = []
    for x in range(img.shape[1]):
        m = bg_mask[:, x]
        if m.sum() >= 4:
            cols.append(float(luma[m, x].mean()))
            xs.append(x)
    if len(xs) < 16:
        return 0.0, 0.0
    xs, cols = np.array(xs, np.float64), np.array(cols, np.float64)
    cols -= cols.mean()
    w = 2 * np.pi / STRIPE_PERIOD
    a, b = (cols * np.cos(w * xs)).mean() * 2, (cols * np.sin(w * xs)).mean() * 2
    return float(np.hypot(a, b)), float((np.arctan2(b, a) / w) % STRIPE_PERIOD)


def read_frame_v2(frame: np.ndarray, scene: SceneSpec, *, min_pixels: int = 6, bg_tol: float = 60.0) -> FrameReadingV2:
    """Per prompted object: found, centroid, area, shape; plus background, stripes, noise and bands."""
    img = to_native(frame)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    alt = _BG_RGB + np.where(_BG_RGB.mean(-1, keepdims=True) > 128, -40.0, 40.0)
    d_base = np.sqrt(((border[:, None] - _BG_RGB[None]) ** 2).sum(-1))
    d_alt = np.sqrt(((border[:, None] - alt[None]) ** 2).sum(-1))
    explained = (np.minimum(d_base, d_alt) < 35.0).mean(0) - 1e-3 * d_base.mean(0)
    k = int(np.argmax(explained))
    bg, bg_rgb, alt_rgb = _BG_NAMES[k], _BG_RGB[k], alt[k]
    d_bg = np.sqrt(((img - bg_rgb) ** 2).sum(-1))
    d_al = np.sqrt(((img - alt_rgb) ** 2).sum(-1))
    fg = np.minimum(d_bg, d_al) > bg_tol
    nearest = np.argmin(((img[..., None, :] - _OBJ_RGB) ** 2).sum(-1), axis=-1)
    near_dist = np.sqrt(((img - _OBJ_RGB[nearest]) ** 2).sum(-1))
    # background pixels: not foreground, and not next to it (anti-aliased edges)
    grown = fg.copy()
    grown[1:] |= fg[:-1]
    grown[:-1] |= fg[1:]
    grown[:, 1:] |= fg[:, :-1]
    grown[:, :-1] |= fg[:, 1:]
    bg_px = ~grown
    amp, phase = _stripes(img, bg_px)
    striped = amp > 12.0  # the world's stripes are +/-40 grey levels (amplitude ~25 after averaging)
    dev = np.minimum(np.abs(img - bg_rgb).mean(-1), np.abs(img - alt_rgb).mean(-1) if striped else np.inf)
    noise = float(dev[bg_px].mean()) if bg_px.any() else float("nan")
    masks, blobs = {}, {}
    for ci, name in enumerate(_OBJ_NAMES):
        m = fg & (nearest == ci) & (near_dist < 90.0)
        if m.sum() < min_pixels:
            continue
        lab, n = _label(m)
        sizes = np.bincount(lab.ravel())[1:]
        big = int(np.argmax(sizes)) + 1
        if sizes[big - 1] >= min_pixels:
            blobs[name] = lab == big
            masks[name] = m
    wanted = [o.colour for o in scene.objects]
    bands = []
    for name, blob in blobs.items():
        ys, xs = np.nonzero(blob)
        if xs.max() - xs.min() + 1 >= BAND_EXTENT or ys.max() - ys.min() + 1 >= BAND_EXTENT:
            bands.append(name)
    objects = {}
    for colour in wanted:
        blob = blobs.get(colour)
        if blob is None:
            objects[colour] = ObjectReading(colour, False)
            continue
        ys, xs = np.nonzero(blob)
        cx, cy = float(xs.mean() + 0.5), float(ys.mean() + 0.5)
        others = np.zeros_like(blob)
        for name, m in masks.items():
            if name != colour:
                others |= m
        # pixels hidden by other objects: their own pixels, grown by one (their anti-aliased rims)
        o2 = others.copy()
        o2[1:] |= others[:-1]
        o2[:-1] |= others[1:]
        o2[:, 1:] |= others[:, :-1]
        o2[:, :-1] |= others[:, 1:]
        band = colour in bands
        # coverage of this object's colour over the background tone, near its blob (its anti-aliased rim included)
        near = blob.copy()
        for _ in range(2):
            g = near.copy()
            g[1:] |= near[:-1]
            g[:-1] |= near[1:]
            g[:, 1:] |= near[:, :-1]
            g[:, :-1] |= near[:, 1:]
            near = g
        col = _OBJ_RGB[_OBJ_NAMES.index(colour)]
        tone = bg_rgb if not striped else np.where((d_bg <= d_al)[..., None], bg_rgb, alt_rgb)
        diff = col - tone
        alpha = (((img - tone) * diff).sum(-1) / np.maximum((diff * diff).sum(-1), 1.0)).clip(0, 1)
        alpha = np.where(near & ~(o2 & ~blob), alpha, 0.0).astype(np.float32)
        shape, iou, _ = (None, 0.0, {}) if band else classify_shape(alpha, o2 & ~blob)
        mass = float(alpha.sum())
        edge = float(((alpha > 0.15) & (alpha < 0.85)).sum() / (2 * np.pi * np.sqrt(mass / np.pi))) \
            if mass >= 10 and not (o2 & near).any() else float("nan")  # only unoccluded objects
        objects[colour] = ObjectReading(colour, True, cx, cy, int(blob.sum()), shape, iou, band, edge)
    extra = sorted(set(blobs) - set(wanted) - ({"white"} if scene.background == "white" else set()))
    luma = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    return FrameReadingV2(bg, bool(striped), phase if striped else None, objects, extra, bands, noise,
                          float(luma.mean()))


def _speeds(xy: np.ndarray, span: int = SPEED_SPAN) -> np.ndarray:
    """Per frame, |displacement over `span` frames| / span (px/frame); NaN where the object is missing."""
    out = np.full(len(xy), np.nan)
    for t in range(len(xy)):
        a, b = max(0, t - span // 2), min(len(xy) - 1, t - span // 2 + span)
        if b - a >= 2 and np.isfinite(xy[a]).all() and np.isfinite(xy[b]).all():
            out[t] = float(np.linalg.norm(xy[b] - xy[a]) / (b - a))
    return out


def _bounces(xy: np.ndarray, size: float = NATIVE, near: float = 10.0, lag: int = 3) -> int:
    """Reversals of x or y velocity (>= `FROZEN_SPEED` px/frame either side, over `lag` frames) near a wall."""
    n = 0
    for axis in (0, 1):
        p = xy[:, axis]
        t = lag
        while t < len(p) - lag:
            a, b, c = p[t - lag], p[t], p[t + lag]
            if np.isfinite([a, b, c]).all() and (b < near or b > size - near):
                v0, v1 = (b - a) / lag, (c - b) / lag
                if abs(v0) >= FROZEN_SPEED and abs(v1) >= FROZEN_SPEED and np.sign(v0) == -np.sign(v1):
                    n += 1
                    t += lag  # one bounce, not one per frame around it
                    continue
            t += 1
    return n


def score_video(frames: np.ndarray, prompt: str | SceneSpec, *, fps: float = 16.0, window_s: float = 2.0) -> dict:
    """Oracle scores of a video ``(F, H, W, 3)``: per frame, per window of `window_s` seconds, overall.

    v1 scores (colours and background): ``colours_found``, ``all_colours`` (object persistence),
    ``background_ok``, ``extra_colours``, ``fidelity``, ``brightness``, ``objects``.
    v2 scores (oracle v2, per frame then averaged): ``shape_ok`` (prompted objects found with their
    prompted shape, over those whose shape can be told), ``shapes_all`` (every prompted object found
    and, where its shape can be told, the right one), ``shape_known`` (share of found objects whose
    shape could be told), ``band`` (a band or smear is present), ``sharp`` (no unoccluded object
    has blurred edges, `SHARP_EDGE`), ``noise`` (grey levels),
    ``clean`` (noise below `NOISE_CLEAN`), ``stripes_ok`` (stripes present exactly when prompted).
    Motion (per window): ``moving`` (share of prompted objects moving at >= `FROZEN_SPEED` px/frame,
    of those found), ``all_moving`` (every prompted object moving), ``speed`` (median px/frame),
    ``frozen`` (share of object-frames below `FROZEN_SPEED`), ``bounces``, ``stripe_pan`` (px/frame).
    """
    scene = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    wanted = [o.colour for o in scene.objects]
    shapes = {o.colour: o.shape for o in scene.objects}
    per = []
    readings = []
    for f in frames:
        base = frame_scores(f, scene)
        r = read_frame_v2(f, scene)
        readings.append(r)
        told = [o for o in r.objects.values() if o.found and o.shape is not None and not o.band]
        right = [o for o in told if o.shape == shapes[o.colour] and o.iou >= SHAPE_MIN_IOU]
        found = [o for o in r.objects.values() if o.found]
        shapes_all = all(o.found and not o.band and (o.shape is None or (o.shape == shapes[o.colour]
                                                                           and o.iou >= SHAPE_MIN_IOU))
                         for o in r.objects.values())
        per.append({**base,
                    "shape_ok": len(right) / len(told) if told else float("nan"),
                    "shapes_all": float(shapes_all),
                    "shape_known": len(told) / len(found) if found else float("nan"),
                    "band": float(bool(r.bands)),
                    "sharp": (float(max(edges) <= SHARP_EDGE)
                              if (edges := [o.edge for o in found if np.isfinite(o.edge)]) else float("nan")),
                    "noise": r.noise,
                    "clean": float(r.noise < NOISE_CLEAN) if np.isfinite(r.noise) else float("nan"),
                    "stripes_ok": float(r.striped == scene.striped)})
    n = len(readings)
    xy = {c: np.array([[r.objects[c].x, r.objects[c].y] if r.objects[c].found and not r.objects[c].band
                       else [np.nan, np.nan] for r in readings]) for c in wanted}
    speed = {c: _speeds(xy[c]) for c in wanted}
    phases = np.array([r.stripe_phase if r.stripe_phase is not None else np.nan for r in readings])
    keys = list(per[0]) if per else []
    win = max(1, int(round(window_s * fps)))

    def motion(a: int, b: int) -> dict:
        sp = {c: speed[c][a:b] for c in wanted}
        med = {c: float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan") for c, v in sp.items()}
        known = [c for c in wanted if np.isfinite(med[c])]
        moving = [c for c in known if med[c] >= FROZEN_SPEED]
        vals = np.concatenate([v[np.isfinite(v)] for v in sp.values()]) if sp else np.array([])
        pan = np.diff(np.unwrap(phases[a:b] * 2 * np.pi / STRIPE_PERIOD)) * STRIPE_PERIOD / (2 * np.pi)
        pan = pan[np.isfinite(pan)]
        return {"moving": len(moving) / len(known) if known else float("nan"),
                "all_moving": float(len(moving) == len(wanted)),
                "speed": float(np.median(vals)) if vals.size else float("nan"),
                "frozen": float((vals < FROZEN_SPEED).mean()) if vals.size else float("nan"),
                "bounces": float(sum(_bounces(xy[c][a:b]) for c in wanted)),
                "stripe_pan": float(np.mean(pan)) if pan.size else float("nan")}

    def mean(vals) -> float:
        v = np.array(vals, dtype=np.float64)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    windows = []
    for s in range(0, n, win):
        chunk = per[s : s + win]
        windows.append({"start_s": s / fps, **{k: mean([p[k] for p in chunk]) for k in keys}, **motion(s, s + win)})
    overall = {k: mean([p[k] for p in per]) for k in keys}
    full = [w for w in windows if w is not windows[-1] or n % win == 0 or len(windows) == 1]
    overall.update({
        "moving": mean([w["moving"] for w in full]),
        "all_moving": mean([w["all_moving"] for w in full]),
        "speed": mean([w["speed"] for w in full]),
        "frozen": mean([w["frozen"] for w in full]),
        "bounces": float(sum(w["bounces"] for w in windows)),
        "stripe_pan": mean([w["stripe_pan"] for w in full]),
    })
    return {"prompt": scene.prompt, "frames": n, "overall": overall, "windows": windows}


def score_paths(paths, *, prompt: str | None = None, window_s: float = 2.0) -> list[dict]:
    """Oracle scores of every video under `paths` (MP4 files, or folders from 'sfpp generate' / 'sfpp rollout').

    Videos are found with `sfpp.videos.find_videos` (a folder's own MP4s plus its direct
    sub-folders'); each result carries ``name`` (unique over all `paths`: the video's name,
    prefixed with its folder's name where two paths give the same name), ``video`` (the path)
    and ``prompt``. A sidecar's prompt wins; `prompt` is for videos without one.
    Raises `SfppError` (one line) for a missing path, a video without a (ToyWorld) prompt, or
    one that cannot be decoded.
    """
    from pathlib import Path

    from sfpp.errors import SfppError
    from sfpp.videos import find_videos, read_sidecar, sidecar_prompt

    if not paths:
        raise SfppError("give at least one MP4 file or folder of MP4s")
    found = [(Path(p), v) for p in paths for v in find_videos(p)]
    names = [v.name for _, v in found]
    labels = [f"{root.resolve().name}/{v.name}" if names.count(v.name) > 1 and root.is_dir() else v.name
              for root, v in found]
    if len(set(labels)) != len(labels):
        labels = [str(v.path) for _, v in found]
    results = []
    for (root, v), label in zip(found, labels):
        side = read_sidecar(v.sidecar)
        text = sidecar_prompt(side) or prompt
        if text is None:
            why = side.get("_sidecar_error") or (f"{v.sidecar.name} has no 'prompt'" if v.sidecar else "it has no sidecar")
            raise SfppError(f"{v.path} has no prompt ({why}); pass --prompt")
        scene = parse_prompt(text)
        if not scene.objects:
            raise SfppError(f"{v.path}: prompt {text!r} names no ToyWorld object (a colour and circle, square or "
                            "triangle); the oracle scores ToyWorld prompts, e.g. 'a red circle on a black background'")
        frames, fps = _read(v.path, side.get("fps"))
        if frames.shape[1] < NATIVE or frames.shape[2] < NATIVE:
            raise SfppError(f"{v.path} is {frames.shape[2]}x{frames.shape[1]}; the oracle needs frames of at least "
                            f"{NATIVE}x{NATIVE} (ToyWorld videos)")
        s = score_video(frames, scene, fps=fps, window_s=window_s)
        results.append({"name": label, "video": str(v.path), **s})
    return results


def _read(path, fallback_fps) -> tuple[np.ndarray, float]:
    from sfpp.errors import SfppError
    from sfpp.video import read_mp4

    try:
        frames, fps = read_mp4(path)
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as e:
        lines = str(e).strip().splitlines()
        raise SfppError(f"cannot decode {path}: {(lines[-1] if lines else type(e).__name__)[:200]}; "
                        "re-generate or remove the file") from None
    if len(frames) == 0:
        raise SfppError(f"cannot decode {path}: no video frames; re-generate or remove the file")
    if not np.isfinite(fps) or fps <= 0:
        if not fallback_fps:
            raise SfppError(f"{path} has no frame rate; add 'fps' to its JSON sidecar")
        fps = float(fallback_fps)
    return frames, float(fps)
