"""`FlexiDualGridVaeEncoder`: TRELLIS.2's shape encoder (flexible dual grid voxels -> shape structured latent).

Input (`shape_enc_next_dc_f16c32_fp16`): the O-Voxel flexible dual grid of a mesh normalised into [-0.5, 0.5]^3, at
grid side R (512 or 1024; the latent grid is R / 16), one row per active voxel on `(N, 4) int32 (batch, x, y, z)`
coords with x/y/z in [0, R) (voxel (x, y, z) spans `[x, x + 1] / R - 0.5` and so on):

- `vertices` (N, 3) float: the voxel's dual vertex in voxel units relative to its minimum corner, in [0, 1] (the
  reference toolkit stores `round(255 v)` as uint8 and reads `v / 255`); the mesh vertex is
  `(coords + v) / R - 0.5`.
- `intersected` (N, 3) bool: the surface crosses the voxel's x / y / z edge through its maximum corner (the x edge
  at y + 1, z + 1, shared with the voxels at +1 in y and/or z; `mesh/dual_grid.py` builds one quad per such edge).
  The reference toolkit stores them as one uint8 `x + 2 y + 4 z`.

The network sees the 6 channels `[vertices - 0.5, intersected - 0.5]`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..sparse.tensor import SparseTensor
from .latent_posterior import LatentPosterior
from .sparse_unet_vae_encoder import SparseUnetVaeEncoder

DUAL_GRID_INPUT_CHANNELS = 6  # dual vertex 0:3, edge-crossing flags 3:6


class FlexiDualGridVaeEncoder(SparseUnetVaeEncoder):
    """Shape encoder: `SparseUnetVaeEncoder` with in_channels = 6 fixed (not in the checkpoint json).

    Args (names as in the checkpoint json): as `SparseUnetVaeEncoder`, without `in_channels`.
    """

    def __init__(
        self,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        down_block_type: list[str],
        block_args: list[dict[str, Any]] | None = None,
        use_fp16: bool = False,
    ):
        super().__init__(
            DUAL_GRID_INPUT_CHANNELS,
            model_channels,
            latent_channels,
            num_blocks,
            block_type,
            down_block_type,
            block_args=block_args,
            use_fp16=use_fp16,
        )

    def forward(self, vertices: SparseTensor, intersected: SparseTensor) -> LatentPosterior:  # type: ignore[override]
        """Encode a flexible dual grid.

        Args:
            vertices: (N, 3) float dual vertices in [0, 1] (voxel units) on (N, 4) int32 coords.
            intersected: (N, 3) bool edge-crossing flags on the same coords.

        Returns:
            The posterior on the (R / 16)^3 latent grid (see `SparseUnetVaeEncoder.forward`).
        """
        if vertices.feats.shape != (len(vertices), 3) or intersected.feats.shape != (len(vertices), 3):
            raise ValueError(
                f"vertices and intersected must both be (N, 3) on the same voxels, got "
                f"{tuple(vertices.feats.shape)} and {tuple(intersected.feats.shape)}"
            )
        if intersected.coords is not vertices.coords and not torch.equal(intersected.coords, vertices.coords):
            raise ValueError("vertices and intersected must be on the same coords (same voxels, same row order)")
        feats = torch.cat([vertices.feats.float() - 0.5, intersected.feats.float() - 0.5], dim=1)
        return super().forward(vertices.replace(feats))


__all__ = ["DUAL_GRID_INPUT_CHANNELS", "FlexiDualGridVaeEncoder"]
