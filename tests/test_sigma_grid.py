"""`sfpp.train.sigma_grid` against numbers produced by the reference's own code.

Reference: guandeh17/Self-Forcing at commit 33593df3e81fa3ec10239271dd2c100facac6de1. The pinned
numbers below came from running, in a scratch folder outside this repository, that commit's
utils/scheduler.py (FlowMatchScheduler, imported as is) and the two conversion methods of
utils/wan_wrapper.py WanDiffusionWrapper (_convert_flow_pred_to_x0, _convert_x0_to_flow_pred, taken
out of the file with `ast` so that its wan/ imports are not needed), with torch 2.14.1 on CPU:

    git --git-dir=<mirror> archive HEAD utils/scheduler.py utils/wan_wrapper.py model/dmd.py | tar x -C /tmp/sf
    python /tmp/sf/ref_values.py   # schedulers built as in WanDiffusionWrapper.__init__:
                                   #   FlowMatchScheduler(shift=s, sigma_min=0.0, extra_one_step=True)
                                   #   .set_timesteps(1000, training=True), s = 5.0 (generator) / 8.0 (scores)
                                   # noise sigma  = add_noise(x0=0, eps=1, t) on the shift-5 scheduler
                                   # score sigma  = -_convert_flow_pred_to_x0(flow=1, xt=0, t) on shift 8
                                   # flow scale   = _convert_x0_to_flow_pred(shift-5 scheduler, that x0, xt=0, t)
                                   # t sampled as model/dmd.py: 5 (k/1000) / (1 + 4 (k/1000)) * 1000, clamp [20, 980]
    python /tmp/sf/ref_snap.py     # nearest-grid indices / timesteps / sigmas, printed with repr()

The score wrappers' timesteps were fed as bfloat16 where marked "bf16": with the released DMD config
(mixed_precision: true) FSDP's default cast_root_forward_inputs casts them on entry (checked with a
one-process gloo FSDP on CPU: 871.2121 -> 872.0, 137.9004 -> 138.0).
"""

import pytest
import torch

from sfpp.train.sigma_grid import (
    MODES,
    bf16_timestep,
    critic_flow_scale,
    critic_flow_sigma,
    flowmatch_grid,
    network_timestep,
    noise_sigma,
    score_sigma,
    sigma_plan,
    snap,
)

RTOL = 1e-6  # grid values are float32; neighbouring grid points differ by >= 2e-4 relative


def close(actual, expected):
    torch.testing.assert_close(actual.double(), torch.as_tensor(expected, dtype=torch.float64), rtol=RTOL, atol=0)


# ---- pinned reference values -------------------------------------------------------------------

T_PROBE = [20.0, 137.0, 500.0, 871.0, 872.0, 980.0]
SNAP5 = dict(
    t=[19.685039520263672, 137.90036010742188, 500.59954833984375, 871.2120971679688, 872.1281127929688,
       979.9048461914062],
    sigma=[0.019685039296746254, 0.13790036737918854, 0.5005995631217957, 0.8712121248245239,
           0.8721281290054321, 0.97990483045578],
)
SNAP8 = dict(
    t=[23.506364822387695, 134.1571044921875, 499.7186279296875, 871.136474609375, 872.0379028320312,
       980.0570068359375],
    sigma=[0.023506365716457367, 0.13415710628032684, 0.49971863627433777, 0.871136486530304,
           0.8720378875732422, 0.9800570011138916],
)

# timesteps the reference's DMD / critic steps actually draw, for k = 0, 5, 6, 7, 50, 300, 900, 999
T_SAMPLED = [20.0, 24.509801864624023, 29.296875, 34.046695709228516, 208.3333282470703, 681.8181762695312,
             978.2608642578125, 980.0]
SAMPLED_NOISE_SIGMA = [0.019685039296746254, 0.02450980618596077, 0.029296875, 0.03404669463634491,
                       0.2083333283662796, 0.6818181872367859, 0.97826087474823, 0.97990483045578]
SAMPLED_NET_T_BF16 = [20.0, 24.5, 29.25, 34.0, 208.0, 680.0, 980.0, 980.0]
SAMPLED_SCORE_SIGMA_BF16 = [0.023506365716457367, 0.023506365716457367, 0.031128406524658203,
                            0.031128406524658203, 0.20915034413337708, 0.6801619529724121, 0.9800570011138916,
                            0.9800570011138916]
SAMPLED_FLOW_SCALE_BF16 = [1.1941233828444906, 0.9590596326266271, 1.0625162760416667, 0.9142857142857143,
                           1.003921675775568, 0.9975708564315569, 1.001836040275171, 1.0001552912623575]
SAMPLED_FLOW_SCALE_F32 = [1.1941233828444906, 0.9590596326266271, 1.0625162760416667, 0.9142857142857143,
                          1.003921675775568, 0.9994885921518915, 0.9999903731876459, 1.0001552912623575]


def reference_draws() -> torch.Tensor:
    """All 1000 timesteps model/dmd.py can draw (float32, as the reference computes them)."""
    k = torch.arange(0, 1000, dtype=torch.long)
    return (5.0 * (k / 1000) / (1 + 4.0 * (k / 1000)) * 1000).clamp(20, 980)


# ---- grid and snapping -------------------------------------------------------------------------

@pytest.mark.parametrize("shift, first3, last3, sigma_last", [
    (5.0, [1000.0, 999.7998046875, 999.5994262695312], [14.822135925292969, 9.920635223388672, 4.9800801277160645],
     0.004980080295354128),
    (8.0, [1000.0, 999.8748779296875, 999.7495727539062], [23.506364822387695, 15.779092788696289, 7.944390296936035],
     0.007944390177726746),
])
def test_grid_matches_reference(shift, first3, last3, sigma_last):
    timesteps, sigmas = flowmatch_grid(shift)
    assert timesteps.shape == sigmas.shape == (1000,)
    assert timesteps.dtype == sigmas.dtype == torch.float32
    assert bool((timesteps[1:] < timesteps[:-1]).all())
    close(timesteps[:3], first3)
    close(timesteps[-3:], last3)
    close(sigmas[-1], sigma_last)
    close(sigmas[0], 1.0)
    torch.testing.assert_close(timesteps, sigmas * 1000)


@pytest.mark.parametrize("shift, ref", [(5.0, SNAP5), (8.0, SNAP8)])
def test_snap_matches_reference(shift, ref):
    t_grid, sigma = snap(torch.tensor(T_PROBE), shift)
    close(t_grid, ref["t"])
    close(sigma, ref["sigma"])


def test_snap_keeps_shape_and_handles_scalars():
    t = torch.tensor([[20.0, 137.0, 500.0], [871.0, 872.0, 980.0]])
    t_grid, sigma = snap(t, 8.0)
    assert t_grid.shape == sigma.shape == (2, 3)
    close(sigma.flatten(), SNAP8["sigma"])
    close(snap(137.0, 5.0)[1], SNAP5["sigma"][1])


# ---- "self-forcing" mode -----------------------------------------------------------------------

def test_self_forcing_mode_matches_reference_on_drawn_timesteps():
    t = torch.tensor(T_SAMPLED)
    close(noise_sigma(t, "self-forcing"), SAMPLED_NOISE_SIGMA)
    close(critic_flow_sigma(t, "self-forcing"), SAMPLED_NOISE_SIGMA)
    close(network_timestep(t, "self-forcing"), SAMPLED_NET_T_BF16)
    close(score_sigma(t, "self-forcing"), SAMPLED_SCORE_SIGMA_BF16)
    close(critic_flow_scale(t, "self-forcing"), SAMPLED_FLOW_SCALE_BF16)
    close(critic_flow_scale(t, "self-forcing", bf16=False), SAMPLED_FLOW_SCALE_F32)
    close(network_timestep(t, "self-forcing", bf16=False), T_SAMPLED)


def test_bf16_cast_of_timesteps():
    close(bf16_timestep(torch.tensor([871.0, 871.2121, 137.9004, 24.509801864624023])), [872.0, 872.0, 138.0, 24.5])
    # the score snap starts from bf16(t): 871 -> 872 -> shift-8 point 872.04, not 871.14
    close(score_sigma(torch.tensor([871.0]), "self-forcing"), [SNAP8["sigma"][4]])
    close(score_sigma(torch.tensor([871.0]), "self-forcing", bf16=False), [SNAP8["sigma"][3]])
    # noising is outside the FSDP wrappers: float32 t
    close(noise_sigma(torch.tensor([871.0]), "self-forcing"), [SNAP5["sigma"][3]])


def test_flow_scale_extremes():
    drawn = critic_flow_scale(reference_draws(), "self-forcing")
    assert drawn.max().item() == pytest.approx(1.1941233828444906, rel=1e-9)
    assert drawn.min().item() == pytest.approx(0.9142857142857143, rel=1e-9)
    assert reference_draws()[drawn.argmax()].item() == 20.0
    # any t in [20, 980] (float32 timesteps): the ratio spans [0.8024, 1.1941]; 1 / 0.8024 = 1.246
    t = torch.linspace(20.0, 980.0, 96001)
    r = critic_flow_scale(t, "self-forcing", bf16=False)
    assert r.max().item() == pytest.approx(1.1941233828444906, rel=1e-9)
    assert r.min().item() == pytest.approx(0.8023506164550781, rel=1e-9)
    assert 26.9 <= t[r.argmin()].item() <= 27.32
    assert 1 / r.min().item() == pytest.approx(1.2463, abs=1e-4)
    # the mismatch is a small-t effect: |r - 1| <= 20% above t = 20, 4.5% above 100, 2.1% above 200
    for t_min, bound in ((20.0, 0.198), (100.0, 0.045), (200.0, 0.021), (500.0, 0.004)):
        assert (r[t >= t_min] - 1).abs().max().item() < bound
    assert (r[t >= 100.0] - 1).abs().max().item() > 0.04


def test_sigma_plan_collects_the_functions():
    t = torch.tensor(T_SAMPLED).view(2, 4)
    plan = sigma_plan(t, "self-forcing")
    assert plan.mode == "self-forcing"
    for field in (plan.net_t, plan.noise, plan.score, plan.critic_flow, plan.flow_scale):
        assert field.shape == (2, 4)
    close(plan.net_t.flatten(), SAMPLED_NET_T_BF16)
    close(plan.noise.flatten(), SAMPLED_NOISE_SIGMA)
    close(plan.score.flatten(), SAMPLED_SCORE_SIGMA_BF16)
    close(plan.flow_scale.flatten(), SAMPLED_FLOW_SCALE_BF16)
    with pytest.raises(AttributeError):
        plan.noise = plan.score  # frozen


# ---- "exact" mode ------------------------------------------------------------------------------

def test_exact_mode_is_t_over_1000_everywhere():
    t = torch.rand(3, 7, generator=torch.Generator().manual_seed(0)) * 1000
    expected = t.double() / 1000
    for fn in (noise_sigma, score_sigma, critic_flow_sigma):
        s = fn(t, "exact")
        assert s.dtype == torch.float64 and s.shape == t.shape
        assert torch.equal(s, expected)
    assert torch.equal(critic_flow_scale(t, "exact"), torch.ones(3, 7, dtype=torch.float64))
    assert torch.equal(network_timestep(t, "exact"), t)
    plan = sigma_plan(t)  # "exact" is the default
    assert plan.mode == "exact" and torch.equal(plan.noise, expected) and torch.equal(plan.score, expected)
    # the two modes really differ where the reference's grids are coarse
    assert not torch.allclose(score_sigma(torch.tensor([20.0]), "self-forcing"), score_sigma(torch.tensor([20.0])))


def test_unknown_mode_is_rejected():
    assert MODES == ("exact", "self-forcing")
    for fn in (noise_sigma, score_sigma, critic_flow_sigma, network_timestep):
        with pytest.raises(ValueError, match="sigma mode"):
            fn(torch.tensor([500.0]), "selfforcing")
