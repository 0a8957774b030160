"""`SparseResBlockC2S3d`: the x2 upsampling residual block of the TRELLIS.2 sparse SC-VAE decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..sparse.conv import SubMConv3d
from ..sparse.norm import LayerNorm32
from ..sparse.spatial import CHILDREN, subdivide
from ..sparse.tensor import SparseTensor


class SparseResBlockC2S3d(nn.Module):
    """Residual block that doubles the resolution, keeping only the children the subdivision logits select.

    `h = conv1(SiLU(LN(x)))` (C -> 8*Co) -> channel-to-spatial with mask `logits > 0` -> LN (no affine) -> SiLU ->
    `conv2` (Co -> Co), plus the skip: channel-to-spatial of `x` itself (C/8 channels per child), each channel
    repeated Co / (C/8) times consecutively.

    Args:
        channels: C (divisible by 8).
        out_channels: Co (a multiple of C/8).
        pred_subdiv: predict the logits with `to_subdiv` (Linear C -> 8 on the un-normalised input); otherwise
            they must be passed in (the texture decoder follows the shape decoder's).

    Parameters: `norm1.{weight, bias} (C,)`, `conv1.{weight (8*Co, 3, 3, 3, C), bias}`,
    `conv2.{weight (Co, 3, 3, 3, Co), bias}`, `to_subdiv.{weight (8, C), bias (8,)}` (pred_subdiv only).
    """

    def __init__(self, channels: int, out_channels: int, pred_subdiv: bool = True):
        super().__init__()
        if channels % CHILDREN or out_channels % (channels // CHILDREN):
            raise ConfigError(
                f"SparseResBlockC2S3d({channels} -> {out_channels}): channels must be divisible by 8 and "
                f"out_channels a multiple of channels / 8"
            )
        self.channels = channels
        self.out_channels = out_channels
        self.pred_subdiv = pred_subdiv
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SubMConv3d(channels, out_channels * CHILDREN)
        self.conv2 = SubMConv3d(out_channels, out_channels)
        if pred_subdiv:
            self.to_subdiv = nn.Linear(channels, CHILDREN)

    def forward(
        self, x: SparseTensor, subdiv: SparseTensor | None = None
    ) -> tuple[SparseTensor, SparseTensor]:
        """Upsample one level.

        Args:
            x: (N, C) features on (N, 4) coords.
            subdiv: (N, 8) subdivision logits on the same coords; required when `pred_subdiv` is False,
                ignored otherwise.

        Returns:
            `(h, logits)`: h (M, Co) on the M selected children (ordered by parent row, then child index k,
            child k at offset `(k & 1, (k >> 1) & 1, (k >> 2) & 1)`), and the (N, 8) logits used.
        """
        if self.pred_subdiv:
            subdiv = x.replace(self.to_subdiv(x.feats))
        elif subdiv is None:
            raise ValueError("SparseResBlockC2S3d(pred_subdiv=False) needs the subdivision logits (guide_subs)")
        elif subdiv.feats.shape != (len(x), CHILDREN):
            raise ValueError(
                f"subdivision logits must be ({len(x)}, 8) on the block's input voxels, got {tuple(subdiv.feats.shape)}"
            )
        plan = subdivide(x.coords, subdiv.feats > 0)

        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        h = SparseTensor(plan.gather(h.feats), plan.coords)  # new coordinate set, new cache
        h = self.conv2(h.replace(F.silu(self.norm2(h.feats))))

        repeats = self.out_channels // (self.channels // CHILDREN)
        skip = torch.repeat_interleave(plan.gather(x.feats), repeats, dim=1)  # (M, Co)
        return h.replace(h.feats + skip), subdiv
