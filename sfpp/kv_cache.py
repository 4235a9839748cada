"""`RollingKVCache`: per-layer self-attention K/V over a rolling window of latent frames.

The caller creates the cache and passes it to every forward of the causal student; the
student never owns one. Window, sink frames, eviction and the RoPE position policy all
live here.

Semantics (chunk granularity, the Self-Forcing convention):

* A chunk of `n` frames starting at absolute frame `f0` attends to itself plus at most
  `window - n` earlier frames: the `sink` first frames of the video (never evicted) and
  the most recent other frames. In mask terms, a query in a chunk ending at `end` sees
  key frames `[0, sink) ∪ [max(sink, end - (window - sink)), end)`.
* Running the same chunk again (the denoising steps, then the refresh pass at context
  noise 0) overwrites that chunk's slots in place, so the cache ends up holding the
  last pass written for it.
* A new chunk (`f0` == the next frame) first evicts the oldest non-sink frames that fall
  out of its window.
* Position policy:
    - ``absolute``: keys are stored already rotated at their absolute frame index (the
      Self-Forcing/Self-Forcing++ convention). Frame indices must stay below the RoPE
      table length (`rope_max_seq_len`), which caps video length.
    - ``relative``: keys are stored un-rotated; at every pass the context is rotated
      by its position inside the window (0 .. n_ctx-1) and the current chunk follows
      at n_ctx... . Positions never exceed `window - 1`, so length is unbounded.
  Without sinks both give the same attention scores (RoPE scores depend only on
  position differences); they differ in the length limit and, with sinks, in where
  the sink frames sit relative to the recent frames.

Layout of the stored tensors: ``(B, S, H, D)`` with ``S = frames * tokens_per_frame``,
frames in chronological order (sinks first). This is the layout SDPA-style attention
expects after a transpose, and the one the causal student produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sfpp.errors import SfppError
from sfpp.rollout_config import CacheConfig, RopePolicy  # noqa: F401 - re-exported

__all__ = ["CacheConfig", "RopePolicy", "PassPlan", "RollingKVCache", "context_lengths"]

@dataclass(frozen=True)
class PassPlan:
    """Where one forward pass of a chunk reads and writes in the cache.

    ctx_frames: absolute indices of the context frames (chronological).
    ctx_positions: RoPE frame positions the *context* keys must have for this pass
        (absolute: their frame index; relative: 0..n_ctx-1).
    chunk_positions: RoPE frame positions for the current chunk's queries and keys.
    write_slot: first frame slot the chunk's K/V are written to.
    """

    frame_start: int
    num_frames: int
    ctx_frames: tuple[int, ...]
    ctx_positions: tuple[int, ...]
    chunk_positions: tuple[int, ...]
    write_slot: int


class RollingKVCache:
    """Per-layer K/V storage for a rolling window of latent frames.

    Args:
        config: window, sink and RoPE policy.
        num_layers, batch_size, num_heads, head_dim, tokens_per_frame: sizes, taken
            from the model config and the latent resolution (never hard-coded).
        dtype, device: storage dtype/device.

    Usage per forward pass of the student (done by the student itself)::

        plan = cache.plan(frame_start, num_frames)   # once per pass (evicts if new chunk)
        k_ctx, v_ctx = cache.context(layer, plan)     # per layer
        cache.write(layer, plan, k, v)                # per layer
    """

    def __init__(
        self,
        config: CacheConfig,
        *,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        tokens_per_frame: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.config = config
        self.num_layers = num_layers
        self.tokens_per_frame = tokens_per_frame
        shape = (batch_size, config.window * tokens_per_frame, num_heads, head_dim)  # (B, S, H, D)
        self._k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self._v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self._frames: list[int] = []  # absolute frame index held by each frame slot, chronological

    # ------------------------------------------------------------------ state
    @property
    def frames(self) -> tuple[int, ...]:
        """Absolute frame indices currently held, in slot order."""
        return tuple(self._frames)

    @property
    def next_frame(self) -> int:
        """The frame index a new chunk must start at."""
        return self._frames[-1] + 1 if self._frames else 0

    def reset(self) -> None:
        """Forget everything (start of a new video). Storage is kept allocated."""
        self._frames = []
        self._seek: int | None = None

    def seek(self, frame: int) -> None:
        """Let the next new chunk start at `frame` (>= `next_frame`), skipping the frames between.

        Used to rebuild a cache from stored clean latents (e.g. after a prompt switch), where the
        sink frames are followed directly by the recent window.
        """
        if frame < self.next_frame:
            raise ValueError(f"cannot seek back to frame {frame}; the next frame is {self.next_frame}")
        self._seek = frame

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._k + self._v)

    def state_dict(self) -> dict:
        """A copy of the cache contents, e.g. to branch a rollout (training windows)."""
        n = len(self._frames) * self.tokens_per_frame
        return {
            "frames": list(self._frames),
            "k": [t[:, :n].clone() for t in self._k],
            "v": [t[:, :n].clone() for t in self._v],
        }

    def load_state_dict(self, state: dict) -> None:
        n = len(state["frames"]) * self.tokens_per_frame
        for layer in range(self.num_layers):
            self._k[layer][:, :n].copy_(state["k"][layer])
            self._v[layer][:, :n].copy_(state["v"][layer])
        self._frames = list(state["frames"])

    # ------------------------------------------------------------------ planning
    def plan(self, frame_start: int, num_frames: int) -> PassPlan:
        """Prepare one pass over frames ``[frame_start, frame_start + num_frames)``.

        A new chunk (``frame_start == next_frame``) evicts the oldest non-sink frames that
        are outside its window; re-running the latest chunk reuses its slots.
        """
        cfg = self.config
        n = num_frames
        if n > cfg.window or (frame_start + n > cfg.sink and n > cfg.window - cfg.sink):
            raise SfppError(
                f"a chunk of {n} latent frames does not fit a window of {cfg.window} with {cfg.sink} sink frames"
            )
        frames = self._frames
        if frames and frame_start in frames:
            # Re-run of the most recent chunk: overwrite in place.
            pos = frames.index(frame_start)
            if frames[pos:] != list(range(frame_start, frame_start + n)):
                raise SfppError(
                    f"only the most recent chunk can be re-run (frames {frames[pos:]} cached, "
                    f"asked for {frame_start}..{frame_start + n - 1})"
                )
        else:
            if getattr(self, "_seek", None) is not None and frame_start == self._seek:
                self._seek = None
            elif frame_start != self.next_frame:
                raise SfppError(
                    f"chunks must be generated in order: expected frame {self.next_frame}, got {frame_start}"
                )
            self._evict_for(frame_start + n)
            pos = len(self._frames)
            self._frames.extend(range(frame_start, frame_start + n))
        ctx = tuple(self._frames[:pos])
        if cfg.rope == "absolute":
            ctx_pos = ctx
            chunk_pos = tuple(range(frame_start, frame_start + n))
        else:
            ctx_pos = tuple(range(len(ctx)))
            chunk_pos = tuple(range(len(ctx), len(ctx) + n))
        return PassPlan(frame_start, n, ctx, ctx_pos, chunk_pos, pos)

    def _evict_for(self, end: int) -> None:
        """Drop non-sink frames older than ``end - (window - sink)``, shifting the rest left."""
        cfg = self.config
        first_recent = end - (cfg.window - cfg.sink)
        keep = [i for i, f in enumerate(self._frames) if f < cfg.sink or f >= first_recent]
        if len(keep) == len(self._frames):
            return
        tpf = self.tokens_per_frame
        # Kept slots are a sink prefix plus a contiguous recent suffix; move the suffix left.
        n_sink = sum(1 for f in self._frames if f < cfg.sink)
        suffix = [i for i in keep if i >= n_sink]
        if suffix:
            src0, dst0, cnt = suffix[0] * tpf, n_sink * tpf, len(suffix) * tpf
            for buf in self._k + self._v:
                buf[:, dst0 : dst0 + cnt] = buf[:, src0 : src0 + cnt].clone()
        self._frames = [self._frames[i] for i in keep]

    # ------------------------------------------------------------------ per-layer access
    def context(self, layer: int, plan: PassPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """Context K/V for this pass: ``(B, n_ctx * tokens_per_frame, H, D)`` views.

        Keys are as stored: rotated at absolute positions (``absolute``) or un-rotated
        (``relative``; the caller rotates them by ``plan.ctx_positions``).
        """
        n = len(plan.ctx_frames) * self.tokens_per_frame
        return self._k[layer][:, :n], self._v[layer][:, :n]

    def write(self, layer: int, plan: PassPlan, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the chunk's K/V ``(B, num_frames * tokens_per_frame, H, D)`` at its slots.

        Values are detached: the cache carries context, never gradient.
        """
        tpf = self.tokens_per_frame
        s0 = plan.write_slot * tpf
        s1 = s0 + plan.num_frames * tpf
        if k.shape[1] != s1 - s0:
            raise ValueError(f"chunk K has {k.shape[1]} tokens, expected {s1 - s0}")
        self._k[layer][:, s0:s1] = k.detach()
        self._v[layer][:, s0:s1] = v.detach()


def context_lengths(config: CacheConfig, chunk_sizes: list[int] | tuple[int, ...]) -> list[int]:
    """Context frames each chunk of a rollout attends to (besides itself), from a dry run of `plan`.

    Grows by one chunk per chunk while the window fills, then stays at its maximum.
    """
    sim = RollingKVCache(config, num_layers=0, batch_size=1, num_heads=1, head_dim=1, tokens_per_frame=1)
    out, f0 = [], 0
    for n in chunk_sizes:
        out.append(len(sim.plan(f0, n).ctx_frames))
        f0 += n
    return out
