"""The flow-matching objective: the forward process, the velocity target, t schedules and t bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from know3d_cli.train.flow_matching import FlowMatching, mse, per_sample_mse, t_bin_means
from know3d_cli.train_config import TimeSchedule, TimeScheduleConfig

SIGMA = 1e-5


def test_diffuse_ends_and_target():
    fm = FlowMatching(SIGMA, TimeSchedule.uniform)
    x0, noise = torch.randn(3, 8), torch.randn(3, 8)
    torch.testing.assert_close(fm.diffuse(x0, noise, torch.zeros(3, 1)), x0 + SIGMA * noise)
    torch.testing.assert_close(fm.diffuse(x0, noise, torch.ones(3, 1)), noise)
    t = torch.tensor([[0.3], [0.7], [0.5]])
    x_t = fm.diffuse(x0, noise, t)
    v = fm.target(x0, noise)
    # the target is the time derivative of x_t: x_t(t + h) - x_t(t) = h v
    torch.testing.assert_close(fm.diffuse(x0, noise, t + 1e-3) - x_t, 1e-3 * v, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(fm.model_time(torch.tensor([0.25])), torch.tensor([250.0]))


@pytest.mark.parametrize("name,mean,std", [("logit_normal", 1.0, 1.0), ("uniform", 0.0, 1.0)])
def test_t_schedules_follow_their_distribution(name, mean, std):
    fm = FlowMatching.from_config(SIGMA, TimeScheduleConfig(name, mean, std))
    gen = torch.Generator().manual_seed(0)
    t = np.array([fm.sample_t(gen) for _ in range(4000)])
    assert ((t > 0) & (t < 1)).all()
    if name == "uniform":
        assert abs(t.mean() - 0.5) < 0.02 and abs(t.std() - 12 ** -0.5) < 0.02
    else:
        logits = np.log(t / (1 - t))
        assert abs(logits.mean() - mean) < 0.06 and abs(logits.std() - std) < 0.05


def test_losses_and_t_bins():
    pred, target = torch.zeros(2, 3), torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    assert mse(pred, target).item() == pytest.approx(2.5)
    torch.testing.assert_close(per_sample_mse(pred, target), torch.tensor([1.0, 4.0]))
    rows = [slice(0, 1), slice(1, 2)]
    torch.testing.assert_close(per_sample_mse(pred, target, rows), torch.tensor([1.0, 4.0]))
    bins = t_bin_means(np.array([0.05, 0.08, 0.95, 1.0]), np.array([1.0, 3.0, 5.0, 7.0]))
    assert bins == {"0": 2.0, "9": 6.0}
