"""The reference mixed precision of the TRELLIS.2 transformers (spec 2.2): block Linears in the checkpoint's
`dtype`, everything else in fp32."""

from __future__ import annotations

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


__all__ = ["dtype_from_name", "linears_in_dtype"]
