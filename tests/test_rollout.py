"""The one rollout: KV-cached chunks equal recomputing the full (banded) block-causal context."""

import pytest
import torch

from sfpp.causal import CausalWan
from sfpp.kv_cache import CacheConfig
from sfpp.noise import SeededNoise
from sfpp.rollout import GradPolicy, chunk_sizes, rollout
from sfpp.rollout_config import RolloutConfig
from sfpp.schedule import add_noise, x0_from_flow

TS = list(RolloutConfig().shifted_timesteps)  # Self-Forcing's 4-step list, shifted


@pytest.fixture()
def student(debug_components):
    return CausalWan(debug_components.transformer)


def _setup(student, B=1, H=6, W=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    text = student.encode_text(torch.randn(B, 5, 32, generator=g))
    noise = SeededNoise([seed + b for b in range(B)], channels=16, height=H, width=W)
    return text, noise


def recompute_rollout(student, text, noise, *, num_frames, chunk, window=None, sink=0, timesteps=TS):
    """Reference without a cache: every pass recomputes the whole visible context with a mask."""
    clean = []  # x0 of finished chunks (the context, at t = 0)
    sizes = chunk_sizes(num_frames, chunk)
    f0 = 0
    for n in sizes:
        x = noise.sample(f0, n, step=0)
        B = x.shape[0]
        for k, t in enumerate(timesteps):
            seq = torch.cat(clean + [x], dim=2)
            tt = torch.cat([torch.zeros(B, f0), torch.full((B, n), t)], dim=1)
            flow = student.forward_full(seq, tt, text, chunk_sizes=sizes[: len(clean) + 1], window=window, sink=sink)
            x0 = x0_from_flow(x, flow[:, :, f0:], t)
            if k + 1 < len(timesteps):
                x = add_noise(x0, noise.sample(f0, n, step=k + 1), timesteps[k + 1])
        clean.append(x0)
        f0 += n
    return torch.cat(clean, dim=2)


@torch.no_grad()
@pytest.mark.parametrize("window,rope", [(None, "absolute"), (6, "absolute"), (6, "relative"), (4, "relative")])
def test_cached_rollout_equals_recomputed_context(student, window, rope):
    text, noise = _setup(student)
    F, chunk = 12, 2 if window == 4 else 3
    cfg = CacheConfig(window=window or F, rope=rope)
    cache = student.new_cache(cfg, batch_size=1, latent_hw=(6, 8))
    out = rollout(student, text, noise, cache, num_frames=F, chunk_frames=chunk, timesteps=TS)
    ref = recompute_rollout(student, text, noise, num_frames=F, chunk=chunk, window=window)
    assert out.shape == (1, 16, F, 6, 8)
    assert (out - ref).abs().max().item() <= 1e-4


@torch.no_grad()
def test_relative_equals_absolute_inside_and_beyond_the_window(student):
    text, noise = _setup(student)
    outs = {}
    for rope in ("absolute", "relative"):
        cache = student.new_cache(CacheConfig(window=6, rope=rope), batch_size=1, latent_hw=(6, 8))
        outs[rope] = rollout(student, text, noise, cache, num_frames=15, chunk_frames=3, timesteps=TS)
    assert (outs["absolute"] - outs["relative"]).abs().max().item() <= 1e-4


@torch.no_grad()
def test_same_seed_same_video_and_on_chunk_callbacks(student):
    text, noise = _setup(student)
    seen = []
    a = rollout(student, text, noise, student.new_cache(CacheConfig(window=6), batch_size=1, latent_hw=(6, 8)),
                num_frames=9, chunk_frames=3, timesteps=TS, on_chunk=lambda c: seen.append((c.index, c.frame_start)))
    b = rollout(student, text, noise, student.new_cache(CacheConfig(window=6), batch_size=1, latent_hw=(6, 8)),
                num_frames=9, chunk_frames=3, timesteps=TS, keep=True)
    assert torch.equal(a, b)
    assert seen == [(0, 0), (1, 3), (2, 6)]
    other = SeededNoise(99, channels=16, height=6, width=8)
    c = rollout(student, text, other, student.new_cache(CacheConfig(window=6), batch_size=1, latent_hw=(6, 8)),
                num_frames=9, chunk_frames=3, timesteps=TS)
    assert (a - c).abs().max().item() > 1e-2


def test_noise_is_independent_of_chunking():
    n = SeededNoise([4, 5], channels=3, height=2, width=5)
    whole = n.sample(0, 6, step=2)
    parts = torch.cat([n.sample(0, 2, step=2), n.sample(2, 4, step=2)], dim=2)
    assert torch.equal(whole, parts)
    assert not torch.equal(n.sample(0, 2, step=1), n.sample(0, 2, step=2))
    assert not torch.equal(whole[0], whole[1])


def test_gradient_flows_only_through_exit_step_of_selected_chunks(student):
    text, noise = _setup(student)
    text = type(text)([k.detach() for k in text.k], [v.detach() for v in text.v], text.dtype)
    calls = []

    def counting_hook(module, args, kwargs, out):
        calls.append(torch.is_grad_enabled())

    h = student.register_forward_hook(counting_hook, with_kwargs=True)
    try:
        cache = student.new_cache(CacheConfig(window=6), batch_size=1, latent_hw=(6, 8))
        out = rollout(student, text, noise, cache, num_frames=9, chunk_frames=3, timesteps=TS,
                      grad=GradPolicy(mode="exit_step", exit_step=2, chunks=(1,)))
    finally:
        h.remove()
    # 3 chunks x (3 steps up to the exit step + 1 refresh) forwards; only chunk 1's exit step had grad.
    assert len(calls) == 12
    assert [i for i, g in enumerate(calls) if g] == [4 + 2]
    assert out.requires_grad
    # chunks 0 and 2 contribute nothing: no parameter gets gradient from them
    student.zero_grad()
    (out[:, :, :3].sum() + out[:, :, 6:].sum()).backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters())
    out[:, :, 3:6].square().mean().backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    student.zero_grad()
    with torch.no_grad():
        none = rollout(student, text, noise, student.new_cache(CacheConfig(window=6), batch_size=1, latent_hw=(6, 8)),
                       num_frames=9, chunk_frames=3, timesteps=TS)
    assert not none.requires_grad


def test_gradient_checkpointing_gives_the_same_gradients_despite_cache_eviction(student):
    """Checkpointed blocks are recomputed during backward, after later chunks have rolled the cache."""
    grads = []
    for ckpt in (False, True):
        text, noise = _setup(student)  # fresh text graph per backward
        student.gradient_checkpointing = ckpt
        student.zero_grad()
        cache = student.new_cache(CacheConfig(window=6), batch_size=1, latent_hw=(6, 8))
        out = rollout(student, text, noise, cache, num_frames=15, chunk_frames=3, timesteps=TS,
                      grad=GradPolicy(mode="exit_step", exit_step=-1, chunks=(1, 2)))
        (out[:, :, 3:9] ** 2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None})
    student.gradient_checkpointing = False
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5), n
