"""Sinusoidal timestep embedding followed by an MLP (`t_embedder.mlp.{0,2}`)."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_sinusoids(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """`[cos(t f), sin(t f)]` with `f_i = exp(-ln(max_period) i / (dim // 2))` (cos first).

    Args:
        t: (B,) model time (the sampler passes 1000 t).
        dim: embedding size (odd sizes get a trailing zero column).

    Returns:
        (B, dim) fp32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, C): sinusoids of size `frequency_size` -> Linear -> SiLU -> Linear.

    Parameters: `mlp.0 (C, frequency_size)`, `mlp.2 (C, C)` (+ biases).
    """

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) model time -> (B, C) in the dtype of the MLP weights."""
        emb = timestep_sinusoids(t, self.frequency_size)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))
