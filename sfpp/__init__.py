"""sfpp: Self-Forcing++ toolkit for stable, minute-long autoregressive video generation.

Python API (the CLI is a thin layer over it)::

    import sfpp
    result = sfpp.generate("a red kite over a beach", seconds=10, model="debug", out="kite.mp4")
"""

__version__ = "0.1.0"

__all__ = ["generate", "VideoSpec", "SfppError", "__version__"]


def __getattr__(name):  # lazy: `import sfpp` stays cheap, torch loads on first use
    if name == "generate":
        from sfpp.generate import generate

        return generate
    if name == "VideoSpec":
        from sfpp.spec import VideoSpec

        return VideoSpec
    if name == "SfppError":
        from sfpp.errors import SfppError

        return SfppError
    if name == "rollout_batch":
        from sfpp.batch import rollout_batch

        return rollout_batch
    raise AttributeError(name)
