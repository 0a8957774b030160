"""Parity with upstream TRELLIS.2's `FlowEulerGuidanceIntervalSampler` on a toy velocity field (fp32, CPU)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from know3d_cli.trellis2.sampler import SamplerSettings, sample


class _EasyDict(dict):
    """What upstream's `easydict.EasyDict` does for the sampler: attribute access to keys."""

    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__


@pytest.fixture(scope="module")
def upstream_sampler():
    saved = sys.modules.get("easydict")
    shim = types.ModuleType("easydict")
    shim.EasyDict = _EasyDict
    sys.modules["easydict"] = shim
    try:
        from trellis.pipelines.samplers import flow_euler

        saved_edict, flow_euler.edict = flow_euler.edict, _EasyDict
        yield flow_euler.FlowEulerGuidanceIntervalSampler
        flow_euler.edict = saved_edict
    finally:
        if saved is None:
            sys.modules.pop("easydict", None)
        else:
            sys.modules["easydict"] = saved


class ToyFlow:
    """v(x, t, cond) = tanh(W x) * (1 + cond) + t / 1000: nonlinear, and different for each condition."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(6, 6, generator=gen) / 3
        self.calls = 0

    def __call__(self, x, t, cond, **kwargs):
        self.calls += 1
        return torch.tanh(x @ self.weight) * (1 + cond) + t[:, None] / 1000


@pytest.mark.parametrize(
    "guidance_strength, guidance_rescale, interval",
    [(7.5, 0.7, (0.6, 1.0)), (3.0, 0.0, (0.0, 1.0)), (1.0, 0.5, (0.6, 0.9)), (0.0, 0.7, (0.6, 1.0)),
     (0.0, 0.0, (0.0, 1.0))],
)
def test_sampler_matches_upstream(upstream_sampler, guidance_strength, guidance_rescale, interval):
    settings = SamplerSettings(12, guidance_strength=guidance_strength, guidance_rescale=guidance_rescale,
                               guidance_interval=interval, rescale_t=3.0)
    noise = torch.randn(2, 6, generator=torch.Generator().manual_seed(1))
    cond, neg = torch.full((2, 1), 0.5), torch.zeros(2, 1)
    ours_flow, upstream_flow = ToyFlow(), ToyFlow()
    ours = sample(ours_flow, noise, cond, neg, settings)
    upstream = upstream_sampler(sigma_min=settings.sigma_min).sample(
        upstream_flow, noise, cond, neg_cond=neg, steps=12, rescale_t=3.0, guidance_strength=guidance_strength,
        guidance_interval=interval, guidance_rescale=guidance_rescale, verbose=False)
    torch.testing.assert_close(ours.x, upstream.samples, atol=1e-5, rtol=1e-5)
    assert ours.forwards == upstream_flow.calls == ours_flow.calls
