"""The module a training step differentiates: a TRELLIS.2 flow, optionally with a Know3D adapter.

Tensor in, tensor out (sparse latents travel as feats + coords), so DDP/FSDP hooks see plain tensors. With an
adapter, the flow is frozen and only the adapter trains; otherwise the flow trains. Gradient checkpointing
recomputes each flow block in the backward pass. The adapter's per-block keys/values of the editor tokens are
computed inside each block (`PerBlockEditorCondition`), so checkpointing recomputes them too instead of keeping all
blocks' keys/values alive for the backward pass (inference prepares them once for every sampler step instead).
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .models import EditorCondition, EditorHook, Know3dAdapter, SparseTensor

logger = logging.getLogger(__name__)


class FlowTrainingModule(nn.Module):
    """`flow` (+ `adapter`): the velocity of a noisy latent under DINOv3 (and editor) conditioning.

    Args:
        flow: `SparseStructureFlowModel` or `SLatFlowModel`.
        adapter: a `Know3dAdapter` (then the flow is frozen), or None (the flow trains).
        gradient_checkpointing: recompute each flow block during backward.
    """

    def __init__(self, flow: nn.Module, adapter: Know3dAdapter | None, gradient_checkpointing: bool):
        super().__init__()
        self.flow = flow
        self.adapter = adapter
        if adapter is not None:
            flow.requires_grad_(False)
            flow.eval()
        if gradient_checkpointing:
            for block in flow.blocks:
                enable_block_checkpointing(block)

    def train(self, mode: bool = True) -> FlowTrainingModule:
        super().train(mode)
        if self.adapter is not None:
            self.flow.eval()  # frozen base: no train-mode behaviour
        return self

    def trainable(self) -> nn.Module:
        """The submodule whose parameters the optimiser updates."""
        return self.adapter if self.adapter is not None else self.flow

    def forward(
        self,
        x_t: torch.Tensor,
        t_model: torch.Tensor,
        cond: torch.Tensor,
        editor_tokens: torch.Tensor | None = None,
        coords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted velocity.

        Args:
            x_t: dense (B, C, R, R, R) or sparse feats (N, C) noisy latent.
            t_model: (B,) model time (1000 t).
            cond: (B, T, C_dino) DINOv3 tokens (zeros where dropped).
            editor_tokens: (B, h, w, C_edit) editor hidden states (zeros where dropped); required with an adapter.
            coords: (N, 4) int32 (batch, x, y, z) of a sparse latent.

        Returns:
            The velocity, same shape as x_t.
        """
        editor = None
        if self.adapter is not None:
            if editor_tokens is None:
                raise ValueError("an adapter is being trained but no editor tokens were given")
            editor = PerBlockEditorCondition(self.adapter, editor_tokens)
        if coords is None:
            return self.flow(x_t, t_model, cond, editor=editor)
        return self.flow(SparseTensor(x_t, coords), t_model, cond, editor=editor).feats


class PerBlockEditorCondition:
    """A flow's `editor` argument (`EditorConditioning`) that projects the editor tokens once and prepares each
    adapted block's keys/values inside that block's forward (same values as `Know3dAdapter.condition`, different
    memory life)."""

    def __init__(self, adapter: Know3dAdapter, tokens: torch.Tensor):
        self.adapter = adapter
        self.tokens = adapter.project(tokens)  # (B, T, proj_channels)

    def check(self, model_channels: int, num_blocks: int, batch_size: int) -> None:
        EditorCondition(adapter=self.adapter, tokens=self.tokens, contexts={}).check(model_channels, num_blocks,
                                                                                      batch_size)

    def hook(self, block_index: int) -> EditorHook | None:
        layer = self.adapter.editor_attention(block_index)
        if layer is None:
            return None
        return lambda x, layout: layer(x, layer.prepare(self.tokens), layout)


def enable_block_checkpointing(block: nn.Module) -> None:
    """Make `block(...)` save only its inputs and recompute its activations in the backward pass."""
    forward = block.forward

    @functools.wraps(forward)
    def checkpointed(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed


__all__ = ["FlowTrainingModule", "PerBlockEditorCondition", "enable_block_checkpointing"]
