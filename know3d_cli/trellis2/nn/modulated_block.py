"""The adaLN-modulated cross-attention block of the TRELLIS.2 flow models, and the hook through which editor
conditioning (the Know3D adapter) enters it.

Block math (spec section 2.1), with the optional editor hook between the image cross-attention and the FFN:

    h = LN(x) * (1 + scale_msa) + shift_msa;  x = x + gate_msa * SelfAttn(h)
    x = x + CrossAttn(LN_affine(x), image tokens)
    x = x + editor_hook(x)                            # Know3D adapter, only when given
    h = LN(x) * (1 + scale_mlp) + shift_mlp;  x = x + gate_mlp * FFN(h)
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn

from .cross_attention import AttentionContext, CrossAttention
from .feed_forward import FeedForward
from .norms import LayerNorm32
from .self_attention import SelfAttention
from .token_layout import TokenLayout

# Editor hook: (x (B, L, C) or (N, C), layout) -> residual added to x between the image cross-attention and the FFN.
EditorHook = Callable[[torch.Tensor, TokenLayout], torch.Tensor]


class EditorConditioning(Protocol):
    """What a flow model needs from editor conditioning (the Know3D adapter's `EditorCondition`)."""

    def check(self, model_channels: int, num_blocks: int, batch_size: int) -> None:
        """Raise if it does not fit a model of this width and depth, or the batch."""

    def hook(self, block_index: int) -> EditorHook | None:
        """The residual of block `block_index`, or None when that block is not adapted."""


class ModulatedTransformerCrossBlock(nn.Module):
    """adaLN-modulated self-attention, un-modulated image cross-attention, modulated FFN (dense or packed tokens).

    Args:
        channels: C.
        context_channels: Cc of the cross-attention context (DINOv3: 1024).
        num_heads: H (head dim C / H).
        mlp_ratio: FFN hidden = int(C * mlp_ratio).
        share_mod: take the modulation from the model's shared adaLN (+ own `modulation (6C,)`); else own
            `adaLN_modulation.1 (6C, C)`.
        qk_rms_norm: RMS-normalise self-attention q/k.
        qk_rms_norm_cross: RMS-normalise cross-attention q/k.
    """

    def __init__(
        self,
        channels: int,
        context_channels: int,
        num_heads: int,
        mlp_ratio: float,
        share_mod: bool,
        qk_rms_norm: bool,
        qk_rms_norm_cross: bool,
    ):
        super().__init__()
        self.share_mod = share_mod
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(channels, num_heads, qk_rms_norm)
        self.cross_attn = CrossAttention(channels, context_channels, num_heads, qk_rms_norm_cross)
        self.mlp = FeedForward(channels, int(channels * mlp_ratio))
        if share_mod:
            self.modulation = nn.Parameter(torch.randn(6 * channels) / channels**0.5)
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        context: torch.Tensor | AttentionContext,
        layout: TokenLayout,
        rope_phases: torch.Tensor | None = None,
        editor_hook: EditorHook | None = None,
    ) -> torch.Tensor:
        """One block.

        Args:
            x: (B, L, C) dense or (N, C) packed tokens.
            mod: (B, 6C) shared adaLN output (share_mod) or (B, C) timestep embedding.
            context: (B, M, Cc) image tokens or the prepared `AttentionContext`.
            layout: how the rows of x map to batch items.
            rope_phases: (L or N, D/2) complex64, or None for no RoPE.
            editor_hook: optional residual (editor conditioning) applied after the image cross-attention.

        Returns:
            Same shape and dtype as x.
        """
        if self.share_mod:
            mod = (self.modulation + mod).to(mod.dtype)
        else:
            mod = self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)  # each (B, C)
        b = layout.broadcast

        h = self.norm1(x) * (1 + b(scale_msa)) + b(shift_msa)
        x = x + self.self_attn(h, layout, rope_phases) * b(gate_msa)
        x = x + self.cross_attn(self.norm2(x), context, layout)
        if editor_hook is not None:
            x = x + editor_hook(x, layout)
        h = self.norm3(x) * (1 + b(scale_mlp)) + b(shift_mlp)
        return x + self.mlp(h) * b(gate_mlp)


__all__ = ["EditorConditioning", "EditorHook", "ModulatedTransformerCrossBlock"]
