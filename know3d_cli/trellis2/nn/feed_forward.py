"""The position-wise MLP of the flow blocks."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """Linear(C -> hidden) -> GELU (tanh) -> Linear(hidden -> C); keys `mlp.0`, `mlp.2`."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


__all__ = ["FeedForward"]
