"""Parity with upstream TRELLIS.2 for the sparse networks: SLat flows and both SC-VAE decoders (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.tiny.trellis2 import decoder_args, dit_args
from know3d_cli.trellis2.models import FlexiDualGridVaeDecoder, SLatFlowModel, SparseUnetVaeDecoder
from know3d_cli.trellis2.sparse.tensor import SparseTensor

TOL = dict(atol=1e-5, rtol=1e-5)


def coords(batch: int = 2, side: int = 6, seed: int = 0) -> torch.Tensor:
    """(N, 4) int32 random voxels of `batch` items, lexicographic."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for b in range(batch):
        xyz = (torch.rand(side, side, side, generator=gen) < 0.4).nonzero()
        parts.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    return torch.cat(parts).int()


def randomise(model: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    """Random values everywhere (zero-initialised layers would hide most of the computation)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def upstream_copy(cls, args: dict, ours: torch.nn.Module) -> torch.nn.Module:
    model = cls(**args).eval()
    model.load_state_dict(ours.state_dict(), strict=True)  # identical key names, nothing computed
    return model


def upstream_sparse(x: SparseTensor):
    import trellis.modules.sparse as sp

    return sp.SparseTensor(x.feats, x.coords)


@pytest.mark.parametrize("role, rope_freq", [("shape_slat_flow_model_512", None), ("tex_slat_flow_model_1024", None),
                                             ("shape_slat_flow_model_512", (2.0, 100.0))])
def test_slat_flow_matches_upstream(role, rope_freq):
    """Including a non-default `rope_freq`, which the SLat flows honour (the SS flow ignores it)."""
    from trellis.models.structured_latent_flow import SLatFlowModel as Upstream

    args = {**dit_args(role, cond_channels=16), "dtype": "float32"}
    if rope_freq is not None:
        args["rope_freq"] = rope_freq
    ours = randomise(SLatFlowModel(**args), seed=1, std=0.05)
    upstream = upstream_copy(Upstream, args, ours)
    c = coords()
    gen = torch.Generator().manual_seed(2)
    x = SparseTensor(torch.randn(len(c), ours.out_channels, generator=gen), c)
    concat_channels = args["in_channels"] - args["out_channels"]
    concat = SparseTensor(torch.randn(len(c), concat_channels, generator=gen), c) if concat_channels else None
    t = torch.tensor([800.0, 300.0])
    cond = torch.randn(2, 9, 16, generator=gen)
    with torch.no_grad():
        expected = upstream(upstream_sparse(x), t, cond,
                            concat_cond=upstream_sparse(concat) if concat is not None else None)
        got = ours(x, t, ours.prepare_context(cond), concat_cond=concat)
        assert torch.equal(got.coords, expected.coords)
        torch.testing.assert_close(got.feats, expected.feats, **TOL)
        null = ours(x, t, ours.null_context(), concat_cond=concat)  # the zero-condition shortcut
        plain = upstream(upstream_sparse(x), t, torch.zeros_like(cond),
                         concat_cond=upstream_sparse(concat) if concat is not None else None)
        torch.testing.assert_close(null.feats, plain.feats, **TOL)


@pytest.fixture(scope="module")
def decoders():
    from trellis.models.sc_vaes.fdg_vae import FlexiDualGridVaeDecoder as UpstreamShape
    from trellis.models.sc_vaes.sparse_unet_vae import SparseUnetVaeDecoder as UpstreamTex

    blocks = [{} for _ in decoder_args(shape=True)["model_channels"]]  # the released json files carry these too
    shape_args = {**decoder_args(shape=True), "use_fp16": False, "block_args": blocks}
    tex_args = {**decoder_args(shape=False), "use_fp16": False, "block_args": blocks}
    ours_shape = randomise(FlexiDualGridVaeDecoder(**shape_args), seed=3)
    ours_tex = randomise(SparseUnetVaeDecoder(**tex_args), seed=4)
    with torch.no_grad():  # keep about half of the children, so the levels stay small but non-trivial
        for blocks in ours_shape.blocks[:-1]:
            blocks[-1].to_subdiv.bias.fill_(0.0)
    return (ours_shape, upstream_copy(UpstreamShape, shape_args, ours_shape),
            ours_tex, upstream_copy(UpstreamTex, tex_args, ours_tex))


def latent(channels: int = 32) -> SparseTensor:
    c = coords(side=4, seed=5)
    return SparseTensor(torch.randn(len(c), channels, generator=torch.Generator().manual_seed(6)), c)


def test_shape_decoder_matches_upstream(decoders):
    from trellis.models.sc_vaes.sparse_unet_vae import SparseUnetVaeDecoder as UpstreamBase

    ours, upstream, _, _ = decoders
    z = latent()
    with torch.no_grad():
        got, got_subs = ours(z, return_subs=True)
        # upstream's own forward also builds the mesh (CUDA); its base-class forward returns the raw output
        expected, expected_subs = UpstreamBase.forward(upstream, upstream_sparse(z), return_subs=True)
        assert len(got) > len(z)  # it did subdivide
        assert torch.equal(got.coords, expected.coords)
        torch.testing.assert_close(got.feats, expected.feats, **TOL)
        for ours_sub, up_sub in zip(got_subs, expected_subs, strict=True):
            torch.testing.assert_close(ours_sub.feats, up_sub.feats, **TOL)
        torch.testing.assert_close(ours.upsample(z, 4), UpstreamBase.upsample(upstream, upstream_sparse(z), 4))


def test_texture_decoder_follows_guides_like_upstream(decoders):
    shape, _, ours, upstream = decoders
    z = latent()
    with torch.no_grad():
        _, subs = shape(z, return_subs=True)
        got = ours(z, guide_subs=subs)
        expected = upstream(upstream_sparse(z), guide_subs=[upstream_sparse(s) for s in subs])
        assert torch.equal(got.coords, expected.coords)
        torch.testing.assert_close(got.feats, expected.feats, **TOL)
