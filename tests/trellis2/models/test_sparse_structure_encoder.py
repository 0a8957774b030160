"""Sparse-structure encoder: released key layout, downsampling, posterior shapes, mixed precision, bad inputs."""

from __future__ import annotations

import inspect

import pytest
import torch

from know3d_cli.errors import CheckpointError
from know3d_cli.trellis2.models.sparse_structure_decoder import ResBlock3d
from know3d_cli.trellis2.models.sparse_structure_encoder import Downsample3d, SparseStructureEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

RELEASED = "TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16"
TINY = dict(in_channels=1, latent_channels=8, num_res_blocks=2, num_res_blocks_middle=2, channels=[8, 8, 16],
            use_fp16=True)


def tiny(seed: int = 0) -> SparseStructureEncoder:
    torch.manual_seed(seed)
    encoder = SparseStructureEncoder(**TINY).eval()
    with torch.no_grad():  # make the norms non-trivial
        for name, param in encoder.named_parameters():
            if "norm" in name or name.startswith("out_layer.0"):
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return encoder


def occupancy(batch: int = 2, side: int = 16, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 1, side, side, side, generator=gen) < 0.2).float()


def test_released_layout_on_meta(released_checkpoint):
    entry = released_checkpoint(RELEASED)
    assert set(entry["args"]) <= set(inspect.signature(SparseStructureEncoder).parameters)
    with torch.device("meta"):
        encoder = SparseStructureEncoder(**entry["args"])
    shapes = {key: list(t.shape) for key, t in encoder.state_dict().items()}
    assert shapes == entry["tensors"]
    assert len(shapes) == entry["num_tensors"] == 74
    assert isinstance(encoder.blocks[2], Downsample3d) and isinstance(encoder.blocks[5], Downsample3d)
    assert all(isinstance(encoder.blocks[i], ResBlock3d) for i in (0, 1, 3, 4, 6, 7))
    assert encoder.downsample_factor == 4


@torch.no_grad()
def test_posterior_shapes_and_locality():
    encoder = tiny()
    x = occupancy()
    posterior = encoder(x)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 8, 4, 4, 4)
    assert posterior.mean.dtype == torch.float32 and posterior.coords is None
    assert torch.isfinite(posterior.mean).all() and posterior.mean.std() > 0
    # batch items are independent
    single = encoder(x[1:])
    torch.testing.assert_close(single.mean[0], posterior.mean[1], atol=1e-5, rtol=1e-5)
    sample = posterior.sample(torch.Generator().manual_seed(0))
    assert sample.shape == (2, 8, 4, 4, 4) and not torch.equal(sample, posterior.mean)


def test_downsample_is_a_strided_2x2x2_conv():
    block = Downsample3d(3, 5)
    x = torch.randn(1, 3, 4, 6, 8)
    y = block(x)
    assert y.shape == (1, 5, 2, 3, 4)
    cell = x[:, :, 2:4, 4:6, 6:8]  # the cell of output voxel (1, 2, 3)
    expected = (block.conv.weight * cell).sum(dim=(1, 2, 3, 4)) + block.conv.bias
    torch.testing.assert_close(y[0, :, 1, 2, 3], expected)


def test_fp16_recipe_keeps_input_output_and_norms_fp32():
    encoder = tiny()
    x = occupancy(batch=1)
    with torch.no_grad():
        reference = encoder(x).mean
    encoder.convert_to_fp16()
    assert encoder.blocks_dtype == torch.float16
    assert encoder.blocks[2].conv.weight.dtype == torch.float16
    assert encoder.middle_block[0].conv1.weight.dtype == torch.float16
    assert encoder.middle_block[0].norm1.weight.dtype == torch.float32
    assert encoder.input_layer.weight.dtype == encoder.out_layer[2].weight.dtype == torch.float32
    with torch.no_grad():
        half = encoder(x).mean
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, atol=2e-2, rtol=2e-2)
    encoder.convert_to_fp32()
    assert encoder.blocks_dtype == torch.float32


def test_bad_inputs_and_args():
    encoder = tiny()
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, Z\)"):
        encoder(torch.zeros(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="multiples of 4"):
        encoder(torch.zeros(1, 1, 8, 8, 10))
    with pytest.raises(CheckpointError, match="norm_type"):
        SparseStructureEncoder(**{**TINY, "norm_type": "group"})
    with pytest.raises(CheckpointError, match="at least one level"):
        SparseStructureEncoder(**{**TINY, "channels": []})
