"""The reference mixed precision of the TRELLIS.2 networks: the transformers' (spec 2.2: block Linears in the
checkpoint's `dtype`, everything else in fp32) and the VAEs' `use_fp16` recipe (`BlockPrecision`, shared by the
decoders and the encoders)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ...errors import CheckpointError

_DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_from_name(value: str | torch.dtype) -> torch.dtype:
    """A checkpoint json `dtype` ("bfloat16", ...) as a torch dtype; an unsupported name is a `CheckpointError`."""
    if isinstance(value, torch.dtype):
        return value
    if value not in _DTYPE_NAMES:
        raise CheckpointError(f"dtype={value!r} is not supported; expected one of {sorted(_DTYPE_NAMES)}")
    return _DTYPE_NAMES[value]


def linears_in_dtype(model: nn.Module, blocks: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Every parameter of `model` in fp32, then the `nn.Linear`s inside `blocks` in `dtype`. Returns `model`."""
    for param in model.parameters():
        param.data = param.data.float()
    for module in blocks.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)
    return model


class BlockPrecision:
    """Mixin for a VAE whose heavy blocks may run in fp16 while its input/output layers and norms stay fp32.

    The host implements `_block_layers()` (the convs / Linears whose weights switch dtype) and has an `input_layer`
    (the layer before the blocks, whose dtype `blocks_dtype` reports when there are no block layers; a host whose
    first layer has another name overrides `_entry_layer`). Parameters are created in fp32; `convert_to_fp16()` is
    what the reference does for `use_fp16: true` on GPUs. On CPU keep everything fp32.
    """

    input_layer: nn.Module

    def _block_layers(self) -> Iterator[nn.Module]:
        raise NotImplementedError

    def _entry_layer(self) -> nn.Module:
        return self.input_layer

    @property
    def blocks_dtype(self) -> torch.dtype:
        """Dtype the blocks compute in (that of their layers' weights)."""
        for layer in self._block_layers():
            return layer.weight.dtype
        return self._entry_layer().weight.dtype

    def convert_to_fp16(self) -> None:
        """The reference `use_fp16` recipe: block layer weights in fp16, everything else fp32."""
        self._convert_blocks(torch.float16)

    def convert_to_fp32(self) -> None:
        """Everything fp32 (CPU, or exact reference numerics)."""
        self._convert_blocks(torch.float32)

    def _convert_blocks(self, dtype: torch.dtype) -> None:
        for layer in list(self._block_layers()):
            layer.to(dtype)


__all__ = ["BlockPrecision", "dtype_from_name", "linears_in_dtype"]
