"""`SparseStructureDecoder`: the dense 3-D conv decoder of the stage-1 latent (TRELLIS v1,
`microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16`), which TRELLIS.2 reuses.

Decodes the `(B, 8, 16, 16, 16)` sparse-structure latent to occupancy logits `(B, 1, 64, 64, 64)`; a voxel is
occupied where the logit is > 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError
from ..nn.precision import BlockPrecision

logger = logging.getLogger(__name__)

SHUFFLE = 2  # each Upsample doubles every spatial side


class ChannelLayerNorm3d(nn.LayerNorm):
    """Affine LayerNorm over the channel axis of a dense `(B, C, X, Y, Z)` grid, computed in fp32.

    Parameters: `weight (C,)`, `bias (C,)` (kept fp32 by the precision policy).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, X, Y, Z) -> same shape and dtype."""
        h = x.float().movedim(1, -1)  # (B, X, Y, Z, C)
        h = F.layer_norm(h, self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return h.movedim(-1, 1).to(x.dtype)


def pixel_shuffle_3d(x: torch.Tensor, factor: int = SHUFFLE) -> torch.Tensor:
    """Move channel groups to space: channel `c f^3 + i f^2 + j f + k` lands in output channel c at spatial offset
    (i, j, k) along (X, Y, Z) of each `f^3` cell.

    Args:
        x: (B, C f^3, X, Y, Z).

    Returns:
        (B, C, f X, f Y, f Z).
    """
    b, c, sx, sy, sz = x.shape
    co = c // factor**3
    h = x.reshape(b, co, factor, factor, factor, sx, sy, sz)  # (B, C, i, j, k, X, Y, Z)
    h = h.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, X, i, Y, j, Z, k)
    return h.reshape(b, co, sx * factor, sy * factor, sz * factor)


class ResBlock3d(nn.Module):
    """`x + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))` at constant channels C.

    Parameters: `norm1`, `norm2` `.{weight, bias} (C,)`; `conv1`, `conv2` `.{weight (C, C, 3, 3, 3), bias (C,)}`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm3d(channels, eps=1e-5)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = ChannelLayerNorm3d(channels, eps=1e-5)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, X, Y, Z) in the conv dtype -> same shape and dtype."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Upsample3d(nn.Module):
    """Conv3d C -> 8 Co, then `pixel_shuffle_3d`: (B, C, X, Y, Z) -> (B, Co, 2X, 2Y, 2Z).

    Parameters: `conv.{weight (8 Co, C, 3, 3, 3), bias (8 Co,)}`.
    """

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, out_channels * SHUFFLE**3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.conv(x))


class SparseStructureDecoder(BlockPrecision, nn.Module):
    """Dense decoder of the stage-1 latent to occupancy logits.

    `input_layer` Conv3d(latent -> channels[0]) -> `middle_block`: `num_res_blocks_middle` ResBlock3d ->
    `blocks`: per level l, `num_res_blocks` ResBlock3d(channels[l]) and, except at the last level, an Upsample3d
    (channels[l] -> channels[l+1], x2) -> `out_layer` = [ChannelLayerNorm3d, SiLU, Conv3d(channels[-1] -> out)].
    The released decoder ([512, 128, 32]) has `blocks.2` and `blocks.5` as its Upsample3d.

    Precision (`BlockPrecision`): parameters are created in fp32. `convert_to_fp16()` is the reference `use_fp16`
    recipe for GPUs: the Conv3d weights of `middle_block` and `blocks` in fp16, `input_layer`, `out_layer` and every
    norm in fp32 (norms compute in fp32 anyway). On CPU keep everything fp32.

    Args (names as in the checkpoint json):
        out_channels: logit channels (1).
        latent_channels: channels of the latent (8).
        num_res_blocks: ResBlock3d per level (2).
        num_res_blocks_middle: ResBlock3d in `middle_block` (2).
        channels: channels per level, e.g. [512, 128, 32]; len(channels) - 1 x2 upsamplings.
        use_fp16: whether the reference runs the blocks in fp16 (applied by `convert_to_fp16`).
        norm_type: only "layer" (channel LayerNorm) is supported.
    """

    def __init__(
        self,
        out_channels: int,
        latent_channels: int,
        num_res_blocks: int,
        num_res_blocks_middle: int,
        channels: list[int],
        use_fp16: bool = False,
        norm_type: str = "layer",
    ):
        super().__init__()
        if norm_type != "layer":
            raise CheckpointError(f"SparseStructureDecoder: norm_type={norm_type!r} is not supported (only 'layer')")
        if not channels:
            raise CheckpointError("SparseStructureDecoder: channels must list at least one level")
        self.out_channels = out_channels
        self.latent_channels = latent_channels
        self.num_res_blocks = num_res_blocks
        self.num_res_blocks_middle = num_res_blocks_middle
        self.channels = list(channels)
        self.use_fp16 = use_fp16
        self.norm_type = norm_type

        self.input_layer = nn.Conv3d(latent_channels, channels[0], 3, padding=1)
        self.middle_block = nn.Sequential(*(ResBlock3d(channels[0]) for _ in range(num_res_blocks_middle)))
        self.blocks = nn.ModuleList()
        for level, ch in enumerate(channels):
            self.blocks.extend(ResBlock3d(ch) for _ in range(num_res_blocks))
            if level < len(channels) - 1:
                self.blocks.append(Upsample3d(ch, channels[level + 1]))
        self.out_layer = nn.Sequential(
            ChannelLayerNorm3d(channels[-1], eps=1e-5),
            nn.SiLU(),
            nn.Conv3d(channels[-1], out_channels, 3, padding=1),
        )

    # ------------------------------------------------------------------------------------------- precision
    @property
    def upsample_factor(self) -> int:
        """Output side / latent side (4 for the released decoder)."""
        return SHUFFLE ** (len(self.channels) - 1)

    def _block_layers(self) -> Iterator[nn.Module]:
        return (m for m in (*self.middle_block.modules(), *self.blocks.modules()) if isinstance(m, nn.Conv3d))

    # --------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Occupancy logits of the latent grid.

        Args:
            x: (B, latent_channels, R, R, R) latent (R = 16 in TRELLIS.2).

        Returns:
            (B, out_channels, 4R, 4R, 4R) fp32 logits (dtype of `out_layer`); occupied where > 0.
        """
        if x.ndim != 5 or x.shape[1] != self.latent_channels:
            raise ValueError(f"x must be (B, {self.latent_channels}, X, Y, Z), got {tuple(x.shape)}")
        h = self.input_layer(x.to(self.input_layer.weight.dtype))
        h = h.to(self.blocks_dtype)
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        h = h.to(self.out_layer[2].weight.dtype)
        return self.out_layer(h)


__all__ = ["ChannelLayerNorm3d", "ResBlock3d", "SparseStructureDecoder", "Upsample3d", "pixel_shuffle_3d"]
