"""What the two flow transformers share outside their forward pass: the checks of their checkpoint arguments and
their initialisation (which released weights overwrite; it matters for training from scratch)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import CheckpointError


def check_flow_args(*, pe_mode: str, initialization: str, model_channels: int, num_heads: int) -> None:
    """Checkpoint json arguments the flow transformers do not support -> `CheckpointError` naming the key."""
    if pe_mode != "rope":
        raise CheckpointError(f"pe_mode={pe_mode!r} is not supported (the released TRELLIS.2 flows use 'rope')")
    if initialization not in ("vanilla", "scaled"):
        raise CheckpointError(f"initialization={initialization!r}; expected 'vanilla' or 'scaled'")
    if model_channels % num_heads:
        raise CheckpointError(f"model_channels={model_channels} is not divisible by num_heads={num_heads}")


@torch.no_grad()
def initialize_flow_weights(model: nn.Module, initialization: str) -> None:
    """Xavier Linears, zero biases, N(0, 0.02) timestep MLP, adaLN-Zero (zero adaLN output, zero `out_layer`).

    `scaled` additionally shrinks the residual output projections by 1/sqrt(2 num_blocks). `model` has the flow
    layout: `t_embedder`, `adaLN_modulation` (shared) or per-block ones, `blocks`, `out_layer`.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)
    adaln = [model.adaLN_modulation[1]] if model.share_mod else [blk.adaLN_modulation[1] for blk in model.blocks]
    for layer in adaln:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    if initialization == "scaled":
        factor = 1.0 / math.sqrt(2 * max(len(model.blocks), 1))
        for blk in model.blocks:
            for layer in (blk.self_attn.to_out, blk.cross_attn.to_out, blk.mlp.mlp[2]):
                layer.weight.mul_(factor)
    nn.init.zeros_(model.out_layer.weight)
    nn.init.zeros_(model.out_layer.bias)


__all__ = ["check_flow_args", "initialize_flow_weights"]
