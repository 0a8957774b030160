"""`SLatFlowModel`: the sparse flow transformer of TRELLIS.2's shape and texture stages (`slat_flow_*`).

Predicts the velocity of a structured latent, a `SparseTensor` of `(N, in)` features on latent-grid voxels, from
DINOv3 image tokens. The texture flows also receive the normalised shape latent as `concat_cond` (channels
appended to x). RoPE uses the voxel coordinates, so the model is grid-size agnostic (`resolution` is unused). Built
like `SparseStructureFlowModel`, with packed sparse tokens instead of a dense grid; read `forward` top to bottom.
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
from ..nn.rope import DEFAULT_ROPE_FREQ, rope_phases
from ..nn.timestep import TimestepEmbedder
from ..nn.token_layout import PackedLayout
from ..sparse.coordinate_cache import RopeKey
from ..sparse.tensor import SparseTensor
from .flow_base import FlowModelBase

logger = logging.getLogger(__name__)


class SLatFlowModel(FlowModelBase):
    """Sparse flow transformer on voxel tokens.

    Args (names as in the checkpoint json):
        resolution: nominal latent grid side (32 or 64); recorded, not used by the forward pass.
        in_channels: input channels, including `concat_cond` channels (shape: 32; texture: 32 + 32).
        out_channels: velocity channels (32).
        model_channels, cond_channels, num_blocks, num_heads, mlp_ratio, pe_mode, rope_freq, share_mod,
        initialization, qk_rms_norm, qk_rms_norm_cross, dtype: as in `SparseStructureFlowModel`.

    RoPE phases are cached on the input's coordinate set (`SparseTensor.cache.rope_phases`, shared by tensors made
    with `replace`), so the sampler's steps on one coordinate set compute them once.
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
        self.rope_freq = (float(rope_freq[0]), float(rope_freq[1]))
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

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        x: SparseTensor,
        t: torch.Tensor,
        cond: torch.Tensor | CrossContext,
        concat_cond: SparseTensor | None = None,
        editor: EditorConditioning | None = None,
    ) -> SparseTensor:
        """Velocity of the structured latent.

        Args:
            x: (N, in - Cconcat) noisy latent feats on (N, 4) coords.
            t: (B,) or scalar model time (1000 t).
            cond: (B, M, Cc) image tokens, or a `CrossContext` from `prepare_context` / `null_context`.
            concat_cond: (N, Cconcat) extra feats on the same coords, appended to x's channels.
            editor: optional editor conditioning (a Know3D `EditorCondition`: adapter + projected editor tokens).

        Returns:
            `x.replace((N, out) fp32 velocity)` on x's coords and cache.
        """
        feats = x.feats
        if concat_cond is not None:
            if len(concat_cond) != len(x):
                raise ValueError(f"concat_cond has {len(concat_cond)} voxels, x has {len(x)}")
            feats = torch.cat([feats, concat_cond.feats.to(feats.dtype)], dim=-1)  # (N, in)
        layout = PackedLayout.from_sparse(x)
        batch = layout.batch_size
        contexts = per_layer_contexts([blk.cross_attn for blk in self.blocks], cond, batch, self.compute_dtype)

        mod = self.modulation(t, batch)  # (B, 6C): timestep -> shared adaLN input of every block

        # voxel feats -> tokens (N, C), fp32 input layer
        if feats.shape[-1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {feats.shape[-1]}")
        h = self.input_layer(feats.to(self.input_layer.weight.dtype)).to(self.compute_dtype)

        phases = self._phases(x)  # (N, D/2)
        if editor is not None:
            editor.check(self.model_channels, self.num_blocks, batch)
        for index, (block, context) in enumerate(zip(self.blocks, contexts)):
            h = block(h, mod, context, layout, phases, editor.hook(index) if editor is not None else None)

        # parameter-free final LN (eps 1e-5) and the fp32 output layer
        h = h.to(self.out_layer.weight.dtype)
        h = F.layer_norm(h.float(), h.shape[-1:]).to(h.dtype)
        return x.replace(self.out_layer(h))  # (N, out)

    # ------------------------------------------------------------------------------------------------ RoPE
    def _phases(self, x: SparseTensor) -> torch.Tensor:
        key = RopeKey(self.head_dim, self.rope_freq)
        if key not in x.cache.rope_phases:
            x.cache.rope_phases[key] = rope_phases(x.coords[:, 1:], self.head_dim, self.rope_freq)
        return x.cache.rope_phases[key]


__all__ = ["SLatFlowModel"]
