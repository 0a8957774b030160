"""`BlockPrecision`: the TRELLIS.2 VAEs' reference `use_fp16` recipe, shared by the three encoders."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class BlockPrecision:
    """Mixin for a VAE whose heavy blocks may run in fp16 while its input/output layers and norms stay fp32.

    The host implements `_block_layers()` (the convs / Linears whose weights switch dtype) and has an `input_layer`
    (whose dtype `blocks_dtype` reports when there are no block layers). Parameters are created in fp32;
    `convert_to_fp16()` is what the reference does for `use_fp16: true` on GPUs. On CPU keep everything fp32.
    """

    input_layer: nn.Module

    def _block_layers(self) -> Iterator[nn.Module]:
        raise NotImplementedError

    @property
    def blocks_dtype(self) -> torch.dtype:
        """Dtype the blocks compute in (that of their layers' weights)."""
        for layer in self._block_layers():
            return layer.weight.dtype
        return self.input_layer.weight.dtype

    def convert_to_fp16(self) -> None:
        """The reference `use_fp16` recipe: block layer weights in fp16, everything else fp32."""
        self._convert_blocks(torch.float16)

    def convert_to_fp32(self) -> None:
        """Everything fp32 (CPU, or exact reference numerics)."""
        self._convert_blocks(torch.float32)

    def _convert_blocks(self, dtype: torch.dtype) -> None:
        for layer in list(self._block_layers()):
            layer.to(dtype)


__all__ = ["BlockPrecision"]
