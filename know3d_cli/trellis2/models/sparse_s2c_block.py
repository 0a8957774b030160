"""`SparseResBlockS2C3d`: the x2 downsampling residual block of the TRELLIS.2 sparse SC-VAE encoders (the mirror of
`SparseResBlockC2S3d`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..sparse.conv import SubMConv3d
from ..sparse.norm import LayerNorm32
from ..sparse.spatial import CHILDREN, coarsen
from ..sparse.tensor import SparseTensor


class SparseResBlockS2C3d(nn.Module):
    """Residual block that halves the resolution, merging each 2x2x2 cell into one voxel.

    `h = conv1(SiLU(LN(x)))` (C -> Co/8) -> spatial-to-channel (each parent holds its 8 children's Co/8 channels,
    zeros for absent children) -> LN (no affine) -> SiLU -> `conv2` (Co -> Co), plus the skip: spatial-to-channel
    of `x` itself (8C channels per parent), averaged over consecutive groups of 8C/Co channels.

    Args:
        channels: C.
        out_channels: Co (divisible by 8, and dividing 8C).

    Parameters: `norm1.{weight, bias} (C,)`, `conv1.{weight (Co/8, 3, 3, 3, C), bias}`,
    `conv2.{weight (Co, 3, 3, 3, Co), bias}`.
    """

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        if out_channels % CHILDREN or (channels * CHILDREN) % out_channels:
            raise ConfigError(
                f"SparseResBlockS2C3d({channels} -> {out_channels}): out_channels must be divisible by 8 and "
                f"divide 8 * channels"
            )
        self.channels = channels
        self.out_channels = out_channels
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SubMConv3d(channels, out_channels // CHILDREN)
        self.conv2 = SubMConv3d(out_channels, out_channels)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Downsample one level.

        Args:
            x: (N, C) features on (N, 4) coords.

        Returns:
            (M, Co) on the M parent voxels `(b, x >> 1, y >> 1, z >> 1)`, sorted lexicographically.
        """
        plan = coarsen(x.coords)
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        h = SparseTensor(plan.scatter(h.feats), plan.coords)  # new coordinate set, new cache
        h = self.conv2(h.replace(F.silu(self.norm2(h.feats))))

        group = CHILDREN * self.channels // self.out_channels
        skip = plan.scatter(x.feats).reshape(len(h), self.out_channels, group).mean(dim=-1)  # (M, Co)
        return h.replace(h.feats + skip)
