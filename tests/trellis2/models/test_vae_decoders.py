"""TRELLIS.2 sparse SC-VAE decoders: released key layout, tiny CPU decoding, subdivision guidance, cascade upsample."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from know3d_cli.errors import ConfigError
from know3d_cli.trellis2.models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder
from know3d_cli.trellis2.models.sparse_c2s_block import SparseResBlockC2S3d
from know3d_cli.trellis2.models.sparse_convnext_block import SparseConvNeXtBlock3d
from know3d_cli.trellis2.models.sparse_unet_vae_decoder import SparseUnetVaeDecoder
from know3d_cli.trellis2.sparse import SparseTensor, SubMConv3d

TINY = dict(
    model_channels=[32, 16, 16, 8, 8],
    latent_channels=4,
    num_blocks=[1, 1, 1, 1, 0],
    block_type=["SparseConvNeXtBlock3d"] * 5,
    up_block_type=["SparseResBlockC2S3d"] * 4,
    block_args=[{}, {}, {}, {}, {}],
    use_fp16=True,
)



def latent(seed: int = 0, batch: int = 2, side: int = 4, channels: int = 4) -> SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for b in range(batch):
        xyz = (torch.rand(side, side, side, generator=gen) < 0.35).nonzero()
        parts.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    coords = torch.cat(parts).to(torch.int32)
    return SparseTensor(torch.randn(len(coords), channels, generator=gen), coords)


def tiny_pair(seed: int = 0) -> tuple[FlexiDualGridVaeDecoder, SparseUnetVaeDecoder]:
    torch.manual_seed(seed)
    shape = FlexiDualGridVaeDecoder(resolution=64, **TINY).eval()
    texture = SparseUnetVaeDecoder(out_channels=6, pred_subdiv=False, **TINY).eval()
    return shape, texture


@pytest.mark.parametrize(
    "name,cls",
    [("shape_dec_next_dc_f16c32_fp16", FlexiDualGridVaeDecoder), ("tex_dec_next_dc_f16c32_fp16", SparseUnetVaeDecoder)],
)
@pytest.mark.parametrize("with_block_args", [False, True])
def test_full_size_keys_and_shapes_match_the_release(name, cls, with_block_args, released_checkpoint):
    entry = released_checkpoint(f"TRELLIS.2-4B/ckpts/{name}")
    args = dict(entry["args"])
    if with_block_args:  # the released json files also carry `block_args: [{}, ...]`
        args["block_args"] = [{} for _ in args["model_channels"]]
    with torch.device("meta"):
        model = cls(**args)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == entry["num_tensors"]
    assert shapes == entry["tensors"]


@torch.no_grad()
def test_tiny_decoders_on_cpu_follow_the_same_subdivisions():
    shape_dec, tex_dec = tiny_pair()
    x = latent()
    h, subs = shape_dec(x, return_subs=True)
    assert h.feats.shape[1] == 7 and h.feats.dtype == torch.float32 and torch.isfinite(h.feats).all()
    assert len(subs) == 4
    assert subs[0].feats.shape == (len(x), 8) and torch.equal(subs[0].coords, x.coords)
    for parent, child in zip(subs, subs[1:] + [h]):
        assert len(child) == int((parent.feats > 0).sum())  # one voxel per positive logit
        child_parents = torch.cat([child.coords[:, :1], child.coords[:, 1:] // 2], dim=1)
        with_children = parent.coords[(parent.feats > 0).any(dim=1)]
        assert torch.equal(torch.unique(child_parents, dim=0), torch.unique(with_children, dim=0))
    assert int(h.coords[:, 1:].max()) < 16 * 4 and h.coords.dtype == torch.int32
    assert h.batch_size == 2

    tex = tex_dec(x.replace(torch.randn(len(x), 4)), guide_subs=subs)
    assert torch.equal(tex.coords, h.coords)
    assert tex.feats.shape == (len(h), 6) and torch.isfinite(tex.feats).all()


@torch.no_grad()
def test_upsample_returns_the_coords_of_each_level():
    shape_dec, _ = tiny_pair(1)
    x = latent(1)
    h, subs = shape_dec(x, return_subs=True)
    assert torch.equal(shape_dec.upsample(x, 4), h.coords)  # the cascade's `upsample(slat, 4)`: 16x grid
    assert torch.equal(shape_dec.upsample(x, 0), x.coords)
    for level in range(1, 4):
        assert torch.equal(shape_dec.upsample(x, level), subs[level].coords)
    with pytest.raises(ValueError):
        shape_dec.upsample(x, 5)


@torch.no_grad()
def test_dual_grid_interpretation():
    shape_dec, _ = tiny_pair(2)
    shape_dec.set_resolution(64)
    h = shape_dec(latent(2))
    grids = shape_dec.dual_grid(h)
    assert len(grids) == 2 and sum(len(g.coords) for g in grids) == len(h)
    raw = h.feats[h.row_slices[1]]
    g = grids[1]
    assert g.resolution == 64 and g.coords.shape[1] == 3
    assert torch.equal(g.coords, h.coords[h.row_slices[1], 1:])
    torch.testing.assert_close(g.vertex_offsets, 2 * torch.sigmoid(raw[:, :3]) - 0.5)
    assert (g.vertex_offsets >= -0.5).all() and (g.vertex_offsets <= 1.5).all()
    assert torch.equal(g.edge_flags, raw[:, 3:6] > 0)
    torch.testing.assert_close(g.split_weights, F.softplus(raw[:, 6]))


def test_guidance_arguments_are_checked():
    shape_dec, tex_dec = tiny_pair()
    x = latent()
    with pytest.raises(ValueError, match="guide_subs"):
        tex_dec(x)
    with pytest.raises(ValueError, match="no subdivisions"):
        tex_dec(x, guide_subs=[x] * 4, return_subs=True)
    with pytest.raises(ValueError, match="drop guide_subs"):
        SparseUnetVaeDecoder(out_channels=3, **TINY)(x, guide_subs=[x] * 4)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"block_type": ["SparseResBlock3d"] * 5}, "not supported"),
        ({"up_block_type": ["SparseResBlockC2S3d"] * 3 + ["SparseResBlockUpsample3d"]}, "not supported"),
        ({"block_args": [{"mlp_ratio": 2.0}, {}, {}, {}, {"window": 8}]}, "block_args"),
        ({"num_blocks": [1, 1, 1, 0]}, "one entry per level"),
    ],
)
def test_unsupported_configs_raise(change, match):
    with pytest.raises(ConfigError, match=match):
        SparseUnetVaeDecoder(out_channels=6, **{**TINY, **change})


def test_fp16_recipe_converts_only_block_linears_and_convs():
    shape_dec, _ = tiny_pair()
    shape_dec.convert_to_fp16()
    assert shape_dec.blocks_dtype == torch.float16
    assert shape_dec.from_latent.weight.dtype == torch.float32
    assert shape_dec.output_layer.weight.dtype == torch.float32
    block = shape_dec.blocks[0][0]
    assert block.conv.weight.dtype == torch.float16 and block.mlp[0].weight.dtype == torch.float16
    assert block.norm.weight.dtype == torch.float32
    c2s = shape_dec.blocks[0][1]
    assert c2s.to_subdiv.weight.dtype == torch.float16 and c2s.norm1.weight.dtype == torch.float32
    with torch.no_grad():
        out = shape_dec(latent())
    assert out.feats.dtype == torch.float32 and torch.isfinite(out.feats).all()
    shape_dec.convert_to_fp32()
    assert shape_dec.blocks_dtype == torch.float32


@torch.no_grad()
def test_c2s_block_skip_path_and_predicted_mask():
    block = SparseResBlockC2S3d(16, 8)  # each child takes 2 parent channels, repeated 4 times
    for p in block.parameters():
        p.zero_()
    block.to_subdiv.bias.copy_(torch.tensor([1.0, -1, -1, 1, -1, -1, -1, 1]))  # children 0, 3, 7
    x = SparseTensor(torch.arange(32.0).reshape(2, 16), torch.tensor([[0, 1, 0, 0], [1, 0, 0, 3]], dtype=torch.int32))
    h, logits = block(x)
    assert torch.equal(logits.feats, block.to_subdiv.bias.expand(2, 8))
    assert h.coords.tolist() == [[0, 2, 0, 0], [0, 3, 1, 0], [0, 3, 1, 1], [1, 0, 0, 6], [1, 1, 1, 6], [1, 1, 1, 7]]
    expected = torch.tensor([[0.0, 1], [6, 7], [14, 15], [16, 17], [22, 23], [30, 31]]).repeat_interleave(4, dim=1)
    assert torch.equal(h.feats, expected)  # conv weights are zero: only the skip remains

    guided = SparseResBlockC2S3d(16, 8, pred_subdiv=False)
    assert not hasattr(guided, "to_subdiv")
    mask_logits = x.replace(torch.tensor([[1.0] + [-1] * 7, [-1.0] * 7 + [1]]))
    h2, used = guided(x, mask_logits)
    assert used is mask_logits and h2.coords.tolist() == [[0, 2, 0, 0], [1, 1, 1, 7]]
    with pytest.raises(ValueError, match="guide_subs"):
        guided(x)


@torch.no_grad()
def test_convnext_block_is_residual_and_keeps_the_cache():
    block = SparseConvNeXtBlock3d(8)
    x = latent(3, batch=1, channels=8)
    y = block(x)
    assert y.cache is x.cache and y.feats.shape == x.feats.shape
    assert not torch.allclose(y.feats, x.feats)
    block.mlp[2].weight.zero_()
    block.mlp[2].bias.zero_()
    assert torch.equal(block(x).feats, x.feats)
    assert isinstance(block.conv, SubMConv3d)
    assert set(block.state_dict()) == {
        "conv.weight", "conv.bias", "norm.weight", "norm.bias",
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
    }  # fmt: skip
