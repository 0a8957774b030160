"""`SLatFlowModel`: the sparse flow transformer of TRELLIS.2's shape and texture stages (`slat_flow_*`).

Predicts the velocity of a structured latent, a `SparseTensor` of `(N, in)` features on latent-grid voxels, from
DINOv3 image tokens. The texture flows also receive the normalised shape latent as `concat_cond` (channels
appended to x). RoPE uses the voxel coordinates, so the model is grid-size agnostic (`resolution` is unused).
"""

from __future__ import annotations

import logging

import torch

from ..nn.rope import DEFAULT_ROPE_FREQ, rope_phases
from ..nn.transformer_block import CrossContext, ExtHookProvider, FlowTransformer, PackedLayout
from ..sparse.coordinate_cache import RopeKey
from ..sparse.tensor import SparseTensor

logger = logging.getLogger(__name__)


class SLatFlowModel(FlowTransformer):
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

    def _phases(self, x: SparseTensor) -> torch.Tensor:
        key = RopeKey(self.head_dim, self.rope_freq)
        if key not in x.cache.rope_phases:
            x.cache.rope_phases[key] = rope_phases(x.coords[:, 1:], self.head_dim, self.rope_freq)
        return x.cache.rope_phases[key]

    def forward(
        self,
        x: SparseTensor,
        t: torch.Tensor,
        cond: torch.Tensor | CrossContext,
        concat_cond: SparseTensor | None = None,
        ext: ExtHookProvider | None = None,
    ) -> SparseTensor:
        """Velocity of the structured latent.

        Args:
            x: (N, in - Cconcat) noisy latent feats on (N, 4) coords.
            t: (B,) model time (1000 t).
            cond: (B, M, Cc) image tokens, or a `CrossContext` from `prepare_context` / `null_context`.
            concat_cond: (N, Cconcat) extra feats on the same coords, appended to x's channels.
            ext: optional Know3D `ExtCondition` (adapter + projected tokens).

        Returns:
            `x.replace((N, out) fp32 velocity)` on x's coords and cache.
        """
        feats = x.feats
        if concat_cond is not None:
            if len(concat_cond) != len(x):
                raise ValueError(f"concat_cond has {len(concat_cond)} voxels, x has {len(x)}")
            feats = torch.cat([feats, concat_cond.feats.to(feats.dtype)], dim=-1)
        layout = PackedLayout.from_sparse(x)
        contexts = self._context(cond, layout.batch_size)
        mod = self._embed_time(t, layout.batch_size)

        h = self._input(feats)  # (N, C)
        h = self._run_blocks(h, mod, contexts, layout, self._phases(x), ext)
        return x.replace(self._output(h))
