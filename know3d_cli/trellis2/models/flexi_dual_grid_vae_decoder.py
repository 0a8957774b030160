"""`FlexiDualGridVaeDecoder`: TRELLIS.2's shape decoder (structured latent -> flexible dual grid voxels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..sparse.tensor import SparseTensor
from .sparse_unet_vae_decoder import SparseUnetVaeDecoder

DUAL_GRID_CHANNELS = 7  # vertex offset logits 0:3, edge-crossing logits 3:6, quad split logit 6


@dataclass(frozen=True)
class FlexiDualGridVoxels:
    """One batch item's decoded flexible dual grid, in voxel units of a `resolution`^3 grid.

    The mesh has one vertex per voxel at `(coords + vertex_offsets) / resolution - 0.5`; a set edge flag on axis a
    asks for the quad of the 4 voxels sharing that voxel's a-edge; quads split along the diagonal with the larger
    product of `split_weights`.
    """

    coords: torch.Tensor  # (M, 3) int32 voxel coords (x, y, z) in [0, resolution)
    vertex_offsets: torch.Tensor  # (M, 3) float32 dual vertex inside its voxel, in [-margin, 1 + margin]
    edge_flags: torch.Tensor  # (M, 3) bool: the surface crosses the voxel's x / y / z edge
    split_weights: torch.Tensor  # (M,) float32 quad split weight, > 0
    resolution: int  # grid side; voxel size is 1 / resolution in the [-0.5, 0.5]^3 cube


class FlexiDualGridVaeDecoder(SparseUnetVaeDecoder):
    """Shape decoder: predicts its own subdivisions and 7 raw channels per final voxel.

    Args (names as in the checkpoint json): `resolution` is the output grid side (overwritten with
    `set_resolution` before decoding); `voxel_margin` bounds the vertex offsets; the rest as in
    `SparseUnetVaeDecoder` (with out_channels = 7 and pred_subdiv = True fixed).
    """

    def __init__(
        self,
        resolution: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        up_block_type: list[str],
        block_args: list[dict[str, Any]] | None = None,
        voxel_margin: float = 0.5,
        use_fp16: bool = False,
    ):
        super().__init__(
            DUAL_GRID_CHANNELS,
            model_channels,
            latent_channels,
            num_blocks,
            block_type,
            up_block_type,
            block_args=block_args,
            use_fp16=use_fp16,
            pred_subdiv=True,
        )
        self.resolution = resolution
        self.voxel_margin = voxel_margin

    def set_resolution(self, resolution: int) -> None:
        """Grid side of the decoded voxels (latent grid side x 2^num_upsamples)."""
        self.resolution = resolution

    def forward(
        self, x: SparseTensor, return_subs: bool = False
    ) -> SparseTensor | tuple[SparseTensor, list[SparseTensor]]:
        """Decode a shape latent.

        Args:
            x: (N, latent_channels) de-normalised shape latent on (N, 4) int32 latent-grid coords.
            return_subs: also return the per-level (N_i, 8) subdivision logits, the `guide_subs` of the texture
                decoder.

        Returns:
            (M, 7) raw features on the final voxels (read them with `dual_grid`), plus the logits if return_subs.
        """
        return super().forward(x, guide_subs=None, return_subs=return_subs)

    @torch.no_grad()
    def upsample(self, x: SparseTensor, upsample_times: int = 4) -> torch.Tensor:
        """(M, 4) int32 coords after `upsample_times` levels (latent grid x 2^upsample_times), no output head.

        The cascade uses `upsample(slat, 4)` to get the 16x grid the high-resolution latent is quantised from.
        """
        if not 0 <= upsample_times <= self.num_upsamples:
            raise ValueError(f"upsample_times must be in [0, {self.num_upsamples}], got {upsample_times}")
        h, _ = self._run_levels(x, upsample_times, None)
        return h.coords

    def dual_grid(self, h: SparseTensor) -> list[FlexiDualGridVoxels]:
        """Interpret the raw (M, 7) output, one `FlexiDualGridVoxels` per batch item (computed in fp32).

        offset = (1 + 2 * margin) * sigmoid(h[:, 0:3]) - margin; flags = h[:, 3:6] > 0; split = softplus(h[:, 6]).
        """
        feats = h.feats.float()
        offsets = (1 + 2 * self.voxel_margin) * torch.sigmoid(feats[:, 0:3]) - self.voxel_margin
        flags = feats[:, 3:6] > 0
        split = F.softplus(feats[:, 6])
        coords = h.coords[:, 1:].to(torch.int32)
        return [
            FlexiDualGridVoxels(coords[rows], offsets[rows], flags[rows], split[rows], self.resolution)
            for rows in h.row_slices
        ]
