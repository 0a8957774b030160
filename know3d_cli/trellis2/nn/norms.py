"""Normalisations of the TRELLIS.2 transformers, all evaluated in fp32 and cast back to the input dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..sparse.norm import LayerNorm32


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMS norm of queries/keys: `x / ||x||_2 * sqrt(D) * gamma[head]` (L2 eps 1e-12).

    Args:
        head_dim: D.
        num_heads: H.

    Parameters: `gamma (H, D)` (kept in fp32 by the precision policy).
    """

    def __init__(self, head_dim: int, num_heads: int):
        super().__init__()
        self.scale = head_dim**0.5
        self.gamma = nn.Parameter(torch.ones(num_heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., H, D) -> same shape and dtype."""
        return (F.normalize(x.float(), dim=-1) * self.scale * self.gamma.float()).to(x.dtype)


__all__ = ["LayerNorm32", "MultiHeadRMSNorm"]
