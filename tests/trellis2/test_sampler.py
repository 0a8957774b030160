"""Flow Euler sampler: shifted grids, forward counts, CFG (+ rescale), analytic convergence, multiview."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from know3d_cli.trellis2.sampler import (
    SamplerSettings,
    cfg_velocity,
    guided_velocity,
    rescale_guidance,
    sample,
    step,
    timesteps,
)
from know3d_cli.trellis2.sparse.tensor import SparseTensor

# the released pipeline.json values
SS = SamplerSettings(12, guidance_strength=7.5, guidance_rescale=0.7, guidance_interval=(0.6, 1.0), rescale_t=5.0)
SHAPE = SamplerSettings(12, guidance_strength=7.5, guidance_rescale=0.5, guidance_interval=(0.6, 1.0), rescale_t=3.0)
TEX = SamplerSettings(12, guidance_strength=1.0, guidance_rescale=0.0, guidance_interval=(0.6, 0.9), rescale_t=3.0)

GRID_S5 = [1, 0.982, 0.962, 0.938, 0.909, 0.875, 0.833, 0.781, 0.714, 0.625, 0.5, 0.313, 0]
GRID_S3 = [1, 0.971, 0.938, 0.9, 0.857, 0.808, 0.75, 0.682, 0.6, 0.5, 0.375, 0.214, 0]


@pytest.mark.parametrize("shift,table", [(5.0, GRID_S5), (3.0, GRID_S3)])
def test_shifted_grid_matches_spec_table(shift, table):
    grid = timesteps(12, shift)
    assert len(grid) == 13 and grid[0] == 1.0 and grid[-1] == 0.0
    for got, want in zip(grid, table):
        assert abs(got - want) <= 5e-4 + 1e-12  # table rounded to 3 decimals
    assert timesteps(4, 1.0) == [1.0, 0.75, 0.5, 0.25, 0.0]


def counting_velocity():
    calls = []

    def velocity(x, t_model, cond):
        calls.append((float(t_model[0]), cond))
        return torch.zeros_like(x)

    return velocity, calls


@pytest.mark.parametrize("settings,forwards,guided", [(SS, 22, 10), (SHAPE, 21, 9), (TEX, 12, 0)])
def test_forward_counts_of_released_settings(settings, forwards, guided):
    velocity, calls = counting_velocity()
    result = sample(velocity, torch.randn(1, 2, 3), "pos", "neg", settings)
    assert result.forwards == forwards == len(calls) == settings.num_forwards()
    assert sum(1 for _, cond in calls if cond == "neg") == guided
    assert calls[0][0] == 1000.0  # model time is 1000 t
    # two views: every step runs both, the negative stays shared
    velocity, calls = counting_velocity()
    assert sample(velocity, torch.randn(1, 2, 3), ["a", "b"], "neg", settings).forwards == 24 + guided
    assert settings.num_forwards(2) == 24 + guided


def exact_velocity(x0: torch.Tensor, sigma_min: float = 1e-5):
    """The flow's conditional velocity towards a single known x0: v = (1 - s) eps - x0 with eps solved from x_t."""

    def velocity(x, t_model, cond):
        t = float(t_model[0]) / 1000.0
        feats = x.feats if isinstance(x, SparseTensor) else x
        target = x0.feats if isinstance(x0, SparseTensor) else x0
        eps = (feats - (1 - t) * target) / (sigma_min + (1 - sigma_min) * t)
        v = (1 - sigma_min) * eps - target
        return x.replace(v) if isinstance(x, SparseTensor) else v

    return velocity


@pytest.mark.parametrize("settings", [TEX, SHAPE, SS])
def test_analytic_field_integrates_to_x0(settings):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 3, generator=gen)
    noise = torch.randn(2, 4, 3, 3, generator=gen)
    # identical conditional and unconditional fields: CFG and rescale leave the exact velocity unchanged
    result = sample(exact_velocity(x0), noise, "pos", "neg", settings)
    torch.testing.assert_close(result.x, x0, atol=1e-4, rtol=1e-4)
    assert result.x.dtype == torch.float32


def test_analytic_field_on_sparse_tensor():
    gen = torch.Generator().manual_seed(1)
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 2, 1], [1, 1, 1, 1], [1, 2, 0, 3]]).int()
    x0 = SparseTensor(torch.randn(5, 3, generator=gen), coords)
    noise = x0.replace(torch.randn(5, 3, generator=gen))
    result = sample(exact_velocity(x0), noise, "pos", "neg", SHAPE)
    assert isinstance(result.x, SparseTensor) and result.x.coords is coords
    torch.testing.assert_close(result.x.feats, x0.feats, atol=1e-4, rtol=1e-4)
    assert result.forwards == 21


def test_multiview_identical_views_equal_single_view():
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(1, 3, 4, generator=gen)
    weights = {"front": torch.randn(4, 4, generator=gen), "back": torch.randn(4, 4, generator=gen)}

    def velocity(x, t_model, cond):
        return torch.tanh(x @ weights[cond] + 1e-3 * t_model[:, None, None]) if cond != "neg" else 0.3 * x

    single = sample(velocity, noise, "front", "neg", SS)
    double = sample(velocity, noise, ["front", "front"], "neg", SS)
    assert torch.equal(double.x, single.x)
    assert double.forwards == single.forwards + 12

    # two different views: every step uses the mean of the two conditional predictions
    def mean_velocity(x, t_model, cond):
        if cond == "both":
            return 0.5 * (velocity(x, t_model, "front") + velocity(x, t_model, "back"))
        return velocity(x, t_model, cond)

    averaged = sample(velocity, noise, ["front", "back"], "neg", SS)
    torch.testing.assert_close(averaged.x, sample(mean_velocity, noise, "both", "neg", SS).x, atol=1e-6, rtol=1e-6)


def test_cfg_and_rescale_formulas():
    gen = torch.Generator().manual_seed(3)
    x_t, v_pos, v_neg = (torch.randn(2, 5, 4, generator=gen) for _ in range(3))
    t, g, r, s = 0.8, 7.5, 0.7, 1e-5
    v_cfg = cfg_velocity(v_pos, v_neg, g)
    torch.testing.assert_close(v_cfg, g * v_pos + (1 - g) * v_neg)

    sigma = s + (1 - s) * t
    x0_pos = (1 - s) * x_t - sigma * v_pos
    x0_cfg = (1 - s) * x_t - sigma * v_cfg
    ratio = x0_pos.flatten(1).std(1) / x0_cfg.flatten(1).std(1)
    x0 = r * x0_cfg * ratio[:, None, None] + (1 - r) * x0_cfg
    want = ((1 - s) * x_t - x0) / sigma
    torch.testing.assert_close(rescale_guidance(x_t, v_pos, v_cfg, t, r, s), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided_velocity(x_t, t, v_pos, v_neg, SS), want, atol=1e-5, rtol=1e-5)
    # r = 0 is plain CFG
    torch.testing.assert_close(rescale_guidance(x_t, v_pos, v_cfg, t, 0.0, s), v_cfg, atol=1e-5, rtol=1e-5)


def test_sparse_rescale_uses_per_sample_std():
    gen = torch.Generator().manual_seed(4)
    dense = [torch.randn(2, 6, 3, generator=gen) for _ in range(3)]  # x_t, v_pos, v_cfg, batch 2 x 6 voxels
    coords = torch.cat([torch.zeros(6, 1), torch.arange(6)[:, None].repeat(1, 3)], dim=1)
    coords = torch.cat([coords, coords + torch.tensor([1, 0, 0, 0])]).int()
    sparse = [SparseTensor(d.reshape(12, 3), coords) for d in dense]
    got = rescale_guidance(*sparse, t=0.7, guidance_rescale=0.5).feats
    want = rescale_guidance(*dense, t=0.7, guidance_rescale=0.5).reshape(12, 3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_euler_step_is_fp32():
    x = torch.ones(2, 3, dtype=torch.float32)
    v = torch.full((2, 3), 2.0, dtype=torch.bfloat16)
    out = step(x, v, 0.75, 0.5)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((2, 3), 0.5))


@pytest.mark.parametrize("changes", [{"steps": 0}, {"rescale_t": 0.0}, {"rescale_t": -1.0}])
def test_settings_reject_impossible_values(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):
        replace(SS, **changes)


def test_guidance_without_negative_is_an_error():
    velocity, _ = counting_velocity()
    with pytest.raises(ValueError):
        sample(velocity, torch.zeros(1, 2), "pos", None, SS)
    assert sample(velocity, torch.zeros(1, 2), "pos", None, TEX).forwards == 12  # g = 1 never needs it


def test_zero_guidance_runs_only_the_unconditional_pass_without_rescale():
    """As the reference: at g = 0 a guided step is the negative prediction alone (no conditional pass, no rescale);
    outside the interval the step stays conditional."""
    settings = replace(SS, guidance_strength=0.0)  # interval (0.6, 1.0), rescale 0.7
    calls = []

    def velocity(x, t_model, cond):
        calls.append(cond)
        return torch.full_like(x, 2.0 if cond == "pos" else -1.0)

    result = sample(velocity, torch.zeros(1, 3), ["pos", "pos"], "neg", settings)
    guided = sum(settings.guidance_at(t) for t in timesteps(12, 5.0)[:-1])
    assert guided == 10 and calls.count("neg") == guided and calls.count("pos") == 2 * (12 - guided)
    assert result.forwards == len(calls) == settings.num_forwards(2) == guided + 2 * (12 - guided)
    grid = timesteps(12, 5.0)
    expected = sum((t - t_prev) * (-(-1.0) if settings.guidance_at(t) else -2.0) for t, t_prev in zip(grid, grid[1:]))
    torch.testing.assert_close(result.x, torch.full((1, 3), expected), atol=1e-6, rtol=0)
