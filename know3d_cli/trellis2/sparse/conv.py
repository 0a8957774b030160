"""Submanifold 3x3x3 sparse convolution layer with a per-layer, named compute backend.

The layer owns the parameters in the released checkpoints' (FlexGEMM) layout and calls one kernel from
`_KERNELS`, chosen by the layer's `backend` value (set once by the caller, never from a global or an env var).
A faster kernel (e.g. Triton on CUDA) is added as a new `ConvBackend` member plus a `_KERNELS` entry with the same
call signature, listed in `_AUTO_ORDER` ahead of the torch reference.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..backends import ConvBackend
from ...errors import BackendUnavailable
from .conv_torch import submanifold_conv3d
from .neighbors import neighbor_map
from .tensor import SparseTensor

logger = logging.getLogger(__name__)


# (x, weight (Co, 3, 3, 3, Ci), bias (Co,) or None, chunk_size) -> (N, Co) output features.
ConvFn = Callable[[SparseTensor, torch.Tensor, torch.Tensor | None, int | None], torch.Tensor]


@dataclass(frozen=True)
class ConvKernel:
    fn: ConvFn
    is_available: Callable[[torch.device], bool]  # usable for inputs on this device (imports done, device type ok)
    requirement: str  # what to install or change when it is not available


def _torch_conv(
    x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None, chunk_size: int | None
) -> torch.Tensor:
    return submanifold_conv3d(x.feats, neighbor_map(x), weight, bias, chunk_size=chunk_size)


_KERNELS: dict[ConvBackend, ConvKernel] = {
    ConvBackend.torch: ConvKernel(_torch_conv, lambda device: True, "nothing (pure PyTorch)"),
}
# Preference of `auto`, fastest first.
_AUTO_ORDER: tuple[ConvBackend, ...] = (ConvBackend.torch,)


def resolve_conv_backend(backend: ConvBackend, device: torch.device) -> ConvBackend:
    """The concrete backend that runs for inputs on `device`; an unusable explicit choice raises."""
    if backend is ConvBackend.auto:
        for candidate in _AUTO_ORDER:
            if _KERNELS[candidate].is_available(device):
                return candidate
        raise BackendUnavailable(f"no sparse conv backend can run on {device}")
    kernel = _KERNELS.get(backend)
    if kernel is None or not kernel.is_available(device):
        needs = kernel.requirement if kernel is not None else "an implementation"
        raise BackendUnavailable(
            f"runtime.sparse_conv={backend.value} cannot run on {device}; it needs {needs} "
            f"(or use runtime.sparse_conv=auto)"
        )
    return backend


class SubMConv3d(nn.Module):
    """Submanifold 3x3x3 convolution: outputs only at the input voxels, stride 1, zero outside active voxels.

    `out[p] = bias + sum_{k in {0,1,2}^3} weight[:, k] @ feats[p + k - 1]` over neighbours that exist in the same
    batch item; kernel index (i, j, k) is the offset (i-1, j-1, k-1) along (x, y, z). For a dense `nn.Conv3d`
    weight `W (Co, Ci, 3, 3, 3)` this layer's weight is `W.permute(0, 2, 3, 4, 1)`.

    Args:
        in_channels: Ci.
        out_channels: Co.
        bias: learn a (Co,) bias.
        backend: compute backend; `auto` resolves per input device.
        chunk_size: output rows per chunk for the torch backend; None sizes chunks by memory.

    Parameters (state_dict): `weight (Co, 3, 3, 3, Ci)`, `bias (Co,)`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        backend: ConvBackend = ConvBackend.auto,
        chunk_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.backend = backend
        self.chunk_size = chunk_size
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, 3, 3, 3, in_channels, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as nn.Conv3d (fan_in = 27 * Ci); released checkpoints overwrite it.
        fan_in = 27 * self.in_channels
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """x: (N, Ci) features on (N, 4) coords -> (N, Co) features on the same coords (and cache)."""
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f"SubMConv3d expects {self.in_channels} input channels, got {x.feats.shape[1]}")
        backend = resolve_conv_backend(self.backend, x.device)
        dtype = x.feats.dtype
        weight = self.weight if self.weight.dtype == dtype else self.weight.to(dtype)
        bias = self.bias if self.bias is None or self.bias.dtype == dtype else self.bias.to(dtype)
        return x.replace(_KERNELS[backend].fn(x, weight, bias, self.chunk_size))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}, backend={self.backend.value}"
        )


def set_conv_backend(module: nn.Module, backend: ConvBackend, chunk_size: int | None = None) -> None:
    """Set the backend (and torch chunk size) of every `SubMConv3d` inside `module`."""
    for layer in module.modules():
        if isinstance(layer, SubMConv3d):
            layer.backend = backend
            layer.chunk_size = chunk_size
