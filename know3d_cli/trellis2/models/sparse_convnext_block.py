"""`SparseConvNeXtBlock3d`: the resolution-preserving block of the TRELLIS.2 sparse SC-VAE decoders."""

from __future__ import annotations

from torch import nn

from ..sparse.conv import SubMConv3d
from ..sparse.norm import LayerNorm32
from ..sparse.tensor import SparseTensor


class SparseConvNeXtBlock3d(nn.Module):
    """`x + MLP(LN(subm_conv3x3x3(x)))`, MLP = Linear(C -> r*C) -> SiLU -> Linear(r*C -> C).

    Args:
        channels: C.
        mlp_ratio: r (4.0 in every released decoder).

    Parameters: `conv.{weight (C, 3, 3, 3, C), bias}`, `norm.{weight, bias} (C,)`, `mlp.0.*`, `mlp.2.*`.
    """

    def __init__(self, channels: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.conv = SubMConv3d(channels, channels)
        self.norm = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU(), nn.Linear(hidden, channels))

    def forward(self, x: SparseTensor) -> SparseTensor:
        """x: (N, C) -> (N, C) on the same coords."""
        h = self.conv(x).feats
        h = self.mlp(self.norm(h))
        return x.replace(x.feats + h)
