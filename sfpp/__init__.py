"""sfpp: Self-Forcing++ toolkit for stable, minute-long autoregressive video generation.

Python API (the CLI is a thin layer over it)::

    import sfpp
    result = sfpp.generate("a red circle and a blue square bouncing on a black background", seconds=10,
                           out="shapes.mp4")
    folders = sfpp.rollout_batch(["a red circle on a black background"], "runs/circle", seconds=60)
    with sfpp.stream("a red circle moving on a black background", model="toy") as s:  # watch it as it is made
        for frame, t in s:
            ...  # (H, W, 3) uint8; s.set_prompt("...") switches at the next chunk

The names below are imported on first use, so ``import sfpp`` (and ``sfpp --help``) stays fast.
"""

from __future__ import annotations

from sfpp._version import __version__

_LAZY = {
    "generate": "sfpp.generation",
    "stream": "sfpp.stream",
    "rollout_batch": "sfpp.batch",
    "VideoSpec": "sfpp.spec",
    "RolloutConfig": "sfpp.rollout_config",
    "SfppError": "sfpp.errors",
    "SfppWarning": "sfpp.errors",
}

__all__ = ["generate", "stream", "rollout_batch", "VideoSpec", "RolloutConfig", "SfppError", "SfppWarning",
           "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sfpp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
