"""RollingKVCache on its own: slots, eviction, sinks, overwrite, positions."""

import pytest
import torch

from sfpp.errors import SfppError
from sfpp.kv_cache import CacheConfig, RollingKVCache

TPF = 5  # tokens per frame (odd, distinct sizes so swapped axes fail)


def make(window=7, sink=0, rope="absolute", layers=3):
    return RollingKVCache(CacheConfig(window=window, sink=sink, rope=rope), num_layers=layers, batch_size=2,
                          num_heads=3, head_dim=4, tokens_per_frame=TPF)


def kv_for(frames, value_offset=0.0):
    """K/V whose every token carries its absolute frame index (+ offset) so we can read slots back."""
    k = torch.cat([torch.full((2, TPF, 3, 4), f + value_offset) for f in frames], dim=1)
    return k, -k


def step(cache, f0, n, offset=0.0):
    plan = cache.plan(f0, n)
    for layer in range(cache.num_layers):
        cache.write(layer, plan, *kv_for(range(f0, f0 + n), offset))
    return plan


def held_frames(cache, layer=0):
    n = len(cache.frames)
    k = cache._k[layer][:, : n * TPF]
    return k[0, ::TPF, 0, 0].tolist()


def test_window_eviction_keeps_most_recent_frames_in_order():
    c = make(window=7)
    for f0 in range(0, 15, 3):
        plan = step(c, f0, 3)
    # Last chunk 12..14 sees 4 earlier frames (7 - 3) = 8..11
    assert plan.ctx_frames == (8, 9, 10, 11)
    assert c.frames == (8, 9, 10, 11, 12, 13, 14)
    assert held_frames(c) == [8, 9, 10, 11, 12, 13, 14]
    assert held_frames(c, layer=2) == [8, 9, 10, 11, 12, 13, 14]


def test_sink_frames_are_never_evicted():
    c = make(window=7, sink=2)
    for f0 in range(0, 18, 3):
        plan = step(c, f0, 3)
    # chunk 15..17: sinks 0,1 plus 7 - 2 - 3 = 2 recent frames 13, 14
    assert plan.ctx_frames == (0, 1, 13, 14)
    assert held_frames(c) == [0, 1, 13, 14, 15, 16, 17]


def test_rerun_overwrites_in_place():
    c = make(window=7)
    step(c, 0, 3)
    step(c, 3, 3, offset=100.0)  # first pass of chunk 2 (noisy)
    plan = step(c, 3, 3, offset=0.5)  # refresh pass of the same chunk
    assert plan.ctx_frames == (0, 1, 2)
    assert held_frames(c) == [0, 1, 2, 3.5, 4.5, 5.5]
    assert c.next_frame == 6


def test_positions_absolute_vs_relative():
    a, r = make(window=6), make(window=6, rope="relative")
    for f0 in range(0, 12, 3):
        pa, pr = step(a, f0, 3), step(r, f0, 3)
    assert pa.ctx_positions == (6, 7, 8) and pa.chunk_positions == (9, 10, 11)
    assert pr.ctx_positions == (0, 1, 2) and pr.chunk_positions == (3, 4, 5)


def test_out_of_order_and_oversized_chunks_are_refused():
    c = make(window=7)
    step(c, 0, 3)
    with pytest.raises(SfppError, match="in order"):
        c.plan(6, 3)
    with pytest.raises(SfppError, match="most recent chunk"):
        step(c, 3, 3)
        c.plan(0, 3)
    with pytest.raises(SfppError, match="does not fit"):
        make(window=7).plan(0, 8)
    sinky = make(window=7, sink=5)
    step(sinky, 0, 3)  # inside the sink region: fine
    with pytest.raises(SfppError, match="does not fit"):
        sinky.plan(3, 3)  # 3 frames past the sinks, but only 7 - 5 = 2 recent slots


def test_state_dict_round_trip_branches_a_rollout():
    c = make(window=7)
    for f0 in range(0, 9, 3):
        step(c, f0, 3)
    snap = c.state_dict()
    step(c, 9, 3, offset=50.0)
    c.load_state_dict(snap)
    assert c.frames == (2, 3, 4, 5, 6, 7, 8)
    assert held_frames(c) == [2, 3, 4, 5, 6, 7, 8]


def test_config_validation():
    with pytest.raises(SfppError):
        CacheConfig(window=0)
    with pytest.raises(SfppError):
        CacheConfig(window=4, sink=4)
    with pytest.raises(SfppError):
        CacheConfig(window=4, rope="sideways")
