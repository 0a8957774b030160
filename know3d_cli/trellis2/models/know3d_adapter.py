"""`Know3dAdapter`: the extra, zero-initialised cross-attention through which editor hidden states enter TRELLIS.2.

Design (know3d_method.md section 2): editor tokens `(B, h, w, ext_channels)` (the tapped Qwen-Image-Edit hidden
states; "ext" in the file format = external, i.e. editor, tokens) -> optional 2x2 average pooling -> `ext_proj` =
LayerNorm -> Linear(ext -> proj) -> GELU -> Linear(proj -> proj) -> + fixed 2-D sin-cos position embedding over the
(h, w) grid. In each chosen block i of a flow model, after the image cross-attention and before the FFN:
`x = x + ext_attn(LN(x), tokens)` with its own q/kv/out projections and q/k RMS norms. `to_out` starts at zero
(weight and bias), so an untrained adapter leaves the base model's output bit-identical.

The adapter is never a submodule of a flow model: its tensors (`ext_proj.*`, `blocks.{i}.ext_attn.*`, names fixed by
the file format) live in their own state_dict / safetensors with a json of `config()`, and it reaches a model's
forward as `editor=` through `EditorCondition`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError, ConfigError
from ..nn.cross_attention import AttentionContext, CrossAttention
from ..nn.modulated_block import EditorHook
from ..nn.norms import LayerNorm32
from ..nn.precision import linears_in_dtype
from ..nn.token_layout import TokenLayout

logger = logging.getLogger(__name__)


def sincos_position_embedding_2d(height: int, width: int, channels: int, device: torch.device | None = None):
    """Fixed 2-D sin-cos embedding of a row-major (h, w) token grid.

    The first half of the channels encodes the row, the second half the column; each half is
    `[sin(p w_k), cos(p w_k)]` with `w_k = 1 / 10000^(k / (channels / 4))`.

    Returns:
        (h * w, channels) fp32.
    """
    if channels % 4:
        raise ValueError(f"the 2-D sin-cos embedding needs channels divisible by 4, got {channels}")
    quarter = channels // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # (h*w, quarter)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1)


class EditorCrossAttention(CrossAttention):
    """`CrossAttention` on its own affine LayerNorm of x, with `to_out` zero-initialised.

    Parameters: `norm.{weight, bias} (C,)`, `to_q`, `to_kv (2C, proj)`, `q_rms_norm.gamma`, `k_rms_norm.gamma`,
    `to_out`.
    """

    def __init__(self, channels: int, context_channels: int, num_heads: int, qk_rms_norm: bool):
        super().__init__(channels, context_channels, num_heads, qk_rms_norm)
        self.norm = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | AttentionContext, layout: TokenLayout
    ) -> torch.Tensor:
        """x: (B, L, C) or (N, C) block tokens; context: (B, T, proj) or prepared -> residual, same shape and
        dtype as x (the adapter may run in another precision than the base blocks)."""
        h = self.norm(x).to(self.to_q.weight.dtype)
        return super().forward(h, context, layout).to(x.dtype)


class Know3dAdapter(nn.Module):
    """Projector + per-block extra cross-attention for editor hidden states.

    Args (the adapter json `args`):
        ext_channels: channels of the tapped editor tokens (Qwen-Image-Edit MMDiT: 3072).
        proj_channels: channels of the projected tokens the blocks attend to.
        model_channels: C of the flow model it plugs into (1536).
        num_heads: heads of the extra attention (head dim C / heads).
        blocks: indices of the flow-model blocks that get an `ext_attn`.
        pool: 1 (no pooling) or 2 (2x2 average pooling of the token grid before projection).
        qk_rms_norm: RMS-normalise q/k of the extra attention.

    Parameters: `ext_proj.0` (LayerNorm), `ext_proj.1`, `ext_proj.3` (Linear), `blocks.{i}.ext_attn.*`.
    """

    def __init__(
        self,
        ext_channels: int = 3072,
        proj_channels: int = 1024,
        model_channels: int = 1536,
        num_heads: int = 12,
        blocks: Sequence[int] = tuple(range(30)),
        pool: int = 1,
        qk_rms_norm: bool = True,
    ):
        super().__init__()
        block_ids = [int(i) for i in blocks]
        if not block_ids or len(set(block_ids)) != len(block_ids) or min(block_ids) < 0:
            raise CheckpointError(f"adapter blocks must be distinct non-negative indices, got {list(blocks)}")
        if pool not in (1, 2):
            raise CheckpointError(f"adapter pool must be 1 or 2, got {pool}")
        if proj_channels % 4:
            raise CheckpointError(f"adapter proj_channels must be divisible by 4, got {proj_channels}")
        self.ext_channels = ext_channels
        self.proj_channels = proj_channels
        self.model_channels = model_channels
        self.num_heads = num_heads
        self.block_ids = tuple(sorted(block_ids))
        self.pool = pool
        self.qk_rms_norm = qk_rms_norm

        self.ext_proj = nn.Sequential(
            LayerNorm32(ext_channels, elementwise_affine=True, eps=1e-6),
            nn.Linear(ext_channels, proj_channels),
            nn.GELU(),
            nn.Linear(proj_channels, proj_channels),
        )
        self.blocks = nn.ModuleDict(
            {
                str(i): nn.ModuleDict(
                    {"ext_attn": EditorCrossAttention(model_channels, proj_channels, num_heads, qk_rms_norm)}
                )
                for i in self.block_ids
            }
        )
        self._init_projection()

    @torch.no_grad()
    def _init_projection(self) -> None:
        for layer in (self.ext_proj[1], self.ext_proj[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def config(self) -> dict[str, Any]:
        """The json `args` that rebuild this adapter: `Know3dAdapter(**adapter.config())`."""
        return {
            "ext_channels": self.ext_channels,
            "proj_channels": self.proj_channels,
            "model_channels": self.model_channels,
            "num_heads": self.num_heads,
            "blocks": list(self.block_ids),
            "pool": self.pool,
            "qk_rms_norm": self.qk_rms_norm,
        }

    def editor_attention(self, block_index: int) -> EditorCrossAttention | None:
        """The extra cross-attention of flow block `block_index` (`blocks.<i>.ext_attn`), None when not adapted."""
        key = str(block_index)
        return self.blocks[key]["ext_attn"] if key in self.blocks else None

    def apply_precision_policy(self, dtype: torch.dtype) -> Know3dAdapter:
        """Like the flow models: the `ext_attn` Linears in `dtype`, the projector, norms and gammas in fp32."""
        return linears_in_dtype(self, self.blocks, dtype)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Editor tokens -> the tokens the blocks attend to.

        Args:
            tokens: (B, h, w, ext_channels) editor hidden states on their token grid.

        Returns:
            (B, h' * w', proj_channels) fp32, h' = h / pool, w' = w / pool, row-major.
        """
        if tokens.ndim != 4 or tokens.shape[-1] != self.ext_channels:
            raise ValueError(f"editor tokens must be (B, h, w, {self.ext_channels}), got {tuple(tokens.shape)}")
        tokens = tokens.to(self.ext_proj[1].weight.dtype)
        if self.pool > 1:
            height, width = tokens.shape[1:3]
            if height % self.pool or width % self.pool:
                raise ConfigError(
                    f"adapter pool={self.pool} needs an even editor token grid, got {height}x{width}; "
                    "change editor.resolution or use an adapter with pool=1"
                )
            grid = F.avg_pool2d(tokens.permute(0, 3, 1, 2), self.pool)  # (B, ext, h', w')
            tokens = grid.permute(0, 2, 3, 1)
        batch, height, width, _ = tokens.shape
        proj = self.ext_proj(tokens.reshape(batch, height * width, self.ext_channels))  # (B, h'w', proj)
        return proj + sincos_position_embedding_2d(height, width, self.proj_channels, proj.device).to(proj.dtype)

    def condition(self, tokens: torch.Tensor) -> EditorCondition:
        """Project editor tokens `(B, h, w, ext_channels)` and prepare every adapted block's keys/values once
        (reused by all sampler steps). Pass the result as `editor=` to a flow model's forward; for a zero-token CFG
        negative, pass `adapter.condition(torch.zeros_like(tokens))`."""
        projected = self.project(tokens)
        contexts = {i: self.editor_attention(i).prepare(projected) for i in self.block_ids}
        return EditorCondition(adapter=self, tokens=projected, contexts=contexts)


@dataclass(frozen=True)
class EditorCondition:
    """An adapter plus its projected editor tokens, as a flow model's `editor` argument.

    Attributes:
        adapter: the `Know3dAdapter` whose `ext_attn` layers run.
        tokens: (B, T, proj_channels) projected editor tokens.
        contexts: per adapted block, the prepared keys/values of `tokens`.
    """

    adapter: Know3dAdapter
    tokens: torch.Tensor
    contexts: dict[int, AttentionContext]

    def check(self, model_channels: int, num_blocks: int, batch_size: int) -> None:
        """Raise `ConfigError` if the adapter does not fit a flow model of this width and depth, ValueError if the
        tokens do not fit the batch."""
        adapter = self.adapter
        if adapter.model_channels != model_channels:
            raise ConfigError(
                f"Know3D adapter is for model_channels={adapter.model_channels}, the flow model has {model_channels}"
            )
        if max(adapter.block_ids) >= num_blocks:
            raise ConfigError(
                f"Know3D adapter targets block {max(adapter.block_ids)}, the flow model has {num_blocks} blocks"
            )
        if self.tokens.shape[0] != batch_size:
            raise ValueError(f"editor tokens have batch {self.tokens.shape[0]}, input has batch {batch_size}")

    def hook(self, block_index: int) -> EditorHook | None:
        """The residual of flow block `block_index`, or None when the adapter does not cover it."""
        layer = self.adapter.editor_attention(block_index)
        if layer is None:
            return None
        context = self.contexts[block_index]
        return lambda x, layout: layer(x, context, layout)


__all__ = ["EditorCondition", "EditorCrossAttention", "Know3dAdapter", "sincos_position_embedding_2d"]
