"""sfpp: Self-Forcing++ toolkit for stable, minute-long autoregressive video generation.

Python API (the CLI is a thin layer over it)::

    import sfpp
    result = sfpp.generate("a red kite over a beach", seconds=10, out="kite.mp4")
    folders = sfpp.rollout_batch(["a red kite"], "runs/kite", seconds=60)
"""

__version__ = "0.1.0"

from sfpp.errors import SfppError  # noqa: E402
from sfpp.spec import VideoSpec  # noqa: E402
from sfpp.generation import generate  # noqa: E402
from sfpp.batch import rollout_batch  # noqa: E402

__all__ = ["generate", "rollout_batch", "VideoSpec", "SfppError", "__version__"]
