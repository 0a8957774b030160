"""`FlowModelBase`: what the two flow transformers share besides their modules and their forward pass.

Like transformers' `PreTrainedModel`, it has no constructor and no `forward`: each flow's file builds its modules
and writes its forward top to bottom. This base gives both the same conditioning preparation, timestep modulation,
precision policy and attention-backend switch, reading the attributes every flow sets (`t_embedder`,
`adaLN_modulation` when `share_mod`, `input_layer`, `blocks`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..nn.attention import AttentionBackend, set_attention_backend
from ..nn.cross_attention import CrossContext, null_cross_context, prepare_cross_context
from ..nn.precision import linears_in_dtype

logger = logging.getLogger(__name__)


class FlowModelBase(nn.Module):
    """Shared behaviour of `SparseStructureFlowModel` and `SLatFlowModel` (see the module docstring)."""

    share_mod: bool
    t_embedder: nn.Module
    input_layer: nn.Linear
    blocks: nn.ModuleList

    # ------------------------------------------------------------------------------------------ conditioning
    def prepare_context(self, cond: torch.Tensor, null_shortcut: bool = True) -> CrossContext:
        """Per-block cross-attention keys/values of image tokens `cond (B, M, Cc)`, reused across sampler steps;
        all-zero tokens (the CFG negative) give the exact `null_context` when `null_shortcut`."""
        return prepare_cross_context([blk.cross_attn for blk in self.blocks], cond, null_shortcut)

    def null_context(self) -> CrossContext:
        """The prepared context of all-zero image tokens (any batch size and token count)."""
        return null_cross_context([blk.cross_attn for blk in self.blocks])

    def modulation(self, t: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Model time `t` ((B,) or scalar, 1000 t) -> (B, 6C) shared adaLN input of every block (share_mod) or
        (B, C) timestep embedding, in the compute dtype."""
        t = t.reshape(-1).expand(batch_size) if t.numel() == 1 else t
        if t.shape != (batch_size,):
            raise ValueError(f"t must be ({batch_size},), got {tuple(t.shape)}")
        mod = self.t_embedder(t)
        if self.share_mod:
            mod = self.adaLN_modulation(mod)
        return mod.to(self.compute_dtype)

    # --------------------------------------------------------------------------------- precision, backends
    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype the blocks run in (that of their Linear weights)."""
        if not len(self.blocks):
            return self.input_layer.weight.dtype
        return self.blocks[0].self_attn.to_qkv.weight.dtype

    def apply_precision_policy(self, dtype: torch.dtype) -> FlowModelBase:
        """The reference mixed precision: `nn.Linear` weights and biases inside `blocks` in `dtype`, every other
        parameter (timestep MLP, shared adaLN, input/output layers, `modulation`, norm affines, RMS gammas) in fp32.
        `apply_precision_policy(torch.float32)` makes everything fp32. Returns self."""
        if dtype == torch.float16:
            logger.warning("fp16 TRELLIS.2 transformers overflow in attention; bfloat16 is the reference dtype")
        return linears_in_dtype(self, self.blocks, dtype)

    def set_attention_backend(self, backend: AttentionBackend) -> None:
        """Attention implementation of every block."""
        set_attention_backend(self, backend)


__all__ = ["FlowModelBase"]
