"""`SparseStructureFlowModel`: the dense stage-1 flow transformer of TRELLIS.2 (`ss_flow_img_dit_1_3B_64_bf16`).

Predicts the flow velocity of the `(B, 8, 16, 16, 16)` sparse-structure latent from DINOv3 image tokens: the grid is
flattened channel-last to R^3 tokens (token index = x R^2 + y R + z), projected to C, run through the modulated
cross blocks with 3-D RoPE on the token coordinates, and projected back. Read `forward` top to bottom; the blocks
and attention layers are in `trellis2/nn/`, the conditioning preparation, timestep modulation and precision policy
shared with `SLatFlowModel` in `flow_base.py`.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.cross_attention import CrossContext, per_layer_contexts
from ..nn.flow_init import check_flow_args, initialize_flow_weights
from ..nn.modulated_block import EditorConditioning, ModulatedTransformerCrossBlock
from ..nn.precision import dtype_from_name
from ..nn.rope import DEFAULT_ROPE_FREQ, grid_coords, rope_phases
from ..nn.timestep import TimestepEmbedder
from ..nn.token_layout import DenseLayout
from .flow_base import FlowModelBase

logger = logging.getLogger(__name__)


class SparseStructureFlowModel(FlowModelBase):
    """Dense flow transformer on an R^3 latent grid.

    Args (names as in the checkpoint json):
        resolution: R, latent grid side (16).
        in_channels: latent channels in (8).
        out_channels: velocity channels out (8).
        model_channels: C (1536).
        cond_channels: image token channels (1024).
        num_blocks: transformer blocks (30).
        num_heads: attention heads (12; head dim C / heads).
        mlp_ratio: FFN hidden = int(C * mlp_ratio) (5.3334 -> 8192).
        pe_mode: position encoding; only "rope" is supported.
        rope_freq: (scale, theta) of the RoPE frequencies; accepted and recorded, but the RoPE table uses the default
            (1, 10000) as the reference's does (it builds its table without passing `rope_freq`; the structured-latent
            flows do honour it).
        share_mod: one adaLN for all blocks plus a per-block `modulation` vector.
        initialization: "vanilla" or "scaled" (training from scratch only).
        qk_rms_norm: RMS-normalise self-attention q/k.
        qk_rms_norm_cross: RMS-normalise cross-attention q/k.
        dtype: block dtype of the reference mixed precision ("bfloat16" in the release); recorded, applied by
            `apply_precision_policy`.

    Buffers: `rope_phases (R^3, D/2)` complex64, computed, not saved (`persistent=False`).
    """

    def __init__(
        self,
        resolution: int,
        in_channels: int,
        out_channels: int,
        model_channels: int,
        cond_channels: int,
        num_blocks: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        pe_mode: str = "rope",
        rope_freq: tuple[float, float] = DEFAULT_ROPE_FREQ,
        share_mod: bool = True,
        initialization: str = "vanilla",
        qk_rms_norm: bool = True,
        qk_rms_norm_cross: bool = True,
        dtype: str | torch.dtype = "float32",
    ):
        super().__init__()
        check_flow_args(pe_mode=pe_mode, initialization=initialization, model_channels=model_channels,
                        num_heads=num_heads)
        self.resolution = resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.cond_channels = cond_channels
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.head_dim = model_channels // num_heads
        self.rope_freq = (float(rope_freq[0]), float(rope_freq[1]))  # recorded; the table uses DEFAULT_ROPE_FREQ
        self.share_mod = share_mod
        self.reference_dtype = dtype_from_name(dtype)  # block dtype of the reference mixed precision

        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(model_channels, 6 * model_channels))
        self.input_layer = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList(
            ModulatedTransformerCrossBlock(
                model_channels, cond_channels, num_heads, mlp_ratio, share_mod, qk_rms_norm, qk_rms_norm_cross
            )
            for _ in range(num_blocks)
        )
        self.out_layer = nn.Linear(model_channels, out_channels)
        initialize_flow_weights(self, initialization)
        self.register_buffer("rope_phases", self._compute_rope_phases(None), persistent=False)

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | CrossContext,
        editor: EditorConditioning | None = None,
    ) -> torch.Tensor:
        """Velocity of the latent grid.

        Args:
            x: (B, in, R, R, R) noisy latent.
            t: (B,) or scalar model time (1000 t).
            cond: (B, M, Cc) image tokens, or a `CrossContext` from `prepare_context` / `null_context`.
            editor: optional editor conditioning (a Know3D `EditorCondition`: adapter + projected editor tokens).

        Returns:
            (B, out, R, R, R) fp32 velocity (dtype of `out_layer`).
        """
        res = self.resolution
        if x.ndim != 5 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != (res, res, res):
            raise ValueError(f"x must be (B, {self.in_channels}, {res}, {res}, {res}), got {tuple(x.shape)}")
        batch = x.shape[0]
        layout = DenseLayout(batch, res**3)
        contexts = per_layer_contexts([blk.cross_attn for blk in self.blocks], cond, batch, self.compute_dtype)

        mod = self.modulation(t, batch)  # (B, 6C): timestep -> shared adaLN input of every block

        # grid -> tokens: (B, in, R, R, R) -> (B, R^3, in) -> (B, R^3, C), fp32 input layer
        h = x.flatten(2).transpose(1, 2)
        h = self.input_layer(h.to(self.input_layer.weight.dtype)).to(self.compute_dtype)

        phases = self._phases(h.device)  # (R^3, D/2)
        if editor is not None:
            editor.check(self.model_channels, self.num_blocks, batch)
        for index, (block, context) in enumerate(zip(self.blocks, contexts)):
            h = block(h, mod, context, layout, phases, editor.hook(index) if editor is not None else None)

        # parameter-free final LN (eps 1e-5) and the fp32 output layer, then tokens -> grid
        h = h.to(self.out_layer.weight.dtype)
        h = F.layer_norm(h.float(), h.shape[-1:]).to(h.dtype)
        out = self.out_layer(h)  # (B, R^3, out)
        return out.transpose(1, 2).reshape(batch, self.out_channels, res, res, res)

    # ------------------------------------------------------------------------------------------------ RoPE
    def _compute_rope_phases(self, device: torch.device | None) -> torch.Tensor:
        return rope_phases(grid_coords(self.resolution, device), self.head_dim, DEFAULT_ROPE_FREQ)

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)compute `rope_phases` on `device` (default: where the parameters are). Needed after building on
        the meta device and loading with `assign=True`, or after `to_empty`."""
        device = torch.device(device) if device is not None else self.input_layer.weight.device
        self.rope_phases = self._compute_rope_phases(device)

    def _phases(self, device: torch.device) -> torch.Tensor:
        # `Module.to(dtype)` casts complex buffers to real too; recompute rather than use a damaged buffer.
        if self.rope_phases.dtype != torch.complex64 or self.rope_phases.device != device:
            self.init_buffers(device)
        return self.rope_phases


__all__ = ["SparseStructureFlowModel"]
