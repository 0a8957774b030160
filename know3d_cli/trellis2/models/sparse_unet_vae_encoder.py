"""`SparseUnetVaeEncoder`: TRELLIS.2's sparse SC-VAE encoder (the texture encoder; base of the shape encoder).

Texture encoder input (`tex_enc_next_dc_f16c32_fp16`, in_channels 6): the O-Voxel PBR attributes of every active
voxel of a `R`^3 grid (R = 512 or 1024; the latent grid is R / 16), each attribute in [0, 1] mapped to [-1, 1]
(`2 a - 1`; the reference toolkit stores them as uint8 and reads `a = v / 255`):

    channel 0:3 base colour RGB, 3 metallic, 4 roughness, 5 alpha

The base colour is in texel values (sRGB-encoded, not linearised): the decoded channels are written back as the
glTF base-colour texture unchanged.

on `(N, 4) int32 (batch, x, y, z)` voxel coords, x/y/z in [0, R) along the grid axes of the [-0.5, 0.5]^3 cube
(voxel (x, y, z) spans `[x, x + 1] / R - 0.5` and so on). Use the same voxels as the shape encoder's input so that
the shape and texture latents share their coords (the texture flow concatenates them). The texture decoder outputs
the same 6 channels (`* 0.5 + 0.5` back to [0, 1]).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..nn.precision import BlockPrecision
from ..sparse.conv import SubMConv3d
from ..sparse.tensor import SparseTensor
from .latent_posterior import LatentPosterior
from .sparse_convnext_block import SparseConvNeXtBlock3d
from .sparse_s2c_block import SparseResBlockS2C3d
from .sparse_unet_vae_decoder import _CONVNEXT_ARGS, _check_block

logger = logging.getLogger(__name__)

_S2C_ARGS = frozenset({"use_checkpoint"})  # accepted and ignored (activation checkpointing is for training)


class SparseUnetVaeEncoder(BlockPrecision, nn.Module):
    """(N, in_channels) features on a fine grid -> `LatentPosterior` (N', latent_channels) on a 2^L times coarser grid.

    `input_layer` Linear -> for each level i: `num_blocks[i]` SparseConvNeXtBlock3d(model_channels[i]) and, except at
    the last level, one SparseResBlockS2C3d(model_channels[i] -> model_channels[i+1]) at
    `blocks.{i}.{num_blocks[i]}` -> parameter-free LayerNorm (eps 1e-5) -> `to_latent` Linear (-> 2 * latent_channels:
    mean, then log-variance).

    Precision (`BlockPrecision`): `input_layer`, the final LayerNorm and `to_latent` run in their own dtype (fp32); the
    blocks run in the dtype of their weights. `convert_to_fp16()` puts the blocks' Linear and conv weights in fp16
    (LayerNorms are kept and computed in fp32).

    Args (names as in the checkpoint json):
        in_channels: features per input voxel (6 for the texture encoder).
        model_channels: channels per level, e.g. [64, 128, 256, 512, 1024].
        latent_channels: channels of the structured latent (32).
        num_blocks: ConvNeXt blocks per level, e.g. [0, 4, 8, 16, 4].
        block_type: per level; only "SparseConvNeXtBlock3d".
        down_block_type: per level transition; only "SparseResBlockS2C3d".
        block_args: per level extra block arguments (the released files have none or `[{}, ...]`).
        use_fp16: the reference runs the blocks in fp16 (see `convert_to_fp16`).
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        down_block_type: list[str],
        block_args: list[dict[str, Any]] | None = None,
        use_fp16: bool = False,
    ):
        super().__init__()
        levels = len(model_channels)
        block_args = [{} for _ in range(levels)] if block_args is None else [dict(a) for a in block_args]
        if levels < 1 or len(num_blocks) != levels or len(block_type) != levels or len(block_args) != levels:
            raise ConfigError(
                f"{type(self).__name__}: model_channels, num_blocks, block_type and block_args need one entry per "
                f"level; got {len(model_channels)}, {len(num_blocks)}, {len(block_type)}, {len(block_args)}"
            )
        if len(down_block_type) != levels - 1:
            raise ConfigError(
                f"{type(self).__name__}: down_block_type needs {levels - 1} entries, got {len(down_block_type)}"
            )
        self.in_channels = in_channels
        self.model_channels = list(model_channels)
        self.latent_channels = latent_channels
        self.num_blocks = list(num_blocks)
        self.use_fp16 = use_fp16

        self.input_layer = nn.Linear(in_channels, model_channels[0])
        self.blocks = nn.ModuleList()
        for i in range(levels):
            _check_block(type(self).__name__, block_type[i], "SparseConvNeXtBlock3d", block_args[i], _CONVNEXT_ARGS)
            mlp_ratio = float(block_args[i].get("mlp_ratio", 4.0))
            level = nn.ModuleList(SparseConvNeXtBlock3d(model_channels[i], mlp_ratio) for _ in range(num_blocks[i]))
            if i < levels - 1:
                _check_block(type(self).__name__, down_block_type[i], "SparseResBlockS2C3d", block_args[i], _S2C_ARGS)
                level.append(SparseResBlockS2C3d(model_channels[i], model_channels[i + 1]))
            self.blocks.append(level)
        self.to_latent = nn.Linear(model_channels[-1], 2 * latent_channels)

    # ------------------------------------------------------------------------------------------- precision
    @property
    def num_downsamples(self) -> int:
        """Number of x2 spatial-to-channel levels (4 in the released encoders: latent grid = input grid / 16)."""
        return len(self.blocks) - 1

    def _block_layers(self) -> Iterator[nn.Module]:
        return (m for m in self.blocks.modules() if isinstance(m, (nn.Linear, SubMConv3d)))

    # --------------------------------------------------------------------------------------------- forward
    def forward(self, x: SparseTensor) -> LatentPosterior:
        """Encode voxel features.

        Args:
            x: (N, in_channels) float features on (N, 4) int32 `(batch, x, y, z)` coords of an R^3 grid.

        Returns:
            The posterior: fp32 `mean` and `logvar` (N', latent_channels) on `coords` (N', 4) int32, the occupied
            cells of the (R / 2^num_downsamples)^3 latent grid (`(b, x >> 4, y >> 4, z >> 4)` of the input voxels,
            unique), sorted lexicographically.
        """
        if x.feats.ndim != 2 or x.feats.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects (N, {self.in_channels}) features, got "
                             f"{tuple(x.feats.shape)}")
        h = x.replace(self.input_layer(x.feats.to(self.input_layer.weight.dtype)).to(self.blocks_dtype))
        for level in self.blocks:
            for block in level:
                h = block(h)
        feats = h.feats.to(self.to_latent.weight.dtype)
        feats = self.to_latent(F.layer_norm(feats.float(), feats.shape[-1:]).to(feats.dtype)).float()
        mean, logvar = feats.chunk(2, dim=-1)
        return LatentPosterior(mean.contiguous(), logvar.contiguous(), h.coords)


__all__ = ["SparseUnetVaeEncoder"]
