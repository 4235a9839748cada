import torch

from sfpp.rollout_config import nominal_steps
from sfpp.schedule import add_noise, few_step_timesteps, x0_from_flow


def test_default_schedule_is_self_forcing_warped_list():
    ts = few_step_timesteps([1000, 750, 500, 250], 5.0)
    assert torch.allclose(ts, torch.tensor([1000.0, 937.5, 833.3333, 625.0]), atol=1e-3)
    assert nominal_steps(4) == (1000, 750, 500, 250)


def test_flow_parametrisation_round_trip():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 3, 4, 5, 6, generator=g), torch.randn(2, 3, 4, 5, 6, generator=g)
    t = torch.tensor([[900.0, 600.0, 300.0, 50.0]] * 2)  # per frame
    xt = add_noise(x0, eps, t)
    assert torch.allclose(x0_from_flow(xt, eps - x0, t), x0, atol=1e-5)
    assert torch.allclose(add_noise(x0, eps, 1000.0), eps)
