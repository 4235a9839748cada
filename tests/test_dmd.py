"""DMD on a problem with a closed-form teacher: Gaussian data, whose denoiser is exact."""

import math

import pytest
import torch

from sfpp.schedule import add_noise, x0_from_flow
from sfpp.train.dmd import critic_flow_loss, dmd_direction, dmd_loss, sample_dmd_timesteps

D = 3


def gaussian_x0(x_t, s, mean, cov):
    """Exact E[x0 | x_t] for x0 ~ N(mean, cov), x_t = (1-s) x0 + s eps. x_t: (N, D), s: (N, 1)."""
    eye = torch.eye(D, dtype=x_t.dtype)
    sv = s.view(-1, 1, 1)
    c = (1 - sv) ** 2 * cov + sv**2 * eye  # (N, D, D)
    r = torch.linalg.solve(c, (x_t - (1 - s) * mean).unsqueeze(-1)).squeeze(-1)  # (N, D)
    return mean + (1 - s) * r @ cov.T


def test_dmd_loss_gradient_is_the_normalised_direction():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 5, 6, generator=g, requires_grad=True)
    real, fake = torch.randn(2, 4, 3, 5, 6, generator=g), torch.randn(2, 4, 3, 5, 6, generator=g)
    grad, norm = dmd_direction(x.detach(), real, fake)
    dmd_loss(x, grad).backward()
    expected = (fake - real) / (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True) / x.numel()
    assert torch.allclose(x.grad.float(), expected, atol=1e-7)
    assert norm.shape == (2,)


def test_dmd_gradient_matches_analytic_kl_gradient_for_gaussians():
    """With exact real/fake denoisers, the DMD update of the generator's mean b is the gradient
    of KL(N_t(b) || N_t(mu)) between the noised distributions: (1-s)^2 C^-1 (b - mu)."""
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    A = torch.tensor([[0.8, 0.1, 0.0], [0.0, 0.5, 0.2], [0.1, 0.0, 1.2]], dtype=torch.float64)
    cov = A @ A.T
    b = torch.tensor([0.3, 0.4, -1.0], dtype=torch.float64, requires_grad=True)
    for s in (0.2, 0.5, 0.9):
        z, eps = torch.randn(5, D, dtype=torch.float64), torch.randn(5, D, dtype=torch.float64)
        x = z @ A.T + b  # generator with the target's covariance but its own mean
        x_t = (1 - s) * x + s * eps
        sv = torch.full((5, 1), s, dtype=torch.float64)
        real = gaussian_x0(x_t.detach(), sv, mu, cov)
        fake = gaussian_x0(x_t.detach(), sv, b.detach(), cov)
        # unnormalised DMD: score difference (1-s)/s^2 (fake - real), chained through dx_t/db = (1-s)
        if b.grad is not None:
            b.grad = None
        (((1 - s) / s**2) * (fake - real) * x_t).sum(dim=1).mean().backward()
        c = (1 - s) ** 2 * cov + s**2 * torch.eye(D, dtype=torch.float64)
        analytic = (1 - s) ** 2 * torch.linalg.solve(c, (b - mu).detach())
        assert torch.allclose(b.grad, analytic, atol=1e-10), (s, b.grad, analytic)


class LinearGenerator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.eye(D) * 0.3)
        self.b = torch.nn.Parameter(torch.zeros(D))

    def forward(self, z):
        return z @ self.A.T + self.b


class GaussianCritic(torch.nn.Module):
    """A fake-score network that can represent any Gaussian: learnable mean and covariance factor."""

    def __init__(self):
        super().__init__()
        self.m = torch.nn.Parameter(torch.zeros(D))
        self.L = torch.nn.Parameter(torch.eye(D) * 0.3)

    def x0(self, x_t, s):
        return gaussian_x0(x_t, s, self.m, self.L @ self.L.T)

    def flow(self, x_t, s):  # v = (x_t - x0) / s
        return (x_t - self.x0(x_t, s)) / s


def test_dmd_trains_a_generator_to_the_target_mean_and_covariance():
    """Generator and critic trained with sfpp's DMD and critic losses (ratio 5:1, AdamW beta1 = 0)
    converge to the target Gaussian: mean within 0.1, covariance within 0.15 (Frobenius)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs would dominate
    try:
        _train_gaussian()
    finally:
        torch.set_num_threads(threads)


def _train_gaussian():
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0, 0.5])
    A = torch.tensor([[0.8, 0.0, 0.0], [0.3, 0.5, 0.0], [0.1, -0.2, 1.0]])
    cov = A @ A.T
    gen, critic = LinearGenerator(), GaussianCritic()
    g_opt = torch.optim.AdamW(gen.parameters(), lr=2e-2, betas=(0.0, 0.999), weight_decay=0.0)
    c_opt = torch.optim.AdamW(critic.parameters(), lr=5e-2, betas=(0.0, 0.999), weight_decay=0.0)
    rng = torch.Generator().manual_seed(1)
    B = 64
    for step in range(400):
        for _ in range(5):  # critic: flow matching on generator samples
            with torch.no_grad():
                x = gen(torch.randn(B, D))
            t = sample_dmd_timesteps(B, rng, min_step=0.02, max_step=0.98, shift=5.0)
            s = (t / 1000).view(B, 1)
            eps = torch.randn(B, D)
            loss_c = critic_flow_loss(critic.flow((1 - s) * x + s * eps, s), eps, x)
            c_opt.zero_grad()
            loss_c.backward()
            c_opt.step()
        x = gen(torch.randn(B, D))
        t = sample_dmd_timesteps(B, rng, min_step=0.02, max_step=0.98, shift=5.0)
        s = (t / 1000).view(B, 1)
        x_t = ((1 - s) * x + s * torch.randn(B, D)).detach()
        with torch.no_grad():
            real = gaussian_x0(x_t, s, mu, cov)
            fake = critic.x0(x_t, s)
        # per-sample normalisation over the feature dim, as for videos over (C, F, H, W)
        grad, _ = dmd_direction(x.detach(), real, fake)
        g_opt.zero_grad()
        dmd_loss(x, grad).backward()
        g_opt.step()
    with torch.no_grad():
        cov_gen = gen.A @ gen.A.T
        mean_err = (gen.b - mu).norm().item()
        cov_err = (cov_gen - cov).norm().item()
    assert mean_err < 0.1, mean_err
    assert cov_err < 0.15, cov_err


def test_timestep_sampling_is_shifted_and_clamped():
    t = sample_dmd_timesteps(20000, torch.Generator().manual_seed(0), min_step=0.02, max_step=0.98, shift=5.0)
    assert t.min() >= 20 and t.max() <= 980
    # shift 5 pushes mass to high noise: median of shift(u) for u~U(0,1) is 5*0.5/(1+4*0.5) = 833
    assert abs(t.median().item() - 833.3) < 15


def test_flow_and_x0_consistent_with_schedule():
    x0, eps = torch.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 4, 5, 6)
    xt = add_noise(x0, eps, 400.0)
    assert torch.allclose(x0_from_flow(xt, eps - x0, 400.0), x0, atol=1e-5)
    assert math.isclose(critic_flow_loss(eps - x0, eps, x0).item(), 0.0, abs_tol=1e-12)


def _linear_nets():
    """Three affine 'networks' v = a x_t + b t/1000 (critic, teacher cond, teacher uncond): known outputs."""
    def net(a, b):
        return lambda x_t, t: a * x_t + b * (t.float() / 1000).view(-1, 1, 1, 1, 1)
    return net(0.9, 0.2), net(1.1, -0.3), net(0.7, 0.5)


@pytest.mark.parametrize("grid", ["exact", "self-forcing"])
def test_dmd_and_critic_steps_use_the_chosen_sigmas(grid):
    """[dmd] sigma_grid: exact uses sigma = t / 1000 everywhere; self-forcing the reference's grids.

    Reference values (from the released Self-Forcing scheduler, tests/test_sigma_grid.py): at t = 20
    (the clamp) the shift-5 noising sigma is 0.019685039296746254 and the critic sees its flow scaled
    by sigma8 / sigma5 = 1.1941233828444906; at t = 681.8181762695312 the networks get bf16(t) = 680.
    """
    from sfpp.train.dmd import critic_step_loss, dmd_step
    from sfpp.train.sigma_grid import noise_sigma, score_sigma

    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    t = torch.tensor([20.0, 681.8181762695312])
    fake, cond, uncond = _linear_nets()
    seen = []

    def spy(f):
        return lambda x_t, tn: (seen.append(tn.clone()), f(x_t, tn))[1]

    direction, norm = dmd_step(x, eps, t, fake_flow=spy(fake), real_flow_cond=cond, real_flow_uncond=uncond,
                               guidance_scale=4.0, sigma_grid=grid, bf16=True)
    s_noise = noise_sigma(t, grid).float().view(-1, 1, 1, 1, 1)
    s_score = score_sigma(t, grid, bf16=True).float().view(-1, 1, 1, 1, 1)
    t_net = t if grid == "exact" else torch.tensor([20.0, 680.0])
    assert torch.equal(seen[0], t_net)
    x_t = (1 - s_noise) * x + s_noise * eps
    fake_x0 = x_t - s_score * fake(x_t, t_net)
    real_v = uncond(x_t, t_net) + 4.0 * (cond(x_t, t_net) - uncond(x_t, t_net))
    real_x0 = x_t - s_score * real_v
    want = (fake_x0 - real_x0) / (x - real_x0).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    assert torch.allclose(direction, want, atol=1e-5)
    loss = critic_step_loss(x, eps, t, critic_flow=fake, sigma_grid=grid, bf16=True)
    scale = torch.tensor([1.1941233828444906, float(s_score[1] / s_noise[1])]) if grid == "self-forcing" else torch.ones(2)
    want_loss = ((scale.view(-1, 1, 1, 1, 1) * fake(x_t, t_net) - (eps - x)) ** 2).mean()
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-5)
    if grid == "self-forcing":
        assert s_noise[0].item() == pytest.approx(0.019685039296746254, rel=1e-7)
        # the two conventions really differ (at small t by about 19%)
        d_exact, _ = dmd_step(x, eps, t, fake_flow=fake, real_flow_cond=cond, real_flow_uncond=uncond,
                              guidance_scale=4.0)
        assert (d_exact - direction).abs().max().item() > 1e-3


def test_distill_with_the_reference_sigma_grids_runs_and_differs(tmp_path):
    """`[dmd] sigma_grid = "self-forcing"` trains end to end and changes the losses."""
    import json

    from tests.train_helpers import run, write_config

    losses = {}
    for grid in ("exact", "self-forcing"):
        cfg = write_config(tmp_path / grid, dmd={"critic_ratio": 1, "sigma_grid": grid},
                           run={"stages": ["self-forcing"]}, self_forcing={"base_steps": 1})
        r = run("distill", "--config", cfg, "--out", tmp_path / grid / "out")
        assert r.exit_code == 0, r.output
        row = json.loads((tmp_path / grid / "out" / "self-forcing" / "log.jsonl").read_text().splitlines()[0])
        losses[grid] = (row["gen_loss"], row["critic_loss"])
    assert losses["exact"] != losses["self-forcing"]
