"""Parity with upstream TRELLIS.2 for the three VAE encoders: posterior mean, log-variance and a seeded posterior
sample (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.tiny.trellis2 import encoder_args, ss_encoder_args
from know3d_cli.trellis2.models import FlexiDualGridVaeEncoder, SparseStructureEncoder, SparseUnetVaeEncoder
from know3d_cli.trellis2.sparse.tensor import SparseTensor

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices; threads only contend

TOL = dict(atol=1e-5, rtol=1e-5)
SEED = 7  # of the posterior sample: our explicit generator, upstream's global generator


def randomise(model: torch.nn.Module, seed: int, std: float) -> torch.nn.Module:
    """Random values everywhere (upstream zero-initialises conv2 and the ConvNeXt output layers)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def upstream_copy(cls, args: dict, ours: torch.nn.Module) -> torch.nn.Module:
    model = cls(**args).eval()
    model.load_state_dict(ours.state_dict(), strict=True)  # identical key names, nothing computed
    return model


def voxels(batch: int = 2, side: int = 24, seed: int = 0) -> torch.Tensor:
    """(N, 4) int32 random voxels of `batch` items in a side^3 grid, lexicographic."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for b in range(batch):
        xyz = (torch.rand(side, side, side, generator=gen) < 0.1).nonzero()
        parts.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    return torch.cat(parts).int()


def upstream_sparse(feats: torch.Tensor, coords: torch.Tensor):
    import trellis.modules.sparse as sp

    return sp.SparseTensor(feats, coords)


def test_sparse_structure_encoder_matches_upstream():
    from trellis.models.sparse_structure_vae import SparseStructureEncoder as Upstream

    args = {**ss_encoder_args(), "use_fp16": False}
    ours = randomise(SparseStructureEncoder(**args), seed=1, std=0.2)
    upstream = upstream_copy(Upstream, args, ours)
    occupancy = (torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    with torch.no_grad():
        posterior = ours(occupancy)
        _, mean, logvar = upstream(occupancy, return_raw=True)
        torch.testing.assert_close(posterior.mean, mean, **TOL)
        torch.testing.assert_close(posterior.logvar, logvar, **TOL)
        assert posterior.coords is None and posterior.mean.shape == (2, 8, 4, 4, 4)
        torch.manual_seed(SEED)
        expected = upstream(occupancy, sample_posterior=True)
        torch.testing.assert_close(posterior.sample(torch.Generator().manual_seed(SEED)), expected, **TOL)


@pytest.fixture(scope="module")
def sc_encoders():
    from trellis.models.sc_vaes.fdg_vae import FlexiDualGridVaeEncoder as UpstreamShape
    from trellis.models.sc_vaes.sparse_unet_vae import SparseUnetVaeEncoder as UpstreamTex

    blocks = [{} for _ in encoder_args(shape=True)["model_channels"]]  # upstream requires them
    shape_args = {**encoder_args(shape=True), "use_fp16": False, "block_args": blocks}
    tex_args = {**encoder_args(shape=False), "use_fp16": False, "block_args": blocks}
    ours_shape = randomise(FlexiDualGridVaeEncoder(**shape_args), seed=3, std=0.1)
    ours_tex = randomise(SparseUnetVaeEncoder(**tex_args), seed=4, std=0.1)
    return (ours_shape, upstream_copy(UpstreamShape, shape_args, ours_shape),
            ours_tex, upstream_copy(UpstreamTex, tex_args, ours_tex))


def _check(posterior, upstream_call, coords: torch.Tensor) -> None:
    z, mean, logvar = upstream_call(sample_posterior=False, return_raw=True)
    assert len(coords) > 8 * len(z.coords)  # it did merge voxels
    assert torch.equal(posterior.coords, z.coords.to(posterior.coords.dtype))
    torch.testing.assert_close(posterior.mean, mean, **TOL)
    torch.testing.assert_close(posterior.logvar, logvar, **TOL)
    torch.manual_seed(SEED)
    sampled = upstream_call(sample_posterior=True, return_raw=False)
    torch.testing.assert_close(posterior.sample(torch.Generator().manual_seed(SEED)), sampled.feats, **TOL)


def test_shape_encoder_matches_upstream(sc_encoders):
    ours, upstream, _, _ = sc_encoders
    coords = voxels()
    gen = torch.Generator().manual_seed(5)
    vertices = torch.rand(len(coords), 3, generator=gen)
    flags = torch.rand(len(coords), 3, generator=gen) < 0.4
    with torch.no_grad():
        posterior = ours(SparseTensor(vertices, coords), SparseTensor(flags, coords))
        up_vertices = upstream_sparse(vertices, coords)
        _check(posterior, lambda **kw: upstream(up_vertices, up_vertices.replace(flags), **kw), coords)


def test_texture_encoder_matches_upstream(sc_encoders):
    _, _, ours, upstream = sc_encoders
    coords = voxels(seed=6)
    attrs = torch.rand(len(coords), 6, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        posterior = ours(SparseTensor(attrs, coords))
        _check(posterior, lambda **kw: upstream(upstream_sparse(attrs, coords), **kw), coords)
