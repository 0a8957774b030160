"""LayerNorm over voxel features that always computes in fp32 (the reference's LayerNorm32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm32(nn.LayerNorm):
    """`nn.LayerNorm` (same parameters and state_dict keys) evaluated in fp32 and cast back to the input dtype.

    The decoders keep these parameters in fp32 even when their blocks run in fp16.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)
