"""`SparseStructureEncoder`: the dense 3-D conv encoder of the stage-1 latent (TRELLIS v1,
`microsoft/TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16`), the inverse of `SparseStructureDecoder`.

Input: the 64^3 occupancy of an asset as a float `(B, 1, 64, 64, 64)` grid, 1.0 at occupied voxels and 0.0
elsewhere, indexed `[b, 0, x, y, z]` with the axes of the sparse coords (TRELLIS.2 fills it from the coords of the
asset's shape latent at 1024, whose grid is 64^3). Output: the posterior of the `(B, 8, 16, 16, 16)` latent the
sparse-structure flow generates (not normalised; TRELLIS.2 uses it as is).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch import nn

from ...errors import CheckpointError
from ..nn.precision import BlockPrecision
from .latent_posterior import LatentPosterior
from .sparse_structure_decoder import ChannelLayerNorm3d, ResBlock3d

logger = logging.getLogger(__name__)

STRIDE = 2  # each Downsample3d halves every spatial side


class Downsample3d(nn.Module):
    """Conv3d with a 2x2x2 kernel and stride 2: (B, C, X, Y, Z) -> (B, Co, X/2, Y/2, Z/2).

    Parameters: `conv.{weight (Co, C, 2, 2, 2), bias (Co,)}`.
    """

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, out_channels, STRIDE, stride=STRIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SparseStructureEncoder(BlockPrecision, nn.Module):
    """Dense encoder of a binary occupancy grid to the stage-1 latent posterior.

    `input_layer` Conv3d(in -> channels[0]) -> `blocks`: per level l, `num_res_blocks` ResBlock3d(channels[l]) and,
    except at the last level, a Downsample3d (channels[l] -> channels[l+1], /2) -> `middle_block`:
    `num_res_blocks_middle` ResBlock3d(channels[-1]) -> `out_layer` = [ChannelLayerNorm3d, SiLU,
    Conv3d(channels[-1] -> 2 latent)] (mean, then log-variance). The released encoder ([32, 128, 512]) has `blocks.2`
    and `blocks.5` as its Downsample3d.

    Precision (`BlockPrecision`): `convert_to_fp16()` puts the Conv3d weights of `blocks` and `middle_block` in fp16;
    `input_layer`, `out_layer` and every norm stay fp32 (norms compute in fp32 anyway).

    Args (names as in the checkpoint json):
        in_channels: channels of the input grid (1: occupancy).
        latent_channels: channels of the latent (8).
        num_res_blocks: ResBlock3d per level (2).
        channels: channels per level, e.g. [32, 128, 512]; len(channels) - 1 /2 downsamplings.
        num_res_blocks_middle: ResBlock3d in `middle_block` (2).
        norm_type: only "layer" (channel LayerNorm) is supported.
        use_fp16: whether the reference runs the blocks in fp16 (applied by `convert_to_fp16`).
    """

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        num_res_blocks: int,
        channels: list[int],
        num_res_blocks_middle: int = 2,
        norm_type: str = "layer",
        use_fp16: bool = False,
    ):
        super().__init__()
        if norm_type != "layer":
            raise CheckpointError(f"SparseStructureEncoder: norm_type={norm_type!r} is not supported (only 'layer')")
        if not channels:
            raise CheckpointError("SparseStructureEncoder: channels must list at least one level")
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.num_res_blocks = num_res_blocks
        self.num_res_blocks_middle = num_res_blocks_middle
        self.channels = list(channels)
        self.norm_type = norm_type
        self.use_fp16 = use_fp16

        self.input_layer = nn.Conv3d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for level, ch in enumerate(channels):
            self.blocks.extend(ResBlock3d(ch) for _ in range(num_res_blocks))
            if level < len(channels) - 1:
                self.blocks.append(Downsample3d(ch, channels[level + 1]))
        self.middle_block = nn.Sequential(*(ResBlock3d(channels[-1]) for _ in range(num_res_blocks_middle)))
        self.out_layer = nn.Sequential(
            ChannelLayerNorm3d(channels[-1], eps=1e-5),
            nn.SiLU(),
            nn.Conv3d(channels[-1], 2 * latent_channels, 3, padding=1),
        )

    # ------------------------------------------------------------------------------------------- precision
    @property
    def downsample_factor(self) -> int:
        """Input side / latent side (4 for the released encoder: 64^3 -> 16^3)."""
        return STRIDE ** (len(self.channels) - 1)

    def _block_layers(self) -> Iterator[nn.Module]:
        return (m for m in (*self.blocks.modules(), *self.middle_block.modules()) if isinstance(m, nn.Conv3d))

    # --------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> LatentPosterior:
        """Latent posterior of an occupancy grid.

        Args:
            x: (B, in_channels, R, R, R) float occupancy (R = 64 in TRELLIS.2; any multiple of
                `downsample_factor`).

        Returns:
            fp32 `mean` and `logvar`, each (B, latent_channels, R / 4, R / 4, R / 4); `coords` is None.
        """
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}")
        if any(side % self.downsample_factor for side in x.shape[2:]):
            raise ValueError(f"grid sides must be multiples of {self.downsample_factor}, got {tuple(x.shape[2:])}")
        h = self.input_layer(x.to(self.input_layer.weight.dtype))
        h = h.to(self.blocks_dtype)
        for block in self.blocks:
            h = block(h)
        h = self.middle_block(h)
        h = self.out_layer(h.to(self.out_layer[2].weight.dtype)).float()
        mean, logvar = h.chunk(2, dim=1)
        return LatentPosterior(mean.contiguous(), logvar.contiguous())


__all__ = ["Downsample3d", "SparseStructureEncoder"]
