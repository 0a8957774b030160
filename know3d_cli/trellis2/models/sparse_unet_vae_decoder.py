"""`SparseUnetVaeDecoder`: TRELLIS.2's sparse SC-VAE decoder (the texture decoder; base of the shape decoder)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..nn.precision import BlockPrecision
from ..sparse.conv import SubMConv3d
from ..sparse.tensor import SparseTensor
from .sparse_c2s_block import SparseResBlockC2S3d
from .sparse_convnext_block import SparseConvNeXtBlock3d

logger = logging.getLogger(__name__)

# Keys a checkpoint's `block_args` entries may carry. `use_checkpoint` (activation checkpointing) only matters
# for training and is accepted and ignored.
_CONVNEXT_ARGS = frozenset({"mlp_ratio", "use_checkpoint"})
_C2S_ARGS = frozenset({"use_checkpoint"})


class SparseUnetVaeDecoder(BlockPrecision, nn.Module):
    """Structured latent (N, latent_channels) on the latent grid -> (M, out_channels) on a 2^L times finer grid.

    `from_latent` Linear -> for each level i: `num_blocks[i]` SparseConvNeXtBlock3d(model_channels[i]) and, except
    at the last level, one SparseResBlockC2S3d(model_channels[i] -> model_channels[i+1]) at `blocks.{i}.{num_blocks[i]}`
    -> parameter-free LayerNorm (eps 1e-5) -> `output_layer` Linear.

    Precision (`BlockPrecision`): `from_latent`, the final LayerNorm and `output_layer` run in their own dtype
    (fp32); the blocks run in the dtype of their weights. Parameters are created in fp32; `convert_to_fp16()`
    reproduces the reference's `use_fp16` recipe (Linear and conv weights of the blocks in fp16, LayerNorms kept and
    computed in fp32). On CPU keep everything fp32.

    Args (names as in the checkpoint json):
        out_channels: features per output voxel (6 for the texture decoder).
        model_channels: channels per level, e.g. [1024, 512, 256, 128, 64].
        latent_channels: channels of the structured latent (32).
        num_blocks: ConvNeXt blocks per level, e.g. [4, 16, 8, 4, 0].
        block_type: per level; only "SparseConvNeXtBlock3d".
        up_block_type: per level transition; only "SparseResBlockC2S3d".
        block_args: per level extra block arguments (the released files have `[{}, ...]`).
        use_fp16: the reference runs the blocks in fp16 (see `convert_to_fp16`).
        pred_subdiv: predict subdivisions; False means `forward` follows `guide_subs`.
    """

    def __init__(
        self,
        out_channels: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        up_block_type: list[str],
        block_args: list[dict[str, Any]] | None = None,
        use_fp16: bool = False,
        pred_subdiv: bool = True,
    ):
        super().__init__()
        levels = len(model_channels)
        block_args = [{} for _ in range(levels)] if block_args is None else [dict(a) for a in block_args]
        if levels < 1 or len(num_blocks) != levels or len(block_type) != levels or len(block_args) != levels:
            raise ConfigError(
                f"{type(self).__name__}: model_channels, num_blocks, block_type and block_args need one entry per "
                f"level; got {len(model_channels)}, {len(num_blocks)}, {len(block_type)}, {len(block_args)}"
            )
        if len(up_block_type) != levels - 1:
            raise ConfigError(
                f"{type(self).__name__}: up_block_type needs {levels - 1} entries, got {len(up_block_type)}"
            )
        self.out_channels = out_channels
        self.model_channels = list(model_channels)
        self.latent_channels = latent_channels
        self.num_blocks = list(num_blocks)
        self.use_fp16 = use_fp16
        self.pred_subdiv = pred_subdiv

        self.from_latent = nn.Linear(latent_channels, model_channels[0])
        self.blocks = nn.ModuleList()
        for i in range(levels):
            _check_block(type(self).__name__, block_type[i], "SparseConvNeXtBlock3d", block_args[i], _CONVNEXT_ARGS)
            mlp_ratio = float(block_args[i].get("mlp_ratio", 4.0))
            level = nn.ModuleList(SparseConvNeXtBlock3d(model_channels[i], mlp_ratio) for _ in range(num_blocks[i]))
            if i < levels - 1:
                _check_block(type(self).__name__, up_block_type[i], "SparseResBlockC2S3d", block_args[i], _C2S_ARGS)
                level.append(SparseResBlockC2S3d(model_channels[i], model_channels[i + 1], pred_subdiv=pred_subdiv))
            self.blocks.append(level)
        self.output_layer = nn.Linear(model_channels[-1], out_channels)

    # ------------------------------------------------------------------------------------------- precision
    @property
    def num_upsamples(self) -> int:
        """Number of x2 channel-to-spatial levels (4 in the released decoders)."""
        return len(self.blocks) - 1

    def _block_layers(self) -> Iterator[nn.Module]:
        return (m for m in self.blocks.modules() if isinstance(m, (nn.Linear, SubMConv3d)))

    def _entry_layer(self) -> nn.Module:
        return self.from_latent

    # --------------------------------------------------------------------------------------------- forward
    def _run_levels(
        self, x: SparseTensor, levels: int, guide_subs: list[SparseTensor] | None
    ) -> tuple[SparseTensor, list[SparseTensor]]:
        """`from_latent` and the first `levels` levels (each ending in its C2S block); the blocks' dtype out."""
        h = x.replace(self.from_latent(x.feats.to(self.from_latent.weight.dtype)).to(self.blocks_dtype))
        subs: list[SparseTensor] = []
        for i in range(levels):
            *convnext, upsample = self.blocks[i]
            for block in convnext:
                h = block(h)
            h, sub = upsample(h, None if guide_subs is None else guide_subs[i])
            subs.append(sub)
        return h, subs

    def _check_guide(self, guide_subs: list[SparseTensor] | None) -> None:
        if self.pred_subdiv and guide_subs is not None:
            raise ValueError(f"{type(self).__name__}(pred_subdiv=True) predicts subdivisions; drop guide_subs")
        if not self.pred_subdiv and (guide_subs is None or len(guide_subs) != self.num_upsamples):
            raise ValueError(
                f"{type(self).__name__}(pred_subdiv=False) needs guide_subs: the {self.num_upsamples} "
                f"subdivision-logit tensors returned by the shape decoder with return_subs=True"
            )

    def forward(
        self,
        x: SparseTensor,
        guide_subs: list[SparseTensor] | None = None,
        return_subs: bool = False,
    ) -> SparseTensor | tuple[SparseTensor, list[SparseTensor]]:
        """Decode a structured latent.

        Args:
            x: (N, latent_channels) de-normalised latent on (N, 4) int32 latent-grid coords.
            guide_subs: (pred_subdiv=False only) per C2S level, the (N_i, 8) subdivision logits of a decoder that
                ran on the same latent coords (voxel i of level i is a child with logit > 0 of level i-1).
            return_subs: (pred_subdiv=True only) also return the predicted logits.

        Returns:
            (M, out_channels) features in `x`'s dtype on the final voxels, plus the list of logits if return_subs.
        """
        self._check_guide(guide_subs)
        if return_subs and not self.pred_subdiv:
            raise ValueError(f"{type(self).__name__}(pred_subdiv=False) has no subdivisions to return")
        h, subs = self._run_levels(x, self.num_upsamples, guide_subs)
        for block in self.blocks[-1]:
            h = block(h)
        feats = h.feats.to(self.output_layer.weight.dtype)
        feats = self.output_layer(F.layer_norm(feats.float(), feats.shape[-1:]).to(feats.dtype))
        out = h.replace(feats.to(x.feats.dtype))
        return (out, subs) if return_subs else out


def _check_block(owner: str, name: str, expected: str, args: dict[str, Any], allowed: frozenset[str]) -> None:
    if name != expected:
        raise ConfigError(f"{owner}: block type {name!r} is not supported (only {expected!r})")
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ConfigError(f"{owner}: unsupported block_args {unknown} for {name} (allowed: {sorted(allowed)})")
