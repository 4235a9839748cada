"""ToyWorld: a procedural world of coloured shapes moving over coloured or striped backgrounds.

Small (32x32 native, 16 fps), cheap to render on a CPU, and rich enough that a short-horizon
autoregressive student drifts: several objects with their own colours, shapes and velocities,
bouncing off the walls, occluding each other, over a background that may be striped and slowly
panning. Every clip comes with the prompt that describes it, e.g.
"a red circle and a blue square bouncing on a black background".

Frames are ``(F, H, W, 3)`` uint8.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

NATIVE = 32  # native resolution (pixels)
FPS = 16

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "gray": (120, 120, 120),
    "navy": (20, 25, 80),
    "white": (240, 240, 240),
    "brown": (110, 70, 35),
}
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str


@dataclass(frozen=True)
class SceneSpec:
    """What a prompt asks for."""

    objects: tuple[ObjectSpec, ...]
    background: str
    striped: bool = False

    @property
    def prompt(self) -> str:
        names = [f"a {o.colour} {o.shape}" for o in self.objects]
        things = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        verb = "bouncing" if len(names) > 1 else "moving"
        bg = f"a striped {self.background} background" if self.striped else f"a {self.background} background"
        return f"{things} {verb} on {bg}"


def parse_prompt(prompt: str) -> SceneSpec:
    """Read a ToyWorld prompt back into a `SceneSpec` (unknown words are ignored)."""
    words = prompt.lower().replace(",", " ").split()
    objects, bg, striped = [], None, False
    for i, w in enumerate(words):
        if w == "background" and i > 0:
            j = i - 1
            if words[j] in BACKGROUNDS:
                bg = words[j]
                striped = j > 0 and words[j - 1] == "striped"
        if w in SHAPES and i > 0 and words[i - 1] in COLOURS:
            objects.append(ObjectSpec(words[i - 1], w))
    return SceneSpec(tuple(objects), bg or "black", striped)


@dataclass(frozen=True)
class Lighting:
    """A slow global lighting cycle (issue #19's exposure world): every pixel of frame ``f`` is multiplied by

        gain(t) = 1 + amplitude * sin(2 pi t / period_s + phase),   t = f / FPS seconds,

    with a random phase per clip. The prompt says nothing about the light, so a long rollout has to carry the
    exposure in its context, and an error in it can accumulate: the exposure drift the paper shows for Wan,
    which the unlit world (whose prompt pins every colour) cannot show. ``amplitude = 0``: the unlit world.
    """

    amplitude: float = 0.0
    period_s: float = 12.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.amplitude < 1.0:
            raise ValueError(f"lighting amplitude must be in [0, 1), got {self.amplitude}")
        if not self.period_s > 0:
            raise ValueError(f"lighting period must be > 0 s, got {self.period_s}")

    def gain(self, t_s: np.ndarray | float, phase: float) -> np.ndarray:
        return 1.0 + self.amplitude * np.sin(2 * math.pi * np.asarray(t_s, dtype=np.float64) / self.period_s + phase)


@dataclass
class _Obj:
    spec: ObjectSpec
    size: float
    x: float
    y: float
    vx: float
    vy: float


@dataclass
class Clip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    scene: SceneSpec
    positions: np.ndarray = field(default=None)  # (F, n_objects, 2) centre x, y in pixels
    gain: np.ndarray | None = None  # (F,) the lighting gain of each frame (None: unlit)

    @property
    def prompt(self) -> str:
        return self.scene.prompt


def random_scene(rng: np.random.Generator, *, max_objects: int = 3, striped_p: float = 0.25,
                 exclude: set[str] | None = None) -> SceneSpec:
    """A random scene; `exclude` holds prompts not to produce (held-out test combinations)."""
    for _ in range(1000):
        n = int(rng.integers(1, max_objects + 1))
        bg = str(rng.choice(list(BACKGROUNDS)))
        palette = [c for c in COLOURS if not (c == "white" and bg == "white")]
        cols = rng.choice(palette, size=n, replace=False)
        objs = tuple(ObjectSpec(str(c), str(rng.choice(SHAPES))) for c in cols)
        scene = SceneSpec(objs, bg, bool(rng.random() < striped_p))
        if not exclude or scene.prompt not in exclude:
            return scene
    raise RuntimeError("could not draw a scene outside the excluded set")


def _background(scene: SceneSpec, t: float, size: int, pan: float) -> np.ndarray:
    base = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if scene.striped:
        xs = np.arange(size, dtype=np.float32)[None, :] + pan * t
        stripe = (np.floor(xs / 4) % 2 == 0).astype(np.float32)  # 4-px stripes, panning sideways
        shade = np.where(base.mean() > 128, -40.0, 40.0)
        img += stripe[..., None] * shade
    return img


def _mask(shape: str, cx: float, cy: float, r: float, size: int, ss: int = 4) -> np.ndarray:
    """Anti-aliased coverage of a shape, by supersampling."""
    g = (np.arange(size * ss, dtype=np.float32) + 0.5) / ss
    X, Y = np.meshgrid(g, g)
    if shape == "circle":
        m = (X - cx) ** 2 + (Y - cy) ** 2 <= r * r
    elif shape == "square":
        m = (np.abs(X - cx) <= r * 0.85) & (np.abs(Y - cy) <= r * 0.85)
    else:  # triangle pointing up
        top, bottom = cy - r, cy + r * 0.8
        half = (Y - top) / (bottom - top) * r
        m = (Y >= top) & (Y <= bottom) & (np.abs(X - cx) <= half)
    return m.reshape(size, ss, size, ss).mean(axis=(1, 3))


def render_clip(scene: SceneSpec, num_frames: int, rng: np.random.Generator, *, size: int = NATIVE,
                speed: tuple[float, float] = (0.4, 1.2), lighting: Lighting | None = None) -> Clip:
    """Render `num_frames` frames of `scene` with random start positions and velocities.

    With a `lighting` of non-zero amplitude the frames are lit by its cycle from a random phase (drawn after
    everything else, so the unlit world's clips are the same draws as before lighting existed).
    """
    objs = []
    for spec in scene.objects:
        r = float(rng.uniform(4.5, 7.0))
        ang = float(rng.uniform(0, 2 * math.pi))
        v = float(rng.uniform(*speed))
        objs.append(_Obj(spec, r, float(rng.uniform(r, size - r)), float(rng.uniform(r, size - r)),
                         v * math.cos(ang), v * math.sin(ang)))
    pan = float(rng.uniform(0.2, 0.5)) * (1 if rng.random() < 0.5 else -1)
    gain = None
    if lighting is not None and lighting.amplitude > 0:
        gain = lighting.gain(np.arange(num_frames) / FPS, float(rng.uniform(0, 2 * math.pi))).astype(np.float32)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    pos = np.empty((num_frames, len(objs), 2), dtype=np.float32)
    for f in range(num_frames):
        img = _background(scene, f, size, pan)
        for k, o in enumerate(objs):
            m = _mask(o.spec.shape, o.x, o.y, o.size, size)[..., None]
            img = img * (1 - m) + m * np.array(COLOURS[o.spec.colour], dtype=np.float32)
            pos[f, k] = (o.x, o.y)
        if gain is not None:
            img = img * gain[f]
        frames[f] = np.clip(img, 0, 255).round().astype(np.uint8)
        for o in objs:  # move and bounce off the walls
            o.x += o.vx
            o.y += o.vy
            if o.x < o.size or o.x > size - o.size:
                o.vx = -o.vx
                o.x = min(max(o.x, o.size), size - o.size)
            if o.y < o.size or o.y > size - o.size:
                o.vy = -o.vy
                o.y = min(max(o.y, o.size), size - o.size)
    return Clip(frames, scene, pos, gain)


def held_out_prompts(n: int = 20, seed: int = 1234) -> list[str]:
    """Scenes never used for training (fixed): the generalisation test set."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        p = random_scene(rng, max_objects=2).prompt
        if p not in out:
            out.append(p)
    return out


def training_prompts(n: int, seed: int = 4321) -> list[str]:
    """`n` fixed prompts of the training distribution (never the held-out ones)."""
    rng = np.random.default_rng(seed)
    held = set(held_out_prompts())
    out: list[str] = []
    while len(out) < n:
        p = random_scene(rng, max_objects=2, exclude=held).prompt
        if p not in out:
            out.append(p)
    return out


def prompt_warning(prompt: str) -> str | None:
    """One line when `prompt` names no object ToyWorld can draw (colour + shape), else None.

    The toy model reads only ToyWorld's words; anything else reaches it as an unknown token,
    so a prompt such as "a plane over snowy mountains" gives an arbitrary picture.
    """
    words = re.findall(r"[a-z]+", prompt.lower())
    if parse_prompt(prompt).objects:
        return None
    known = set(toy_vocabulary())
    unknown = [w for w in dict.fromkeys(words) if w not in known]
    said = f" ({', '.join(repr(w) for w in unknown[:6])}{' ...' if len(unknown) > 6 else ''} unknown)" if unknown else ""
    return (f"the toy model's world knows nothing in {prompt.strip()!r}{said}: name a colour ({', '.join(COLOURS)}) "
            f"and a shape ({', '.join(SHAPES)}), optionally on a [striped] {'/'.join(BACKGROUNDS)} background, "
            "e.g. 'a red circle and a blue square bouncing on a black background'")


def toy_vocabulary() -> list[str]:
    """Every word a ToyWorld prompt can contain (for the toy tokenizer)."""
    words = {"a", "and", "on", "background", "bouncing", "moving", "striped"}
    words |= set(COLOURS) | set(BACKGROUNDS) | set(SHAPES)
    return sorted(words)
