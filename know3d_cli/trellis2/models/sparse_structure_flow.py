"""`SparseStructureFlowModel`: the dense stage-1 flow transformer of TRELLIS.2 (`ss_flow_img_dit_1_3B_64_bf16`).

Predicts the flow velocity of the `(B, 8, 16, 16, 16)` sparse-structure latent from DINOv3 image tokens: the grid is
flattened channel-last to R^3 tokens (token index = x R^2 + y R + z), projected to C, run through the modulated
cross blocks with 3-D RoPE on the token coordinates, and projected back.
"""

from __future__ import annotations

import logging

import torch

from ..nn.rope import DEFAULT_ROPE_FREQ, grid_coords, rope_phases
from ..nn.transformer_block import CrossContext, DenseLayout, ExtHookProvider, FlowTransformer

logger = logging.getLogger(__name__)


class SparseStructureFlowModel(FlowTransformer):
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
        rope_freq: (scale, theta) of the RoPE frequencies.
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
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            model_channels=model_channels,
            cond_channels=cond_channels,
            num_blocks=num_blocks,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            pe_mode=pe_mode,
            rope_freq=rope_freq,
            share_mod=share_mod,
            initialization=initialization,
            qk_rms_norm=qk_rms_norm,
            qk_rms_norm_cross=qk_rms_norm_cross,
            dtype=dtype,
        )
        self.resolution = resolution
        self.register_buffer("rope_phases", self._compute_rope_phases(None), persistent=False)

    def _compute_rope_phases(self, device: torch.device | None) -> torch.Tensor:
        return rope_phases(grid_coords(self.resolution, device), self.head_dim, self.rope_freq)

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

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | CrossContext,
        ext: ExtHookProvider | None = None,
    ) -> torch.Tensor:
        """Velocity of the latent grid.

        Args:
            x: (B, in, R, R, R) noisy latent.
            t: (B,) model time (1000 t).
            cond: (B, M, Cc) image tokens, or a `CrossContext` from `prepare_context` / `null_context`.
            ext: optional Know3D `ExtCondition` (adapter + projected tokens).

        Returns:
            (B, out, R, R, R) fp32 velocity (dtype of `out_layer`).
        """
        res = self.resolution
        if x.ndim != 5 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != (res, res, res):
            raise ValueError(f"x must be (B, {self.in_channels}, {res}, {res}, {res}), got {tuple(x.shape)}")
        batch = x.shape[0]
        layout = DenseLayout(batch, res**3)
        contexts = self._context(cond, batch)
        mod = self._embed_time(t, batch)

        h = self._input(x.flatten(2).transpose(1, 2))  # (B, R^3, C)
        h = self._run_blocks(h, mod, contexts, layout, self._phases(h.device), ext)
        out = self._output(h)  # (B, R^3, out)
        return out.transpose(1, 2).reshape(batch, self.out_channels, res, res, res)
