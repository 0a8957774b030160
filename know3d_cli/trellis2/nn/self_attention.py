"""Multi-head self-attention of the flow blocks: per-head q/k RMS norm and 3-D RoPE."""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionBackend
from .norms import MultiHeadRMSNorm
from .rope import apply_rope
from .token_layout import TokenLayout


class SelfAttention(nn.Module):
    """Multi-head self-attention with per-head q/k RMS norm and optional 3-D RoPE.

    Parameters: `to_qkv (3C, C)` (channel index = s C + head D + d), `q_rms_norm.gamma`, `k_rms_norm.gamma` (H, D),
    `to_out (C, C)` (+ biases).
    """

    def __init__(self, channels: int, num_heads: int, qk_rms_norm: bool):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.attention_backend = AttentionBackend.auto
        self.to_qkv = nn.Linear(channels, 3 * channels)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.qk_rms_norm = qk_rms_norm
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, layout: TokenLayout, rope_phases: torch.Tensor | None) -> torch.Tensor:
        """x: (B, L, C) or (N, C); rope_phases: (L or N, D/2) complex or None -> same shape as x."""
        qkv = self.to_qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # (..., T, 3, H, D)
        q, k, v = qkv.unbind(-3)
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        if rope_phases is not None:
            q, k = apply_rope(q, rope_phases), apply_rope(k, rope_phases)
        out = layout.self_attention(q, k, v, self.attention_backend)
        return self.to_out(out.flatten(-2))


__all__ = ["SelfAttention"]
