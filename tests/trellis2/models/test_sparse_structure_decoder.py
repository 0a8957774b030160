"""Sparse-structure decoder: released key layout, pixel-shuffle order, tiny forward, mixed precision."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from know3d_cli.errors import CheckpointError
from know3d_cli.trellis2.models.sparse_structure_decoder import (
    ChannelLayerNorm3d,
    ResBlock3d,
    SparseStructureDecoder,
    Upsample3d,
    pixel_shuffle_3d,
)

RELEASED = "TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16"
TINY = dict(out_channels=1, latent_channels=8, num_res_blocks=2, num_res_blocks_middle=2, channels=[16, 8, 8],
            use_fp16=True)



def tiny(seed: int = 0) -> SparseStructureDecoder:
    torch.manual_seed(seed)
    decoder = SparseStructureDecoder(**TINY).eval()
    with torch.no_grad():  # make the norms non-trivial
        for name, param in decoder.named_parameters():
            if "norm" in name or name.startswith("out_layer.0"):
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return decoder


def test_released_layout_on_meta(released_checkpoint):
    entry = released_checkpoint(RELEASED)
    assert set(entry["args"]) <= set(inspect.signature(SparseStructureDecoder).parameters)
    with torch.device("meta"):
        decoder = SparseStructureDecoder(**entry["args"])
    shapes = {key: list(t.shape) for key, t in decoder.state_dict().items()}
    assert shapes == entry["tensors"]
    assert len(shapes) == entry["num_tensors"] == 74
    assert isinstance(decoder.blocks[2], Upsample3d) and isinstance(decoder.blocks[5], Upsample3d)
    assert decoder.upsample_factor == 4


def test_pixel_shuffle_hand_built():
    # one parent cell, one output channel: input channel i*4 + j*2 + k must land at offset (i, j, k)
    x = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1, 1, 1)
    y = pixel_shuffle_3d(x)
    assert y.shape == (1, 1, 2, 2, 2)
    for i in range(2):
        for j in range(2):
            for k in range(2):
                assert y[0, 0, i, j, k] == 4 * i + 2 * j + k


def test_pixel_shuffle_general_against_loop():
    b, c, sx, sy, sz = 2, 3, 2, 3, 4
    x = torch.randn(b, c * 8, sx, sy, sz)
    y = pixel_shuffle_3d(x)
    assert y.shape == (b, c, 2 * sx, 2 * sy, 2 * sz)
    expected = torch.empty_like(y)
    for ch in range(c):
        for i in range(2):
            for j in range(2):
                for k in range(2):
                    expected[:, ch, i::2, j::2, k::2] = x[:, ch * 8 + i * 4 + j * 2 + k]
    assert torch.equal(y, expected)


def test_channel_layer_norm_is_fp32_layer_norm_over_channels():
    torch.manual_seed(0)
    norm = ChannelLayerNorm3d(6, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 3, 4, 5) * 3 + 1
    ref = F.layer_norm(x.permute(0, 2, 3, 4, 1), (6,), norm.weight, norm.bias, 1e-5).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(norm(x), ref)
    half = norm(x.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, atol=1e-2, rtol=1e-2)


def test_resblock_is_residual():
    block = ResBlock3d(4)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(1, 4, 3, 3, 3)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("side", [16, 4])
def test_tiny_forward_shape(side):
    decoder = tiny()
    x = torch.randn(2, 8, side, side, side)
    with torch.no_grad():
        y = decoder(x)
    assert y.shape == (2, 1, 4 * side, 4 * side, 4 * side)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert not torch.allclose(y[0], y[1])  # depends on the latent


def test_batch_items_are_independent():
    decoder = tiny()
    x = torch.randn(3, 8, 4, 4, 4)
    with torch.no_grad():
        together = decoder(x)
        alone = decoder(x[1:2])
    torch.testing.assert_close(together[1:2], alone)


def test_fp16_blocks_keep_fp32_io_and_norms():
    decoder = tiny()
    x = torch.randn(1, 8, 4, 4, 4)
    with torch.no_grad():
        reference = decoder(x)
        decoder.convert_to_fp16()
        mixed = decoder(x)
    assert decoder.blocks_dtype == torch.float16
    for name, param in decoder.named_parameters():
        in_block_conv = (name.startswith(("middle_block.", "blocks.")) and ".conv" in name)
        assert param.dtype == (torch.float16 if in_block_conv else torch.float32), name
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, atol=2e-2, rtol=2e-2)
    decoder.convert_to_fp32()
    assert all(p.dtype == torch.float32 for p in decoder.parameters())


def test_rejects_bad_config_and_input():
    with pytest.raises(CheckpointError, match="norm_type"):
        SparseStructureDecoder(**{**TINY, "norm_type": "group"})
    with pytest.raises(CheckpointError, match="channels"):
        SparseStructureDecoder(**{**TINY, "channels": []})
    with pytest.raises(ValueError, match=r"\(B, 8, X, Y, Z\)"):
        tiny()(torch.randn(1, 4, 4, 4, 4))
