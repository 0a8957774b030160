"""TRELLIS.2 sparse SC-VAE encoders: released key layout, S2C block, latent coords, posterior sampling, precision."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.errors import ConfigError
from know3d_cli.trellis2.models.flexi_dual_grid_vae_encoder import FlexiDualGridVaeEncoder
from know3d_cli.trellis2.models.latent_posterior import LatentPosterior
from know3d_cli.trellis2.models.sparse_s2c_block import SparseResBlockS2C3d
from know3d_cli.trellis2.models.sparse_unet_vae_encoder import SparseUnetVaeEncoder
from know3d_cli.trellis2.sparse import SparseTensor

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices; threads only contend

TINY = dict(
    model_channels=[8, 16, 16, 32, 32],
    latent_channels=4,
    num_blocks=[0, 1, 1, 1, 1],
    block_type=["SparseConvNeXtBlock3d"] * 5,
    down_block_type=["SparseResBlockS2C3d"] * 4,
    use_fp16=True,
)


def voxels(seed: int = 0, batch: int = 2, side: int = 20) -> torch.Tensor:
    """(N, 4) int32 random voxels of `batch` items, lexicographic."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for b in range(batch):
        xyz = (torch.rand(side, side, side, generator=gen) < 0.08).nonzero()
        parts.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    return torch.cat(parts).to(torch.int32)


def tiny_texture(seed: int = 0) -> SparseUnetVaeEncoder:
    torch.manual_seed(seed)
    return SparseUnetVaeEncoder(in_channels=6, **TINY).eval()


@pytest.mark.parametrize(
    "name,cls", [("shape_enc_next_dc_f16c32_fp16", FlexiDualGridVaeEncoder),
                 ("tex_enc_next_dc_f16c32_fp16", SparseUnetVaeEncoder)],
)
@pytest.mark.parametrize("with_block_args", [False, True])
def test_full_size_keys_and_shapes_match_the_release(name, cls, with_block_args, released_checkpoint):
    entry = released_checkpoint(f"TRELLIS.2-4B/ckpts/{name}")
    args = dict(entry["args"])
    if with_block_args:  # upstream's training configs also carry `block_args: [{}, ...]`
        args["block_args"] = [{} for _ in args["model_channels"]]
    with torch.device("meta"):
        model = cls(**args)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == entry["tensors"] and len(shapes) == entry["num_tensors"]
    assert model.in_channels == 6 and model.num_downsamples == 4
    assert isinstance(model.blocks[0][0], SparseResBlockS2C3d) and isinstance(model.blocks[3][16], SparseResBlockS2C3d)


@torch.no_grad()
def test_latent_coords_are_the_16x_coarser_cells_of_the_input():
    encoder = tiny_texture()
    coords = voxels()
    posterior = encoder(SparseTensor(torch.rand(len(coords), 6) * 2 - 1, coords))
    expected = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] >> 4], dim=1), dim=0)  # sorted rows
    assert torch.equal(posterior.coords, expected) and posterior.coords.dtype == torch.int32
    assert posterior.mean.shape == posterior.logvar.shape == (len(expected), 4)
    assert posterior.mean.dtype == torch.float32 and torch.isfinite(posterior.mean).all()
    latent = posterior.sparse(posterior.mean)
    assert latent.batch_size == 2 and torch.equal(latent.coords, expected)


@torch.no_grad()
def test_posterior_sample_uses_the_explicit_generator():
    encoder = tiny_texture(1)
    coords = voxels(1)
    posterior = encoder(SparseTensor(torch.rand(len(coords), 6), coords))
    a = posterior.sample(torch.Generator().manual_seed(3))
    b = posterior.sample(torch.Generator().manual_seed(3))
    c = posterior.sample(torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    eps = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, posterior.mean + torch.exp(0.5 * posterior.logvar) * eps)
    dense = LatentPosterior(torch.zeros(1, 2, 3, 3, 3), torch.zeros(1, 2, 3, 3, 3))
    with pytest.raises(ValueError, match="dense posterior"):
        dense.sparse(dense.mean)


@torch.no_grad()
def test_shape_encoder_feeds_centred_vertices_and_flags():
    torch.manual_seed(2)
    shape = FlexiDualGridVaeEncoder(**TINY).eval()
    texture = SparseUnetVaeEncoder(in_channels=6, **TINY).eval()
    texture.load_state_dict(shape.state_dict())
    coords = voxels(2)
    vertices = torch.rand(len(coords), 3)
    flags = torch.rand(len(coords), 3) < 0.5
    got = shape(SparseTensor(vertices, coords), SparseTensor(flags, coords))
    expected = texture(SparseTensor(torch.cat([vertices - 0.5, flags.float() - 0.5], dim=1), coords))
    assert torch.equal(got.mean, expected.mean) and torch.equal(got.coords, expected.coords)
    with pytest.raises(ValueError, match="same coords"):
        shape(SparseTensor(vertices, coords), SparseTensor(flags, coords.flip(0)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        shape(SparseTensor(vertices[:, :2], coords), SparseTensor(flags, coords))
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        texture(SparseTensor(vertices, coords))


@torch.no_grad()
def test_s2c_block_skip_path_averages_children():
    block = SparseResBlockS2C3d(2, 8)  # 8 children x 2 channels = 16 merged channels, averaged in pairs
    for p in block.parameters():
        p.zero_()
    coords = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 1], [1, 4, 5, 2]], dtype=torch.int32)
    feats = torch.tensor([[1.0, 3.0], [10.0, 30.0], [5.0, 7.0]])
    h = block(SparseTensor(feats, coords))
    assert h.coords.tolist() == [[0, 0, 0, 0], [1, 2, 2, 1]]
    merged = torch.zeros(2, 16)
    merged[0, 2:4] = feats[0]  # child 1 of (0, 0, 0)
    merged[0, 8:10] = feats[1]  # child 4
    merged[1, 4:6] = feats[2]  # (4, 5, 2) is child 2 of (2, 2, 1)
    assert torch.equal(h.feats, merged.reshape(2, 8, 2).mean(dim=-1))  # conv weights are zero: only the skip
    with pytest.raises(ConfigError, match="divisible by 8"):
        SparseResBlockS2C3d(16, 12)
    with pytest.raises(ConfigError, match="divide 8"):
        SparseResBlockS2C3d(2, 32)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"block_type": ["SparseResBlock3d"] * 5}, "not supported"),
        ({"down_block_type": ["SparseResBlockS2C3d"] * 3 + ["SparseResBlockDownsample3d"]}, "not supported"),
        ({"down_block_type": ["SparseResBlockS2C3d"] * 3}, "4 entries"),
        ({"block_args": [{}, {}, {}, {}, {"window": 8}]}, "block_args"),
        ({"num_blocks": [1, 1, 1, 0]}, "one entry per level"),
    ],
)
def test_unsupported_configs_raise(change, match):
    with pytest.raises(ConfigError, match=match):
        SparseUnetVaeEncoder(in_channels=6, **{**TINY, **change})


def test_fp16_recipe_converts_only_block_linears_and_convs():
    encoder = tiny_texture()
    coords = voxels(4)
    x = SparseTensor(torch.rand(len(coords), 6), coords)
    with torch.no_grad():
        reference = encoder(x).mean
    encoder.convert_to_fp16()
    assert encoder.blocks_dtype == torch.float16
    assert encoder.input_layer.weight.dtype == encoder.to_latent.weight.dtype == torch.float32
    s2c, convnext = encoder.blocks[0][0], encoder.blocks[1][0]
    assert s2c.conv1.weight.dtype == torch.float16 and s2c.norm1.weight.dtype == torch.float32
    assert convnext.mlp[0].weight.dtype == torch.float16 and convnext.norm.weight.dtype == torch.float32
    with torch.no_grad():
        half = encoder(x).mean
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, atol=2e-2, rtol=2e-2)
    encoder.convert_to_fp32()
    assert encoder.blocks_dtype == torch.float32
