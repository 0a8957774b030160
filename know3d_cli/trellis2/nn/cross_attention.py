"""Cross-attention from tokens to a dense context (DINOv3 image tokens, or projected editor tokens), and the
keys/values it prepares once per conditioning so that every sampler step reuses them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attention import AttentionBackend
from .norms import MultiHeadRMSNorm
from .token_layout import TokenLayout


@dataclass(frozen=True)
class AttentionContext:
    """What one cross-attention layer attends to, prepared once per conditioning and reusable across steps.

    Either `k`, `v`: (B, M, H, D) normalised keys and values, or `constant`: (C,) the layer's exact output for an
    all-zero context (every key is the normalised key bias, so attention is uniform and returns the value bias).
    """

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    constant: torch.Tensor | None = None


class CrossAttention(nn.Module):
    """Multi-head attention from tokens to a dense context `(B, M, Cc)`, q/k RMS norm, no RoPE.

    Parameters: `to_q (C, C)`, `to_kv (2C, Cc)`, `q_rms_norm.gamma`, `k_rms_norm.gamma` (H, D), `to_out (C, C)`.
    """

    def __init__(self, channels: int, context_channels: int, num_heads: int, qk_rms_norm: bool):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        self.channels = channels
        self.context_channels = context_channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.attention_backend = AttentionBackend.auto
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_channels, 2 * channels)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.qk_rms_norm = qk_rms_norm
        self.to_out = nn.Linear(channels, channels)

    def prepare(self, context: torch.Tensor) -> AttentionContext:
        """context: (B, M, Cc) -> normalised keys and values (B, M, H, D) in the layer's weight dtype."""
        kv = self.to_kv(context.to(self.to_kv.weight.dtype)).unflatten(-1, (2, self.num_heads, self.head_dim))
        k, v = kv.unbind(-3)
        if self.qk_rms_norm:
            k = self.k_rms_norm(k)
        return AttentionContext(k=k, v=v)

    def prepare_null(self) -> AttentionContext:
        """The exact output for an all-zero context: `to_out(value bias)`, the same for every token."""
        value_bias = self.to_kv.bias[self.channels :]
        return AttentionContext(constant=self.to_out(value_bias))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | AttentionContext, layout: TokenLayout
    ) -> torch.Tensor:
        """x: (B, L, C) or (N, C); context: (B, M, Cc) or a prepared `AttentionContext` -> same shape as x."""
        if isinstance(context, torch.Tensor):
            context = self.prepare(context)
        if context.constant is not None:
            return context.constant.to(x.dtype).expand_as(x)
        q = self.to_q(x).unflatten(-1, (self.num_heads, self.head_dim))
        if self.qk_rms_norm:
            q = self.q_rms_norm(q)
        out = layout.cross_attention(q, context.k.to(q.dtype), context.v.to(q.dtype), self.attention_backend)
        return self.to_out(out.flatten(-2))


@dataclass(frozen=True)
class CrossContext:
    """Every block's prepared image cross-attention context for one conditioning, reusable across sampler steps.

    `batch_size` is None for the null context (all-zero image tokens), which fits any batch.
    """

    blocks: tuple[AttentionContext, ...]
    batch_size: int | None

    @property
    def is_null(self) -> bool:
        return self.batch_size is None


@torch.no_grad()
def prepare_cross_context(
    layers: Sequence[CrossAttention], cond: torch.Tensor, null_shortcut: bool = True
) -> CrossContext:
    """Per-layer keys/values of image tokens `cond (B, M, Cc)`.

    With `null_shortcut`, all-zero tokens (the CFG negative) give `null_cross_context` instead: each layer's exact
    constant output (uniform attention over identical values)."""
    check_condition(layers, cond)
    if null_shortcut and not bool(cond.any()):
        return null_cross_context(layers)
    cond = cond.to(layers[0].to_kv.weight.dtype) if layers else cond
    return CrossContext(tuple(layer.prepare(cond) for layer in layers), cond.shape[0])


@torch.no_grad()
def null_cross_context(layers: Sequence[CrossAttention]) -> CrossContext:
    """The prepared context of all-zero image tokens (any batch size and token count)."""
    return CrossContext(tuple(layer.prepare_null() for layer in layers), None)


def per_layer_contexts(
    layers: Sequence[CrossAttention], cond: torch.Tensor | CrossContext, batch_size: int, dtype: torch.dtype
) -> tuple[torch.Tensor | AttentionContext, ...]:
    """What each layer attends to: the prepared contexts of a `CrossContext`, or raw tokens `(B, M, Cc)` cast to
    `dtype`; a context prepared for another model or batch is a ValueError."""
    if isinstance(cond, CrossContext):
        if len(cond.blocks) != len(layers):
            raise ValueError(f"context prepared for {len(cond.blocks)} blocks, model has {len(layers)}")
        if cond.batch_size is not None and cond.batch_size != batch_size:
            raise ValueError(f"context has batch {cond.batch_size}, input has batch {batch_size}")
        return cond.blocks
    check_condition(layers, cond)
    if cond.shape[0] != batch_size:
        raise ValueError(f"cond has batch {cond.shape[0]}, input has batch {batch_size}")
    return (cond.to(dtype),) * len(layers)


def check_condition(layers: Sequence[CrossAttention], cond: torch.Tensor) -> None:
    channels = layers[0].context_channels if layers else cond.shape[-1]
    if cond.ndim != 3 or cond.shape[-1] != channels:
        raise ValueError(f"cond must be (B, L, {channels}), got {tuple(cond.shape)}")


__all__ = [
    "AttentionContext",
    "CrossAttention",
    "CrossContext",
    "check_condition",
    "null_cross_context",
    "per_layer_contexts",
    "prepare_cross_context",
]
