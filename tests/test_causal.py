"""The causal student against diffusers' own forward and against full block-causal masks."""

import pytest
import torch

from sfpp.causal import CausalWan, block_causal_frame_mask
from sfpp.kv_cache import CacheConfig


@pytest.fixture()
def student(debug_components):
    return CausalWan(debug_components.transformer)


def _inputs(F=6, B=2, H=8, W=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 16, F, H, W, generator=g)
    text = torch.randn(B, 7, 32, generator=g)
    return x, text


def test_one_chunk_without_cache_equals_diffusers_forward(student):
    x, text_emb = _inputs(F=3)
    t = torch.tensor([700.0, 250.0])
    ref = student.transformer(x, t, text_emb, return_dict=False)[0]
    ctx = student.encode_text(text_emb)
    out = student(x, t[:, None].expand(2, 3), ctx)
    assert out.shape == ref.shape == x.shape
    assert (out - ref).abs().max().item() < 1e-5


def test_per_frame_timesteps_match_diffusers_per_token_path(student):
    x, text_emb = _inputs(F=3, H=8, W=10)
    t_frame = torch.tensor([[900.0, 500.0, 100.0], [10.0, 20.0, 30.0]])
    tokens = (8 // 2) * (10 // 2)
    ref = student.transformer(x, t_frame.repeat_interleave(tokens, dim=1), text_emb, return_dict=False)[0]
    out = student(x, t_frame, student.encode_text(text_emb))
    assert (out - ref).abs().max().item() < 1e-5


def _chunked(student, x, t, ctx, sizes, cfg):
    cache = student.new_cache(cfg, batch_size=x.shape[0], latent_hw=x.shape[-2:])
    outs, f0 = [], 0
    for n in sizes:
        outs.append(student(x[:, :, f0 : f0 + n], t[:, f0 : f0 + n], ctx, cache=cache, frame_start=f0))
        f0 += n
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize("rope", ["absolute", "relative"])
def test_chunked_cache_equals_full_block_causal_forward(student, rope):
    x, text_emb = _inputs(F=9)
    t = torch.rand(2, 9) * 1000
    ctx = student.encode_text(text_emb)
    sizes = [3, 3, 3]
    full = student.forward_full(x, t, ctx, chunk_sizes=sizes)
    chunked = _chunked(student, x, t, ctx, sizes, CacheConfig(window=9, rope=rope))
    assert (full - chunked).abs().max().item() <= 1e-4
    # The mask matters: a bidirectional pass gives a clearly different answer.
    bidir = student(x, t, ctx)
    assert (bidir - full).abs().max().item() > 1e-2


@pytest.mark.parametrize("rope", ["absolute", "relative"])
@pytest.mark.parametrize("window,sink", [(6, 0), (5, 0), (7, 1)])
def test_rolling_window_equals_banded_mask(student, window, sink, rope):
    x, text_emb = _inputs(F=15, B=1)
    t = torch.rand(1, 15) * 1000
    ctx = student.encode_text(text_emb)
    sizes = [3, 3, 3, 3, 3] if window != 5 else [2, 2, 2, 2, 2, 2, 2, 1]
    full = student.forward_full(x, t, ctx, chunk_sizes=sizes, window=window, sink=sink)
    chunked = _chunked(student, x, t, ctx, sizes, CacheConfig(window=window, sink=sink, rope=rope))
    if rope == "absolute" or sink == 0:
        # Without sinks relative == absolute (RoPE scores depend on position differences only).
        assert (full - chunked).abs().max().item() <= 1e-4
    else:
        # With sinks, relative positions put the sink next to the window: a different model.
        assert (full - chunked).abs().max().item() > 1e-4
    # Banding matters: the un-banded causal pass differs.
    causal = student.forward_full(x, t, ctx, chunk_sizes=sizes)
    assert (causal - full).abs().max().item() > 1e-3


def test_rerunning_a_chunk_overwrites_its_cache_slots(student):
    x, text_emb = _inputs(F=6, B=1)
    ctx = student.encode_text(text_emb)
    cfg = CacheConfig(window=6)
    t = torch.full((1, 3), 500.0)
    cache = student.new_cache(cfg, batch_size=1, latent_hw=x.shape[-2:])
    student(torch.randn_like(x[:, :, :3]), t, ctx, cache=cache, frame_start=0)  # garbage pass
    student(x[:, :, :3], t, ctx, cache=cache, frame_start=0)  # same chunk again: overwrite
    out = student(x[:, :, 3:], t, ctx, cache=cache, frame_start=3)
    ref = student.forward_full(x, torch.full((1, 6), 500.0), ctx, chunk_sizes=[3, 3])[:, :, 3:]
    assert (out - ref).abs().max().item() <= 1e-4
    assert cache.frames == tuple(range(6))


def test_frame_mask_shape_and_band():
    m = block_causal_frame_mask([2, 2, 2], window=4)
    assert m.shape == (6, 6)
    # chunk 3 (frames 4,5) ends at 6 and sees frames 2..5 only
    assert m[4].tolist() == [False, False, True, True, True, True]
    assert m[0].tolist() == [True, True, False, False, False, False]
