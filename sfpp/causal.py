"""The causal student: a block-causal forward over diffusers' `WanTransformer3DModel` modules.

`CausalWan` wraps an unmodified `WanTransformer3DModel` (so a diffusers checkpoint loads into
it unchanged) and re-implements only the forward:

* block-causal across chunks, bidirectional inside a chunk;
* one timestep per latent frame, with the adaLN modulation computed per frame and broadcast
  over the frame's tokens (diffusers' per-token path would build a float32 ``(B, L, 6, D)``
  tensor in every block);
* RoPE at arbitrary frame positions (a frame offset for chunk k, or window-relative positions);
* the prompt's cross-attention K/V computed once per prompt (`TextContext`);
* self-attention K/V read from and written to a caller-owned `RollingKVCache`.

The per-block computation is one pure function, `block_forward` (tensors in, tensors out; the
cache is read before it and written after it), so `CausalWan.compile_blocks()` can hand it to
`torch.compile` once for all blocks: one graph per distinct (context, chunk) shape, a number
bounded by ``window / chunk`` (see `context_shapes`), and no recompiles once the window is full.

Tensor layouts: latents are ``(B, C, F, H, W)`` (diffusers/VAE layout) at every public
boundary; tokens are ``(B, L, D)`` with frame-major order ``L = F * H' * W'``; attention
heads are ``(B, L, heads, head_dim)`` as in diffusers' processors; timesteps are
``(B, F)`` on the 0..1000 scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sfpp.errors import SfppError
from sfpp.kv_cache import CacheConfig, PassPlan, RollingKVCache, context_lengths


@dataclass
class TextContext:
    """Per-layer cross-attention K/V of one prompt batch: lists of ``(B, L_txt, heads, head_dim)``.

    ``lazy`` (sharded models, see `sfpp.parallel`): ``k`` holds the projected prompt
    ``(B, L_txt, D)`` for every layer and ``v`` holds None; each block projects its own K/V.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor | None]
    dtype: torch.dtype  # dtype of the raw text embeddings; the time embedding is cast to it
    lazy: bool = False

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply Wan's interleaved-pair RoPE. x: (B, L, H, D); cos/sin: (1, L, 1, D)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)  # (B, L, H, D/2) each
    c = cos[..., 0::2]
    s = sin[..., 1::2]
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)  # (B, L, H, D)
    return out.type_as(x)


class CausalWan(nn.Module):
    """Block-causal, KV-cached forward over a diffusers `WanTransformer3DModel`.

    The wrapped model is `self.transformer`; its state dict is exactly diffusers'.
    """

    def __init__(self, transformer: nn.Module):
        super().__init__()
        cfg = transformer.config
        if cfg.get("image_dim") is not None or cfg.get("added_kv_proj_dim") is not None:
            raise SfppError("image-conditioned (I2V) Wan transformers are not supported; use a T2V checkpoint")
        self.transformer = transformer
        self.patch_size = tuple(cfg.patch_size)
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.attention_head_dim
        self.num_layers = cfg.num_layers
        self.in_channels = cfg.in_channels
        self.gradient_checkpointing = False
        # How each transformer block runs: ``runner(block, h, tproj, text_k, text_v, cos, sin, f, hw, k_ctx, v_ctx,
        # ctx_cos, ctx_sin, mask, store_rotated) -> (h, k, v)`` (the signature of `block_forward`). Set from
        # outside: `compile_blocks` installs a compiled `block_forward`, `sfpp.parallel.shard_causal` a runner
        # that goes through FSDP's hooks.
        self.block_runner = block_forward
        # Project the prompt's cross-attention K/V inside each block call instead of once per prompt (set by
        # `sfpp.parallel.shard_causal`: a sharded block's weights exist only during its own call).
        self.text_kv_in_blocks = False
        self._compiled = False
        self._rope_memo: dict = {}  # (positions, pph, ppw) -> (cos, sin); the passes of a chunk share it

    # ------------------------------------------------------------------ fast paths
    def fuse_qkv(self, *, drop_unfused: bool = True) -> "CausalWan":
        """Fuse Q/K/V (self-attention) and K/V (cross-attention) into one linear each.

        Uses diffusers' `WanAttention.fuse_projections()`; the forward then uses ``to_qkv`` /
        ``to_kv``. ``drop_unfused`` deletes the now-unused ``to_k``/``to_v`` (and self-attention
        ``to_q``) so the weights are not held twice; the state dict is then no longer
        diffusers' (do it for inference only, after loading).
        """
        for block in self.transformer.blocks:
            for attn in (block.attn1, block.attn2):
                attn.fuse_projections()
                if drop_unfused:
                    names = ("to_k", "to_v") if attn.is_cross_attention else ("to_q", "to_k", "to_v")
                    for name in names:
                        if name in attn._modules:
                            del attn._modules[name]
        self._rope_memo.clear()
        return self

    def compile_blocks(self, *, backend: str = "inductor", mode: str | None = None, max_shapes: int = 64) -> "CausalWan":
        """`torch.compile` the repeated transformer block (one compiled function for all blocks).

        Shapes are static (``dynamic=False``): each distinct (context length, chunk length) pair
        compiles once and is then reused by every block and every later chunk. While the window
        fills the context grows chunk by chunk, so there are at most ``window / chunk + 1`` such
        pairs (`context_shapes` lists them); after that the shapes never change and nothing
        recompiles. ``max_shapes`` raises dynamo's recompile limit to allow that many.
        """
        import torch._dynamo

        cfg = torch._dynamo.config
        name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        setattr(cfg, name, max(getattr(cfg, name), max_shapes))
        self.block_runner = torch.compile(block_forward, dynamic=False, fullgraph=True, backend=backend, mode=mode)
        self._compiled = True
        return self

    @property
    def compiled(self) -> bool:
        return self._compiled

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (of the patch embedding). Not ``next(parameters())``: with Wan's fp32
        islands the first parameter (``scale_shift_table``) stays float32 in a bf16 model."""
        return self.transformer.patch_embedding.weight.dtype

    @property
    def rope_max_frames(self) -> int:
        return int(self.transformer.rope.max_seq_len)

    def tokens_per_frame(self, latent_h: int, latent_w: int) -> int:
        return (latent_h // self.patch_size[1]) * (latent_w // self.patch_size[2])

    def new_cache(
        self,
        config: CacheConfig,
        *,
        batch_size: int,
        latent_hw: tuple[int, int],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> RollingKVCache:
        """A cache sized from this model's config and a latent resolution."""
        p = next(self.transformer.parameters())
        return RollingKVCache(
            config,
            num_layers=self.num_layers,
            batch_size=batch_size,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            tokens_per_frame=self.tokens_per_frame(*latent_hw),
            dtype=dtype or self.dtype,
            device=device or p.device,
        )

    def rope(self, positions: Sequence[int] | torch.Tensor, pph: int, ppw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of shape ``(1, len(positions) * pph * ppw, 1, head_dim)`` at the given frame positions."""
        key = (tuple(int(p) for p in positions), pph, ppw)
        hit = self._rope_memo.get(key)
        if hit is not None and hit[0].device == self.transformer.rope.freqs_cos.device:
            return hit
        out = self._rope(key[0], pph, ppw)
        if len(self._rope_memo) >= 8:
            self._rope_memo.pop(next(iter(self._rope_memo)))
        self._rope_memo[key] = out
        return out

    def _rope(self, positions: tuple[int, ...], pph: int, ppw: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.transformer.rope
        pos = torch.as_tensor(positions, dtype=torch.long, device=r.freqs_cos.device)
        if pos.numel() and int(pos.max()) >= r.max_seq_len:
            raise SfppError(
                f"latent frame position {int(pos.max())} is past the RoPE table ({r.max_seq_len} frames); "
                "use --rope relative for unbounded length"
            )
        f = pos.numel()
        split = [r.t_dim, r.h_dim, r.w_dim]
        out = []
        for table in (r.freqs_cos, r.freqs_sin):
            t_part, h_part, w_part = table.split(split, dim=1)
            t_f = t_part.index_select(0, pos).view(f, 1, 1, -1).expand(f, pph, ppw, -1)
            h_f = h_part[:pph].view(1, pph, 1, -1).expand(f, pph, ppw, -1)
            w_f = w_part[:ppw].view(1, 1, ppw, -1).expand(f, pph, ppw, -1)
            out.append(torch.cat([t_f, h_f, w_f], dim=-1).reshape(1, f * pph * ppw, 1, -1))
        return out[0], out[1]

    # ------------------------------------------------------------------ text
    def encode_text(self, encoder_hidden_states: torch.Tensor) -> TextContext:
        """Project a prompt batch ``(B, L_txt, text_dim)`` into per-layer cross-attention K/V (once per prompt)."""
        tr = self.transformer
        encoder_hidden_states = encoder_hidden_states.to(self.dtype)
        ctx = tr.condition_embedder.text_embedder(encoder_hidden_states)  # (B, L_txt, D)
        n = len(tr.blocks)
        if self.text_kv_in_blocks:  # a block's weights exist only inside its call
            return TextContext([ctx] * n, [None] * n, encoder_hidden_states.dtype, lazy=True)
        ks, vs = zip(*(cross_kv(block.attn2, ctx) for block in tr.blocks))
        return TextContext(list(ks), list(vs), encoder_hidden_states.dtype)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        text: TextContext,
        *,
        cache: RollingKVCache | None = None,
        frame_start: int = 0,
    ) -> torch.Tensor:
        """Flow prediction for one chunk.

        Args:
            x: noisy latents ``(B, C, f, H, W)`` of frames ``[frame_start, frame_start + f)``.
            timestep: ``(B, f)`` per-frame timesteps (0..1000), or ``(B,)`` for one per sample.
            text: cross-attention context from `encode_text`.
            cache: rolling KV cache (read for context, written with this chunk's K/V).
                ``None``: the chunk attends only to itself (bidirectional within the chunk).
            frame_start: absolute index of the chunk's first latent frame.

        Returns:
            flow prediction ``(B, C, f, H, W)``.
        """
        B, _, f, H, W = x.shape
        if cache is None:
            positions = tuple(range(frame_start, frame_start + f))
            return self._run(x, timestep, text, positions=positions, attn=_SelfAttnOnly())
        plan = cache.plan(frame_start, f)
        grid = (H // self.patch_size[1], W // self.patch_size[2])
        if grid[0] * grid[1] != cache.tokens_per_frame:
            raise ValueError(f"cache holds {cache.tokens_per_frame} tokens per frame, latents give {grid[0] * grid[1]}")
        attn = _CachedAttn(cache, plan, self, grid)
        return self._run(x, timestep, text, positions=plan.chunk_positions, attn=attn)

    def forward_full(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        text: TextContext,
        *,
        chunk_sizes: Sequence[int],
        window: int | None = None,
        sink: int = 0,
    ) -> torch.Tensor:
        """One pass over a whole sequence with a block-causal (optionally banded) mask.

        The reference for the KV-cached path, and the training path for ODE regression.
        ``chunk_sizes`` partitions the F frames; a chunk ending at frame ``end`` sees frames
        ``[0, sink) ∪ [end - (window - sink), end)`` (all earlier frames if ``window`` is None).
        Positions are absolute (0..F-1).
        """
        B, _, Fr, H, W = x.shape
        if sum(chunk_sizes) != Fr:
            raise ValueError(f"chunk sizes {list(chunk_sizes)} do not add up to {Fr} frames")
        frame_mask = block_causal_frame_mask(chunk_sizes, window=window, sink=sink, device=x.device)  # (F, F)
        tpf = self.tokens_per_frame(H, W)
        mask = frame_mask.repeat_interleave(tpf, 0).repeat_interleave(tpf, 1)  # (L, L), True = attend
        return self._run(x, timestep, text, positions=tuple(range(Fr)), attn=_MaskedAttn(mask))

    # ------------------------------------------------------------------ internals
    def _run(self, x, timestep, text: TextContext, *, positions, attn) -> torch.Tensor:
        tr = self.transformer
        B, _, f, H, W = x.shape
        p_t, p_h, p_w = self.patch_size
        if p_t != 1:
            raise SfppError("only temporal patch size 1 is supported")
        pph, ppw = H // p_h, W // p_w
        hw = pph * ppw
        if text.batch_size != B:
            raise ValueError(f"text context has batch {text.batch_size}, latents have batch {B}")
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(B, f)
        if timestep.shape != (B, f):
            raise ValueError(f"timestep must be (B, F) = {(B, f)}, got {tuple(timestep.shape)}")

        cos, sin = self.rope(positions, pph, ppw)  # (1, L, 1, Dh)
        h = tr.patch_embedding(x.to(self.dtype))  # (B, D, f, H', W')
        h = h.flatten(2).transpose(1, 2).contiguous()  # (B, L, D), L = f * H' * W'
        D = h.shape[-1]

        # Per-frame time embedding: (B*f,) -> temb (B, f, D), modulation (B, f, 6, D).
        ce = tr.condition_embedder
        t_emb = ce.timesteps_proj(timestep.reshape(-1))  # (B*f, freq_dim), float32
        te_dtype = next(iter(ce.time_embedder.parameters())).dtype
        if t_emb.dtype != te_dtype:
            t_emb = t_emb.to(te_dtype)
        temb = ce.time_embedder(t_emb).to(text.dtype)  # (B*f, D)
        tproj = ce.time_proj(ce.act_fn(temb)).view(B, f, 6, D)  # (B, f, 6, D)
        temb = temb.view(B, f, D)

        ckpt = self.gradient_checkpointing and torch.is_grad_enabled()
        for i, block in enumerate(tr.blocks):
            h = self._block(i, block, h, tproj, text, cos, sin, attn, f, hw, checkpoint=ckpt)

        # Output layer with per-frame shift/scale.
        shift, scale = (tr.scale_shift_table.view(1, 1, 2, D) + temb.unsqueeze(2)).chunk(2, dim=2)  # (B, f, 1, D)
        hf = h.view(B, f, hw, D)
        h = (tr.norm_out(hf.float()) * (1 + scale) + shift).type_as(h).view(B, f * hw, D)
        h = tr.proj_out(h)  # (B, L, p_t*p_h*p_w*C)
        h = h.reshape(B, f, pph, ppw, p_t, p_h, p_w, -1)
        h = h.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, f, p_t, H', p_h, W', p_w)
        return h.flatten(6, 7).flatten(4, 5).flatten(2, 3)  # (B, C, f, H, W)

    def _block(self, i, block, h, tproj, text: TextContext, cos, sin, attn, f: int, hw: int,
               checkpoint: bool = False) -> torch.Tensor:
        k_ctx, v_ctx = attn.context(i)  # read before the block: the chunk's own slots are not in it
        if checkpoint and k_ctx is not None:
            # Gradient checkpointing recomputes the block during backward, when the cache has moved
            # on (later chunks evict and overwrite slots): give it a private copy of the context.
            k_ctx, v_ctx = k_ctx.clone(), v_ctx.clone()
        ctx_cos, ctx_sin = attn.ctx_rope
        args = (block, h, tproj, text.k[i], text.v[i], cos, sin, f, hw,
                k_ctx, v_ctx, ctx_cos, ctx_sin, attn.mask, attn.store_rotated)
        if checkpoint:
            h, k_store, v = torch.utils.checkpoint.checkpoint(self.block_runner, *args, use_reentrant=False)
        else:
            h, k_store, v = self.block_runner(*args)
        attn.store(i, k_store, v)
        return h


def block_forward(
    block: nn.Module,
    h: torch.Tensor,
    tproj: torch.Tensor,
    text_k: torch.Tensor,
    text_v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    f: int,
    hw: int,
    k_ctx: torch.Tensor | None = None,
    v_ctx: torch.Tensor | None = None,
    ctx_cos: torch.Tensor | None = None,
    ctx_sin: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    store_rotated: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Wan block over a chunk's tokens: a pure function (no cache access), so it compiles.

    Args:
        block: a diffusers `WanTransformerBlock`.
        h: tokens ``(B, L, D)``, ``L = f * hw``.
        tproj: per-frame time projection ``(B, f, 6, D)``.
        text_k, text_v: the prompt's cross-attention K/V for this block ``(B, L_txt, H, Dh)``; or
            the projected prompt ``(B, L_txt, D)`` and None (sharded models: projected here).
        cos, sin: RoPE of the chunk's tokens ``(1, L, 1, Dh)``.
        k_ctx, v_ctx: cached context K/V ``(B, S_ctx, H, Dh)`` or None (the chunk sees only itself).
        ctx_cos, ctx_sin: RoPE for un-rotated context keys (relative policy), else None.
        mask: boolean ``(L, L)`` mask (full-sequence forward), True = attend; None = no mask
            (the cached path never needs one, so fused SDPA kernels apply).
        store_rotated: return the chunk's keys rotated (absolute policy) or un-rotated (relative).

    Returns:
        ``(h, k, v)``: the block output ``(B, L, D)`` and the chunk's K/V ``(B, L, H, Dh)`` to cache.
    """
    B, L, D = h.shape
    if text_v is None:
        text_k, text_v = cross_kv(block.attn2, text_k)
    mod = block.scale_shift_table.view(1, 1, 6, D) + tproj.float()  # (B, f, 6, D) float32
    shift, scale, gate, c_shift, c_scale, c_gate = mod.chunk(6, dim=2)  # each (B, f, 1, D)

    def modulate(norm, sh, sc):
        return (norm(h.float()).view(B, f, hw, D) * (1 + sc) + sh).view(B, L, D).type_as(h)

    # 1. Self-attention: block-causal through the context (cached path) or the mask (full path).
    a = block.attn1
    n = modulate(block.norm1, shift, scale)
    if getattr(a, "fused_projections", False):
        q, k, v = a.to_qkv(n).chunk(3, dim=-1)
    else:
        q, k, v = a.to_q(n), a.to_k(n), a.to_v(n)
    q = a.norm_q(q).unflatten(2, (a.heads, -1))  # (B, L, H, Dh)
    k = a.norm_k(k).unflatten(2, (a.heads, -1))
    v = v.unflatten(2, (a.heads, -1))
    q = _rotate(q, cos, sin)
    k_rot = _rotate(k, cos, sin)
    if k_ctx is None:
        out = _sdpa(q, k_rot, v, mask)
    else:
        if ctx_cos is not None:  # relative policy: context keys are stored un-rotated
            k_ctx = _rotate(k_ctx, ctx_cos, ctx_sin)
        k_all = torch.cat([k_ctx.to(k_rot.dtype), k_rot], dim=1)  # (B, S_ctx + L, H, Dh)
        v_all = torch.cat([v_ctx.to(v.dtype), v], dim=1)
        out = _sdpa(q, k_all, v_all, mask)
    out = a.to_out[1](a.to_out[0](out.flatten(2, 3).type_as(q)))
    h = (h.float() + (out.view(B, f, hw, D) * gate).view(B, L, D)).type_as(h)

    # 2. Cross-attention with the prompt's precomputed K/V.
    c = block.attn2
    n = block.norm2(h.float()).type_as(h)
    q = c.norm_q(c.to_q(n)).unflatten(2, (c.heads, -1))
    out = _sdpa(q, text_k, text_v)
    out = c.to_out[1](c.to_out[0](out.flatten(2, 3).type_as(q)))
    h = h + out

    # 3. Feed-forward.
    n = modulate(block.norm3, c_shift, c_scale)
    ff = block.ffn(n)
    h = (h.float() + (ff.float().view(B, f, hw, D) * c_gate).view(B, L, D)).type_as(h)
    return h, (k_rot if store_rotated else k), v


def cross_kv(attn: nn.Module, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A block's cross-attention K/V of the projected prompt ``(B, L_txt, D)``: each ``(B, L_txt, H, Dh)``."""
    if getattr(attn, "fused_projections", False):
        k, v = attn.to_kv(ctx).chunk(2, dim=-1)
    else:
        k, v = attn.to_k(ctx), attn.to_v(ctx)
    k = attn.norm_k(k)
    return k.unflatten(2, (attn.heads, -1)), v.unflatten(2, (attn.heads, -1))


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA over ``(B, L, H, D)`` tensors (diffusers' layout); returns ``(B, Lq, H, D)``."""
    if k.shape[0] != q.shape[0]:
        k = k.expand(q.shape[0], *k.shape[1:])
        v = v.expand(q.shape[0], *v.shape[1:])
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


class _SelfAttnOnly:
    """The chunk attends to itself only (no cache): a bidirectional forward over the chunk."""

    mask = None
    ctx_rope = (None, None)
    store_rotated = True

    def context(self, layer):
        return None, None

    def store(self, layer, k, v):
        pass


class _MaskedAttn(_SelfAttnOnly):
    """Full sequence with a boolean mask ``(L, L)``, True = attend."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask


class _CachedAttn:
    """Current chunk attends to the cache context plus itself; its K/V are written to the cache."""

    mask = None

    def __init__(self, cache: RollingKVCache, plan: PassPlan, model: CausalWan, grid: tuple[int, int]):
        self.cache, self.plan = cache, plan
        # Absolute: keys are stored rotated at their frame index. Relative: stored un-rotated and
        # the context is rotated at its window positions at every pass.
        self.store_rotated = cache.config.rope == "absolute"
        self.ctx_rope = (None, None)
        if not self.store_rotated and plan.ctx_frames:
            self.ctx_rope = model.rope(plan.ctx_positions, *grid)

    def context(self, layer):
        if not self.plan.ctx_frames:
            return None, None
        return self.cache.context(layer, self.plan)  # (B, S_ctx, H, Dh) views

    def store(self, layer, k, v):
        self.cache.write(layer, self.plan, k, v)


def context_shapes(config: CacheConfig, chunk_sizes: Sequence[int]) -> list[tuple[int, int]]:
    """The distinct ``(context frames, chunk frames)`` pairs a rollout with these chunks runs.

    With static shapes this is the number of graphs `CausalWan.compile_blocks` compiles; it is
    reached once the window is full and never grows after that.
    """
    seen: list[tuple[int, int]] = []
    for key in zip(context_lengths(config, list(chunk_sizes)), chunk_sizes):
        if key not in seen:
            seen.append(key)
    return seen


def block_causal_frame_mask(
    chunk_sizes: Sequence[int], *, window: int | None = None, sink: int = 0, device=None
) -> torch.Tensor:
    """Frame-level visibility ``(F, F)``: entry [i, j] is True when query frame i sees key frame j.

    Bidirectional inside a chunk, causal across chunks; with ``window`` the chunk ending at
    ``end`` sees only ``[0, sink) ∪ [end - (window - sink), end)``.
    """
    total = sum(chunk_sizes)
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    start = 0
    for n in chunk_sizes:
        end = start + n
        lo = 0 if window is None else max(0, end - (window - sink))
        mask[start:end, lo:end] = True
        if window is not None and sink:
            mask[start:end, : min(sink, end)] = True
        start = end
    return mask
