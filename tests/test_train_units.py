"""Units of the extended (Self-Forcing++) stage: window sampling, backward noise, N curriculum, gradient flow."""

from collections import Counter

import pytest
import torch

from sfpp.train.sampling import backward_noise, n_max_at, sample_rollout_length, sample_window_start


def test_window_start_uniform_over_every_position():
    g = torch.Generator().manual_seed(0)
    N, K, draws = 30, 6, 25000
    counts = Counter(sample_window_start(g, N, K) for _ in range(draws))
    assert sorted(counts) == list(range(N - K + 1))  # every start 0..N-K reachable, nothing else
    expected = draws / (N - K + 1)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 55  # 24 dof: p ~ 3e-4 would be ~55; a biased sampler lands far above
    assert sample_window_start(g, K, K) == 0


def test_window_start_beta12_prefers_early_windows_but_reaches_all():
    g = torch.Generator().manual_seed(1)
    starts = [sample_window_start(g, 30, 6, "beta12") for _ in range(20000)]
    assert min(starts) == 0 and max(starts) == 24
    assert sum(starts) / len(starts) < 24 / 2 * 0.8  # mean of Beta(1, 2) is 1/3


@pytest.mark.parametrize("mode", ["uniform", "beta12"])
def test_window_start_lies_on_the_chunk_grid_and_reaches_every_chunk(mode):
    """Training windows start where inference chunks start: multiples of the chunk size, 0..N-K."""
    g = torch.Generator().manual_seed(4)
    starts = Counter(sample_window_start(g, 30, 6, mode, chunk=3) for _ in range(6000))
    assert sorted(starts) == list(range(0, 25, 3))  # all 9 chunk-aligned starts, nothing else
    if mode == "uniform":
        expected = 6000 / 9
        assert sum((c - expected) ** 2 / expected for c in starts.values()) < 27  # 8 dof
    with pytest.raises(ValueError, match="whole number of chunks"):
        sample_window_start(g, 31, 6, mode, chunk=3)


def test_rollout_length_whole_chunks_between_k_and_nmax_and_ramp():
    g = torch.Generator().manual_seed(2)
    ns = {sample_rollout_length(g, k=6, n_max=18, chunk=3) for _ in range(2000)}
    assert ns == {6, 9, 12, 15, 18}
    assert n_max_at(0, k=6, n_max=30, n_max_start=None, ramp_steps=10, chunk=3) == 6
    assert n_max_at(5, k=6, n_max=30, n_max_start=None, ramp_steps=10, chunk=3) == 18
    assert n_max_at(99, k=6, n_max=30, n_max_start=None, ramp_steps=10, chunk=3) == 30
    assert n_max_at(0, k=6, n_max=30, n_max_start=None, ramp_steps=0, chunk=3) == 30


def test_backward_noise_formula():
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 4, 3, 5, 6, generator=g), torch.randn(2, 4, 3, 5, 6, generator=g)
    for t in (1000.0, 937.5, 625.0):
        s = t / 1000
        assert torch.allclose(backward_noise(x0, eps, t), (1 - s) * x0 + s * eps, atol=1e-6)
    assert torch.equal(backward_noise(x0, eps, 1000.0), eps)


@pytest.fixture(scope="module")
def extended_trainer(tmp_path_factory):
    from accelerate import Accelerator

    from sfpp.config_io import load_config
    from sfpp.train.config import DistillConfig
    from sfpp.train.trainer import Distiller
    from tests.train_helpers import write_config

    d = tmp_path_factory.mktemp("ext")
    cfg_path = write_config(d, rollout={"window": 6, "exit_step": "last"})
    cfg = load_config(DistillConfig, cfg_path)
    return Distiller(cfg, stage="extended", out=d / "run", total_steps=1, accelerator=Accelerator(cpu=True),
                     config_dir=d, resume=False)


def test_extended_gradient_only_through_window_exit_step_forwards(extended_trainer):
    tr = extended_trainer
    s = tr.nets.student
    log = []
    hook = s.register_forward_hook(
        lambda m, args, kwargs, out: log.append((kwargs["frame_start"], torch.is_grad_enabled(), float(args[1].max()))),
        with_kwargs=True)
    try:
        draws = {"N": 18, "window_start": 9, "exit_step": 3, "renoise_step": 1}
        cond, _, _ = tr.dmd.batch(tr.position, 0)
        text = s.encode_text(cond)
        x = tr.dmd.sample(text, tr.dmd.noise(tr.step, 11, 0), draws, with_grad=True)
    finally:
        hook.remove()
    assert x.shape == (1, 16, 6, 4, 4) and x.requires_grad
    grad_calls = [(f0, t) for f0, g, t in log if g]
    # the window [9, 15) is two chunks (9, 12); each has exactly one grad forward, at the exit step (t = 625)
    assert grad_calls == [(9, 625.0), (12, 625.0)]
    # frames before the window were generated (context) without gradient, in the chunks inference uses
    prefix_starts = sorted({f0 for f0, g, _ in log if f0 < 9})
    assert prefix_starts == [0, 3, 6]
    # the re-denoise starts from the backward-noise level (index 1 = 937.5), not from pure noise
    window_passes = [t for f0, g, t in log if f0 == 9]
    assert 937.5 in window_passes and window_passes.count(1000.0) == 1  # the clean rollout pass only
    s.zero_grad()
    x.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in s.parameters())
    # the teacher and critic never receive gradient from the generator sample
    assert all(p.grad is None for p in tr.nets.teacher.parameters())


def test_renoise_level_zero_skips_the_clean_window_pass(extended_trainer):
    """At sigma = 1 the backward-noised window is the noise itself: the clean pass is not computed."""
    tr = extended_trainer
    s = tr.nets.student
    calls = []
    hook = s.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["frame_start"]), with_kwargs=True)
    try:
        cond, _, _ = tr.dmd.batch(tr.position, 0)
        text = s.encode_text(cond)
        with torch.no_grad():
            x = tr.dmd.sample(text, tr.dmd.noise(tr.step, 11, 0), {"N": 12, "window_start": 6, "exit_step": 3,
                                                                    "renoise_step": 0}, with_grad=False)
            hook.remove()
            # the same window from fresh noise (no backward noise at all) is the same sample
            cache = s.new_cache(tr.cache_cfg, batch_size=1, latent_hw=tr.latent_hw)
            from sfpp.rollout import rollout
            from sfpp.train.sampling import RENOISE_STEP

            noise = tr.dmd.noise(tr.step, 11, 0)
            rollout(s, text, noise, cache, num_frames=6, chunk_frames=3, timesteps=tr.timesteps, keep=False)
            ref = rollout(s, text, noise, cache, num_frames=6, chunk_frames=3, timesteps=tr.timesteps, frame_start=6,
                          init=lambda f0, n: noise.sample(f0, n, step=RENOISE_STEP))
    finally:
        hook.remove()
    # prefix: 2 chunks x (4 steps + refresh); window: 2 chunks x (4 steps + refresh), no clean pass
    assert calls.count(6) == 5 and calls.count(9) == 5 and len(calls) == 20
    assert torch.equal(x, ref)


def test_generator_and_critic_updates_change_weights(extended_trainer):
    tr = extended_trainer
    before_s = {k: v.clone() for k, v in tr.nets.student.state_dict().items()}
    before_c = {k: v.clone() for k, v in tr.nets.critic.state_dict().items()}
    before_t = {k: v.clone() for k, v in tr.nets.teacher.state_dict().items()}
    m = tr.train_step()
    assert m["gen_loss"] > 0 and m["critic_loss"] > 0 and 6 <= m["N"] <= 18
    assert any(not torch.equal(v, tr.nets.student.state_dict()[k]) for k, v in before_s.items())
    assert any(not torch.equal(v, tr.nets.critic.state_dict()[k]) for k, v in before_c.items())
    assert all(torch.equal(v, tr.nets.teacher.state_dict()[k]) for k, v in before_t.items())
    assert tr.ema.state is not None and tr.step == 1


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_ode_clean_context_feeds_final_states_and_drops_them_from_the_loss(tmp_path, p):
    """[ode] clean_context: earlier chunks given clean (t = 0, the final ODE state), loss on the rest."""
    from accelerate import Accelerator

    from sfpp.config_io import load_config
    from sfpp.schedule import x0_from_flow
    from sfpp.train.config import DistillConfig
    from sfpp.train.trainer import Distiller
    from tests.train_helpers import write_config

    cfg_path = write_config(tmp_path, ode={"num_trajectories": 2, "teacher_steps": 4, "shard_size": 2, "lr": 1e-4,
                                           "base_steps": 1, "clean_context": p},
                            run={"stages": ["ode"], "batch_size": 2, "checkpoint_every": 1, "sample_every": 0})
    cfg = load_config(DistillConfig, cfg_path)
    tr = Distiller(cfg, stage="ode", out=tmp_path / "run", total_steps=1, accelerator=Accelerator(cpu=True),
                   config_dir=tmp_path, resume=False)
    tr.ode.ensure_trajectories()
    s = tr.nets.student
    seen = {}
    orig = s.forward_full

    def spy(x, t, text, **kw):
        out = orig(x, t, text, **kw)
        seen.update(x=x.detach().clone(), t=t.detach().clone(), flow=out.detach().clone())
        return out

    s.forward_full = spy
    try:
        m = tr.ode.update(tr.opt_g, tr.sched_g, tr.ema, step=tr.step, position=tr.position)
    finally:
        del s.forward_full
    x, t, flow = seen["x"], seen["t"], seen["flow"]  # (B, C, K, H, W), (B, K)
    states = torch.stack([tr.ode.store.get(i)[0] for i in range(2)])  # (2, S+1, C, K, H, W)
    final = states[:, -1]
    last = slice(tr.K - tr.chunk, tr.K)  # the last chunk is never clean
    assert (t[:, last] > 0).all()

    def source(b):  # the trajectory batch item b was drawn from (matched on its noisy last chunk)
        return next(j for j in range(2) for k in range(states.shape[1]) if torch.equal(states[j, k, :, last], x[b, :, last]))

    idx = [source(b) for b in range(2)]
    if p == 1.0:
        early = slice(0, tr.K - tr.chunk)
        assert (t[:, early] == 0).all()
        # each clean chunk is exactly the final state of its own trajectory
        for b in range(2):
            assert torch.equal(x[b, :, early], final[idx[b], :, early])
    else:
        assert (t > 0).all()
    # the reported loss is the MSE over the frames that were not given clean
    x0 = x0_from_flow(x, flow, t)
    target = final[idx]
    keep = t > 0  # (B, K)
    expect = ((x0 - target) ** 2).permute(0, 2, 1, 3, 4)[keep].mean()
    assert m["ode_loss"] == pytest.approx(float(expect), rel=1e-5)


def test_budget_stretches_the_rollout_length_ramp(tmp_path):
    """--budget Nx stretches [extended].ramp_steps N times (the ramp keeps its share of the run), and the
    draws follow the stretched ramp: with ramp 2 -> 4 steps, N_max at step 2 is 12 (K=6 to 18), not 18."""
    from accelerate import Accelerator

    from sfpp.config_io import load_config
    from sfpp.train.config import DistillConfig
    from sfpp.train.trainer import Distiller
    from tests.train_helpers import write_config

    cfg = load_config(DistillConfig, write_config(tmp_path, rollout={"window": 6, "exit_step": "last"}))
    assert (cfg.extended.ramp_steps, cfg.extended.n_max) == (2, 18)
    longest = {}
    for budget in (1.0, 2.0):
        tr = Distiller(cfg, stage="extended", out=tmp_path / f"run{budget}", total_steps=round(3 * budget),
                       accelerator=Accelerator(cpu=True), config_dir=tmp_path, resume=False, budget=budget)
        assert tr.cfg.extended.ramp_steps == round(2 * budget)
        longest[budget] = {step: max(tr.dmd.draws(step, p)["N"] for p in range(64)) for step in (1, 2, 4)}
    assert longest[1.0] == {1: 12, 2: 18, 4: 18}
    assert longest[2.0] == {1: 9, 2: 12, 4: 18}
